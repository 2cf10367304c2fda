using LLama.Native;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests;

/// <summary>Pins down the llama.cpp oracle itself on the bundled stories260K model, so that a change of
/// the native build or of the harness settings shows up here before it shows up as a mismatch elsewhere.</summary>
[Trait("Category", "Interop")]
public sealed class LlamaCppOracleTests(ITestOutputHelper output)
{
    private static readonly int[] s_greedyFromBos =
        [1, 461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288, 13, 431];

    [Fact]
    public void Native_library_loads_and_reports_its_build()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        output.WriteLine(LlamaCppModel.NativeLibraryDescription);
        output.WriteLine(LlamaCppModel.SystemInfo);
        Assert.NotEqual("(not loaded)", LlamaCppModel.NativeLibraryDescription);
    }

    [Fact]
    public void Stories260K_reports_its_shape_and_special_tokens()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        Assert.Equal(512, model.VocabSize);
        Assert.Equal(64, model.EmbeddingSize);
        Assert.Equal(5, model.LayerCount);
        Assert.Equal(8, model.HeadCount);
        Assert.Equal(4, model.KvHeadCount);
        Assert.Equal(512, model.TrainContextSize);
        Assert.Equal(512, model.ContextSize);
        Assert.Equal(1, model.Bos);
        Assert.Equal(2, model.Eos);
        Assert.Equal(LLamaFtype.ALL_F32, model.FileType);
        Assert.Equal("llama", model.Metadata("general.architecture"));
        Assert.Null(model.Metadata("no.such.key"));
        Assert.Contains("general.architecture", model.AllMetadata().Keys);
    }

    [Fact]
    public void Greedy_decoding_from_bos_gives_the_pinned_sequence()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        int[] ids = model.Greedy([1], s_greedyFromBos.Length - 1);
        output.WriteLine(string.Join(",", ids));
        output.WriteLine(model.Detokenize(ids));
        Assert.Equal(s_greedyFromBos, ids);
    }

    [Fact]
    public void Greedy_decoding_is_the_same_on_two_threads()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K, threads: 2);
        Assert.Equal(s_greedyFromBos, model.Greedy([1], s_greedyFromBos.Length - 1));
    }

    [Fact]
    public void Batch_logits_equal_token_by_token_logits()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        int[] tokens = model.Greedy([1], 63);
        float[] batch = model.EvalAllLogits(tokens);
        float[] single = model.EvalAllLogitsTokenByToken(tokens);
        Assert.Equal(tokens.Length * model.VocabSize, batch.Length);
        float maxDiff = MaxAbsDiff(batch, single);
        output.WriteLine($"max |batch - token by token| over {tokens.Length} positions: {maxDiff:G3}");
        Assert.True(maxDiff <= 1e-4f, $"batch and token-by-token logits differ by {maxDiff}");
    }

    [Fact]
    public void Last_row_of_all_logits_predicts_the_next_greedy_token()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        float[] logits = model.EvalAllLogits(s_greedyFromBos.AsSpan(0, 10));
        for (int t = 0; t < 10; t++)
        {
            Assert.Equal(s_greedyFromBos[t + 1], LlamaCppOracle.ArgMax(logits.AsSpan(t * model.VocabSize, model.VocabSize)));
        }
    }

    [Fact]
    public void F16_kv_cache_moves_logits_measurably_away_from_f32()
    {
        using var f32 = new LlamaCppModel(RepoPaths.Stories260K);
        using var f16 = new LlamaCppModel(RepoPaths.Stories260K, f32KvCache: false);
        int[] tokens = f32.Greedy([1], 127);
        float maxDiff = MaxAbsDiff(f32.EvalAllLogits(tokens), f16.EvalAllLogits(tokens));
        output.WriteLine($"max |F32 KV - F16 KV| logits over {tokens.Length} positions: {maxDiff:G3}");
        Assert.True(maxDiff > 0f, "the F16 and F32 KV caches gave identical logits: the cache type setting is not taking effect");
    }

    [Fact]
    public void Llama_bench_settings_are_f16_kv_flash_attention_auto_ubatch_512_and_mmap_unless_overridden()
    {
        using (var model = LlamaCppModel.WithLlamaBenchSettings(RepoPaths.Stories260K, threads: 1, contextSize: 512))
        {
            Assert.Equal("KV F16, flash attn auto, n_ubatch 512, mmap, " + LlamaCppModel.NativeLibraryVariant, model.SpeedSettings);
            Assert.Equal(512, model.ContextSize);
        }
        using (var model = LlamaCppModel.WithLlamaBenchSettings(RepoPaths.Stories260K, threads: 1, contextSize: 64, f32KvCache: true, flashAttention: false, memoryMap: false))
        {
            // The context is padded to 256 cells and n_ubatch never exceeds it.
            Assert.Equal("KV F32, flash attn off, n_ubatch 256, no mmap, " + LlamaCppModel.NativeLibraryVariant, model.SpeedSettings);
        }
    }

    [Fact]
    public void Text_tokenizes_to_byte_fallback_because_the_vocabulary_has_only_placeholder_pieces()
    {
        // stories260K's 512 pieces are <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> (ids 3..258) and
        // placeholders "▁t0".."▁t252"; no merge path leads to a placeholder, so llama.cpp's SentencePiece
        // tokenizer spells any text as UTF-8 bytes of "▁" + text with spaces escaped to "▁".
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        const string text = "Once upon a time, there was a little girl.";
        byte[] utf8 = System.Text.Encoding.UTF8.GetBytes("\u2581" + text.Replace(' ', '\u2581'));
        int[] expected = new int[utf8.Length];
        for (int i = 0; i < utf8.Length; i++)
        {
            expected[i] = utf8[i] + 3;
        }
        int[] without = model.Tokenize(text, addSpecial: false, parseSpecial: false);
        int[] withBos = model.Tokenize(text, addSpecial: true, parseSpecial: false);
        Assert.Equal(expected, without);
        Assert.Equal([model.Bos, .. expected], withBos);
        // Byte tokens detokenize to their raw bytes, so the escaped spaces come back as "▁".
        Assert.Equal("\u2581" + text.Replace(' ', '\u2581'), model.Detokenize(without));
    }

    [Fact]
    public void Detokenize_strips_the_leading_space_of_the_first_token_only()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        Assert.Equal(" t202", model.TokenToPiece(461));
        Assert.Equal("\u2581t202", model.TokenToPiece(461).Replace(' ', '\u2581'));
        Assert.Equal("t202 t202 t142", model.Detokenize([461, 461, 401]));
        Assert.Equal(" t202 t202 t142", model.Detokenize([1, 461, 461, 401]));
        // The leading-space strip applies to the first token only, and a BOS (rendered as nothing) is that
        // first token even when removeSpecial drops it.
        Assert.Equal(" t202 t202 t142", model.Detokenize([1, 461, 461, 401], removeSpecial: true));
        Assert.Equal("<s> t202", model.Detokenize([1, 461], unparseSpecial: true));
        Assert.Equal([0x0A], model.TokenToBytes(13));
    }

    [Fact]
    public void Control_token_text_is_parsed_only_when_asked()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        Assert.Equal([1], model.Tokenize("<s>", addSpecial: false, parseSpecial: true));
        Assert.NotEqual([1], model.Tokenize("<s>", addSpecial: false, parseSpecial: false));
        Assert.Equal("", model.TokenToPiece(1));
        Assert.Equal("<s>", model.TokenToPiece(1, special: true));
    }

    [Fact]
    public void Out_of_vocabulary_token_is_rejected_with_its_id()
    {
        using var model = new LlamaCppModel(RepoPaths.Stories260K);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.EvalAllLogits([1, 512]));
        Assert.Contains("512", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Appending_past_the_context_is_rejected_with_the_sizes()
    {
        // llama.cpp rounds a requested context up to a multiple of 256 cells.
        using var model = new LlamaCppModel(RepoPaths.Stories260K, contextSize: 16);
        Assert.Equal(256, model.ContextSize);
        model.Append(new int[250]);
        Assert.Equal(250, model.Position);
        var e = Assert.Throws<ArgumentException>(() => model.Append(new int[7]));
        Assert.Contains("250 cached + 7 new tokens exceed the context of 256", e.Message, StringComparison.Ordinal);
        model.Reset();
        Assert.Equal(0, model.Position);
    }

    [Fact]
    public void Missing_model_file_names_the_path()
    {
        string path = Path.Combine(RepoPaths.Root, "models", "no-such-model.gguf");
        var e = Assert.Throws<FileNotFoundException>(() => new LlamaCppModel(path));
        Assert.Contains("no-such-model.gguf", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_model_file_fails_with_llama_cpp_s_reason()
    {
        string dir = Directory.CreateTempSubdirectory("modelsmith-interop-").FullName;
        try
        {
            string truncated = Path.Combine(dir, "truncated.gguf");
            byte[] bytes = File.ReadAllBytes(RepoPaths.Stories260K);
            File.WriteAllBytes(truncated, bytes.AsSpan(0, bytes.Length / 2).ToArray());
            var e = Assert.Throws<InvalidDataException>(() => new LlamaCppModel(truncated));
            output.WriteLine(e.Message);
            Assert.Contains("truncated.gguf", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Quantizing_to_q4_k_m_gives_a_model_that_still_generates()
    {
        string dir = Directory.CreateTempSubdirectory("modelsmith-interop-").FullName;
        try
        {
            string quantized = Path.Combine(dir, "stories260K-q4_k_m.gguf");
            LlamaCppOracle.Quantize(RepoPaths.Stories260K, quantized, LLamaFtype.MOSTLY_Q4_K_M, threads: 1);
            using var model = new LlamaCppModel(quantized);
            Assert.Equal(LLamaFtype.MOSTLY_Q4_K_M, model.FileType);
            int[] ids = model.Greedy([1], 8);
            output.WriteLine($"Q4_K_M greedy: {string.Join(",", ids)}; {new FileInfo(quantized).Length} bytes; {model.Description}");
            Assert.Equal(9, ids.Length);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Quantizing_to_q8_0_fails_naming_the_tensor_whose_rows_are_not_whole_blocks()
    {
        // ffn_down rows have feed_forward_length = 172 columns, not a multiple of Q8_0's 32-element block,
        // and this llama.cpp defines no fallback type for Q8_0 (k-quants fall back to Q5_0/Q5_1/Q8_0, then F16).
        string dir = Directory.CreateTempSubdirectory("modelsmith-interop-").FullName;
        try
        {
            string quantized = Path.Combine(dir, "stories260K-q8_0.gguf");
            var e = Assert.Throws<InvalidOperationException>(
                () => LlamaCppOracle.Quantize(RepoPaths.Stories260K, quantized, LLamaFtype.MOSTLY_Q8_0, threads: 1));
            output.WriteLine(e.Message);
            Assert.Contains("ffn_down", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0f;
        for (int i = 0; i < a.Length; i++)
        {
            max = MathF.Max(max, MathF.Abs(a[i] - b[i]));
        }
        return max;
    }
}
