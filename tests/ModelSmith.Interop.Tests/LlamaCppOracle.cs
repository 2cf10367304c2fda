using LLama.Native;

namespace ModelSmith.Interop.Tests;

/// <summary>What the interop tests ask of llama.cpp beyond running a model: whole-sequence logits, greedy
/// decoding, and llama-quantize's file quantizer.</summary>
internal static class LlamaCppOracle
{
    /// <summary>Logits for every position of <paramref name="tokens"/> from a fresh cache, in one batch.</summary>
    /// <returns>(T, n_vocab) row-major.</returns>
    public static float[] EvalAllLogits(this LlamaCppModel model, ReadOnlySpan<int> tokens)
    {
        int vocab = model.VocabSize;
        var logits = new float[tokens.Length * vocab]; // (T, V)
        model.Reset();
        model.Append(tokens, allLogits: true);
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Logits(t).CopyTo(logits.AsSpan(t * vocab, vocab));
        }
        return logits;
    }

    /// <summary>Logits for every position of <paramref name="tokens"/> from a fresh cache, decoding one
    /// token per llama_decode call (the path a generator takes).</summary>
    /// <returns>(T, n_vocab) row-major.</returns>
    public static float[] EvalAllLogitsTokenByToken(this LlamaCppModel model, ReadOnlySpan<int> tokens)
    {
        int vocab = model.VocabSize;
        var logits = new float[tokens.Length * vocab]; // (T, V)
        model.Reset();
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Append(tokens.Slice(t, 1));
            model.Logits().CopyTo(logits.AsSpan(t * vocab, vocab));
        }
        return logits;
    }

    /// <summary>Greedy generation from a fresh cache: the prompt in one batch, then <paramref name="n"/>
    /// tokens each the argmax (lowest id on ties, as llama.cpp's greedy sampler) of the previous logits.
    /// Does not stop at EOS.</summary>
    /// <returns>The prompt followed by the n generated ids.</returns>
    public static int[] Greedy(this LlamaCppModel model, ReadOnlySpan<int> prompt, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        var ids = new int[prompt.Length + n];
        prompt.CopyTo(ids);
        model.Reset();
        model.Append(prompt);
        for (int i = 0; i < n; i++)
        {
            int next = ArgMax(model.Logits());
            ids[prompt.Length + i] = next;
            if (i + 1 < n)
            {
                model.Append(ids.AsSpan(prompt.Length + i, 1));
            }
        }
        return ids;
    }

    /// <summary>Index of the largest value; the first one on ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }
        return best;
    }

    /// <summary>llama_model_quantize with llama.cpp's default parameters (what the llama-quantize tool
    /// does without options: output tensor quantized, no requantizing, no imatrix), only
    /// <paramref name="ftype"/>, <paramref name="threads"/> and <paramref name="pure"/> set.
    /// LLamaSharp's LLamaQuantizer is not used because its defaults differ from llama-quantize
    /// (quantizeOutputTensor = false, allowRequantize = true), which changes output.weight's type.</summary>
    public static void Quantize(string input, string output, LLamaFtype ftype, int threads, bool pure = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (!File.Exists(input))
        {
            throw new FileNotFoundException($"GGUF model '{input}' to quantize does not exist.", input);
        }
        // Before the first native call: runs LlamaCppModel's static constructor, which loads the library.
        LlamaCppModel.ClearRecentErrors();
        var parameters = LLamaModelQuantizeParams.Default();
        parameters.ftype = ftype;
        parameters.nthread = threads;
        parameters.pure = pure;
        uint status = NativeApi.llama_model_quantize(input, output, ref parameters);
        if (status != 0)
        {
            throw new InvalidOperationException($"llama_model_quantize('{input}' -> '{output}', {ftype}) failed with {status}: {LlamaCppModel.RecentErrors()}");
        }
    }
}
