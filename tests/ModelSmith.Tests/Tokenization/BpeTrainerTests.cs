using System.Diagnostics;
using System.IO.Compression;
using ModelSmith.Formats;
using ModelSmith.Tokenization;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Tokenization;

public sealed class BpeTrainerTests(ITestOutputHelper output)
{
    /// <summary>Sennrich et al.'s example: low x5, lower x2, newest x6, widest x3, each text one word.</summary>
    private static readonly string[] Sennrich =
    [
        .. Enumerable.Repeat("low", 5), .. Enumerable.Repeat("lower", 2),
        .. Enumerable.Repeat("newest", 6), .. Enumerable.Repeat("widest", 3),
    ];

    [Fact]
    public void Tiny_corpus_learns_the_hand_counted_merges_in_order()
    {
        TokenizerSpec spec = BpeTrainer.Train(Sennrich, new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [] });
        // Counts: e s 9 = s t 9 (tie: smaller left id 'e'); es t 9; l o 7 = o w 7; lo w 7; then n e, e w, w est at
        // 6 ('e' < 'n' < 'w'); n ew 6; new est 6; at 3: d est ('d' < 'i' < 'w'), i dest, w idest; at 2: e r, low er.
        // No pair is left twice, so training stops below the requested size.
        Assert.Equal(
            ["e s", "es t", "l o", "lo w", "e w", "n ew", "new est", "d est", "i dest", "w idest", "e r", "low er"],
            spec.Merges);
        Assert.Equal(256 + 12, spec.Tokens.Count);
        Assert.Equal(["es", "est", "lo", "low", "ew", "new", "newest", "dest", "idest", "widest", "er", "lower"], spec.Tokens.Skip(256));
        Assert.Null(spec.EosId);
    }

    [Fact]
    public void Min_frequency_stops_training_at_the_first_rarer_pair()
    {
        TokenizerSpec spec = BpeTrainer.Train(Sennrich, new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [], MinFrequency = 6 });
        Assert.Equal(["e s", "es t", "l o", "lo w", "e w", "n ew", "new est"], spec.Merges);
    }

    [Fact]
    public void Vocab_size_caps_the_learned_tokens_and_counts_the_special_tokens()
    {
        TokenizerSpec spec = BpeTrainer.Train(Sennrich, new BpeTrainerOptions { VocabSize = 256 + 3 + 2, SpecialTokens = ["<|endoftext|>", "<|im_end|>"] });
        Assert.Equal(["e s", "es t", "l o"], spec.Merges);
        Assert.Equal(261, spec.Tokens.Count);
        Assert.Equal(["<|endoftext|>", "<|im_end|>"], spec.Tokens.Skip(259));
        Assert.Equal(259, spec.BosId);
        Assert.Equal(259, spec.EosId);
    }

    [Fact]
    public void Byte_tokens_are_gpt2s_first_256_tokens()
    {
        TokenizerSpec ours = BpeTrainer.Train(["x"], new BpeTrainerOptions { VocabSize = 300 });
        TokenizerSpec gpt2 = TestVocabularies.Gpt2();
        Assert.Equal(gpt2.Tokens.Take(256), ours.Tokens.Take(256));
    }

    [Fact]
    public void Trained_tokenizer_segments_training_words_as_training_did()
    {
        Tokenizer tokenizer = Tokenizer.Create(BpeTrainer.Train(Sennrich, new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [] }));
        Assert.Equal(["newest"], Pieces(tokenizer, "newest"));
        Assert.Equal(["lower"], Pieces(tokenizer, "lower"));
        Assert.Equal(["low", "est"], Pieces(tokenizer, "lowest"));
        Assert.Equal(["w", "es"], Pieces(tokenizer, "wes"));
    }

    [Fact]
    public void Overlapping_pairs_merge_leftmost_first()
    {
        // "aaa" x3, "aaaa" x1: pair (a a) counts 2*3 + 3 = 9; merging leaves "aa a" and "aa aa".
        TokenizerSpec spec = BpeTrainer.Train(["aaa", "aaa", "aaa", "aaaa"], new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [], MinFrequency = 1 });
        // then (aa a) 3 beats (aa aa) 1.
        Assert.Equal(["a a", "aa a", "aa aa"], spec.Merges);
        Tokenizer tokenizer = Tokenizer.Create(spec);
        Assert.Equal(["aaa"], Pieces(tokenizer, "aaa"));
        Assert.Equal(["aaaa"], Pieces(tokenizer, "aaaa"));
        // "aaaaa": a a first everywhere leftmost (aa aa a), then aa a (rank 1) before aa aa (rank 2).
        Assert.Equal(["aa", "aaa"], Pieces(tokenizer, "aaaaa"));
    }

    [Fact]
    public void Words_come_from_the_gpt2_pre_tokenizer_so_no_merge_crosses_a_word()
    {
        TokenizerSpec spec = BpeTrainer.Train(Enumerable.Repeat("ab cd ab cd.", 10), new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [] });
        // Words: "ab", " cd", " ab", " cd", "." (Ġ is the alphabet's space).
        Assert.DoesNotContain(spec.Merges!, m => m.Contains('.', StringComparison.Ordinal));
        Assert.Contains("Ġab", spec.Tokens);
        Assert.Contains("Ġcd", spec.Tokens);
        Assert.DoesNotContain(spec.Tokens, t => t.Contains("bĠ", StringComparison.Ordinal) || t.Contains("dĠ", StringComparison.Ordinal));
    }

    [Fact]
    public void Default_pre_tokenizer_splits_numbers_into_digit_triples()
    {
        TokenizerSpec spec = BpeTrainer.Train(Enumerable.Repeat("123456789 x", 20), new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [], PreTokenizer = "default" });
        Assert.Equal("default", spec.Pre);
        Assert.Contains("123", spec.Tokens);
        Assert.DoesNotContain(spec.Tokens, t => t.Length > 3 && t.All(char.IsAsciiDigit));
        TokenizerSpec gpt2 = BpeTrainer.Train(Enumerable.Repeat("123456789 x", 20), new BpeTrainerOptions { VocabSize = 1000, SpecialTokens = [] });
        Assert.Contains("123456789", gpt2.Tokens);
    }

    [Fact]
    public void Special_tokens_are_cut_out_of_training_text_and_become_control_tokens()
    {
        string[] texts = [.. Enumerable.Repeat("<|im_start|>user\nhi<|im_end|>\n<|endoftext|>", 20)];
        TokenizerSpec spec = BpeTrainer.Train(texts, new BpeTrainerOptions
        {
            VocabSize = 1000,
            SpecialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        });
        Assert.DoesNotContain(spec.Merges!, m => m.Contains('|', StringComparison.Ordinal));
        Tokenizer tokenizer = Tokenizer.Create(spec);
        int eot = spec.Tokens.Count - 3;
        Assert.Equal(eot, tokenizer.Eos);
        Assert.Equal(eot, tokenizer.Bos);
        Assert.False(tokenizer.AddBos);
        Assert.True(tokenizer.IsEndOfGeneration(eot));
        Assert.True(tokenizer.IsEndOfGeneration(eot + 2)); // <|im_end|>
        Assert.Equal(TokenType.Control, tokenizer.GetTokenType(eot + 1));
        int[] ids = tokenizer.Encode(texts[0], addSpecial: true, parseSpecial: true);
        Assert.Equal([eot + 1, tokenizer.Encode("user\nhi", false)[0]], ids[..2]);
        Assert.Equal(eot + 2, ids[^3]);
        Assert.Equal(eot, ids[^1]);
        Assert.Equal(texts[0], tokenizer.Decode(ids, renderSpecial: true));
    }

    [Fact]
    public void Decode_of_encode_gives_back_every_text()
    {
        Tokenizer tokenizer = Tokenizer.Create(BpeTrainer.Train(BrownParagraphs("humor"), new BpeTrainerOptions { VocabSize = 1024 }));
        foreach (string text in TestVocabularies.Texts)
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
        foreach (string text in BrownParagraphs("religion").Take(200))
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [Fact]
    public void Training_is_deterministic_and_independent_of_text_order()
    {
        List<string> texts = [.. BrownParagraphs("humor")];
        var options = new BpeTrainerOptions { VocabSize = 1500 };
        TokenizerSpec first = BpeTrainer.Train(texts, options);
        TokenizerSpec again = BpeTrainer.Train(texts, options);
        var shuffled = texts.ToArray();
        new Random(7).Shuffle(shuffled);
        TokenizerSpec reordered = BpeTrainer.Train(shuffled, options);
        Assert.Equal(1500, first.Tokens.Count);
        Assert.Equal(first.Tokens, again.Tokens);
        Assert.Equal(first.Merges, again.Merges);
        Assert.Equal(first.Tokens, reordered.Tokens);
        Assert.Equal(first.Merges, reordered.Merges);
    }

    [Fact]
    public void Four_thousand_tokens_compress_held_out_brown_text_below_0_3_tokens_per_char()
    {
        string[] train = ["press-reportage", "press-editorial", "popular-lore", "belles-lettres", "fiction-general", "government"];
        var texts = new List<string>();
        foreach (string genre in train)
            texts.AddRange(BrownParagraphs(genre));
        long chars = texts.Sum(t => (long)t.Length);
        var stopwatch = Stopwatch.StartNew();
        TokenizerSpec spec = BpeTrainer.Train(texts, new BpeTrainerOptions { VocabSize = 4096, SpecialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] });
        stopwatch.Stop();
        Tokenizer tokenizer = Tokenizer.Create(spec);
        Assert.Equal(4096, tokenizer.VocabularySize);

        foreach (string genre in (string[])["learned", "fiction-mystery", "religion"])
        {
            long tokens = 0, heldOutChars = 0;
            foreach (string text in BrownParagraphs(genre))
            {
                tokens += tokenizer.Encode(text, addSpecial: false).Length;
                heldOutChars += text.Length;
            }
            double ratio = (double)tokens / heldOutChars;
            output.WriteLine($"held-out {genre}: {tokens} tokens / {heldOutChars} chars = {ratio:F4} tokens/char");
            Assert.True(ratio < 0.3, $"{genre}: {ratio:F4} tokens per character");
        }
        output.WriteLine($"trained 4096 tokens on {chars / 1e6:F2} M chars of {texts.Count} paragraphs in {stopwatch.Elapsed.TotalSeconds:F2} s");
    }

    [Fact]
    public void Trained_vocabulary_survives_a_gguf_round_trip()
    {
        TokenizerSpec spec = BpeTrainer.Train(BrownParagraphs("humor"), new BpeTrainerOptions { VocabSize = 800, SpecialTokens = ["<|endoftext|>", "<|im_end|>"] });
        using var dir = new TempDirectory();
        string path = dir.File("vocab.gguf");
        var writer = new GgufWriter();
        writer.Set("general.architecture", "llama");
        GgufTokenizer.WriteSpec(writer, spec);
        writer.Write(path);
        Tokenizer ours = Tokenizer.Create(spec);
        using GgufFile file = GgufFile.Open(path);
        TokenizerSpec read = GgufTokenizer.ReadSpec(file);
        Assert.Equal(spec.Tokens, read.Tokens);
        Assert.Equal(spec.Merges, read.Merges);
        Assert.Equal(spec.TokenTypes, read.TokenTypes);
        Assert.Equal("gpt-2", read.Pre);
        Tokenizer loaded = Tokenizer.Create(read);
        Assert.Equal(ours.Eos, loaded.Eos);
        foreach (string text in BrownParagraphs("religion").Take(50))
            Assert.Equal(ours.Encode(text), loaded.Encode(text));
    }

    [Fact]
    public void Progress_reports_counting_then_merging_up_to_the_target()
    {
        var reports = new List<BpeTrainerProgress>();
        BpeTrainer.Train(BrownParagraphs("humor"), new BpeTrainerOptions { VocabSize = 600 }, reports.Add);
        Assert.Equal(BpeTrainerStage.CountingWords, reports[0].Stage);
        BpeTrainerProgress last = reports[^1];
        Assert.Equal(BpeTrainerStage.Merging, last.Stage);
        Assert.Equal(600 - 256 - 1, last.Total);
        Assert.Equal(last.Total, last.Completed);
        Assert.True(last.Words > 1000);
    }

    [Fact]
    public void Impossible_options_are_refused_with_the_reason()
    {
        string[] texts = ["hello"];
        Assert.Contains("at least 259", Assert.Throws<ArgumentOutOfRangeException>(() =>
            BpeTrainer.Train(texts, new BpeTrainerOptions { VocabSize = 258, SpecialTokens = ["<a>", "<b>", "<c>"] })).Message, StringComparison.Ordinal);
        Assert.Contains("MinFrequency", Assert.Throws<ArgumentOutOfRangeException>(() =>
            BpeTrainer.Train(texts, new BpeTrainerOptions { MinFrequency = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("listed twice", Assert.Throws<ArgumentException>(() =>
            BpeTrainer.Train(texts, new BpeTrainerOptions { SpecialTokens = ["<s>", "<s>"] })).Message, StringComparison.Ordinal);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() =>
            BpeTrainer.Train(texts, new BpeTrainerOptions { SpecialTokens = [""] })).Message, StringComparison.Ordinal);
        Assert.Contains("gpt-2", Assert.Throws<ArgumentException>(() =>
            BpeTrainer.Train(texts, new BpeTrainerOptions { PreTokenizer = "llama3" })).Message, StringComparison.Ordinal);
        Assert.Throws<NotSupportedException>(() => BpeTrainer.Train(texts, new BpeTrainerOptions { PreTokenizer = "qwen2" }));
    }

    [Fact]
    public void A_special_token_that_training_also_learns_is_refused()
    {
        // "Ġx" is learned from " x"; a special token with that text would be a duplicate.
        var e = Assert.Throws<ArgumentException>(() =>
            BpeTrainer.Train(Enumerable.Repeat("a x", 5), new BpeTrainerOptions { VocabSize = 400, SpecialTokens = ["Ġx"] }));
        Assert.Contains("also a learned token", e.Message, StringComparison.Ordinal);
    }

    private static List<string> Pieces(Tokenizer tokenizer, string text) =>
        [.. tokenizer.Encode(text, addSpecial: false).Select(tokenizer.TokenText)];

    /// <summary>The non-empty lines (paragraphs) of a bundled Brown genre.</summary>
    internal static IEnumerable<string> BrownParagraphs(string genre)
    {
        string path = Path.Combine(RepoPaths.Root, "data", "brown", genre + ".txt.gz");
        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
            if (line.Length > 0)
                yield return line;
    }
}
