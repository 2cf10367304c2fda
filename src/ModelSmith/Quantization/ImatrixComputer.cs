using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using ModelSmith.Inference;
using ModelSmith.Models;

namespace ModelSmith.Quantization;

/// <summary>How <see cref="ImatrixComputer.Compute"/> runs.</summary>
public sealed class ImatrixOptions
{
    /// <summary>Tokens per chunk (llama-imatrix -c; 512 by default). Each chunk is evaluated from an empty cache.</summary>
    public int ContextSize { get; init; } = 512;

    /// <summary>Chunks to process at most (llama-imatrix --chunks); null processes all.</summary>
    public int? MaxChunks { get; init; }

    /// <summary>Also collect the input of output.weight (llama-imatrix --process-output).</summary>
    public bool ProcessOutput { get; init; }

    /// <summary>Dataset names recorded in the matrix (imatrix.datasets).</summary>
    public IReadOnlyList<string> Datasets { get; init; } = [];
}

/// <summary>Progress of <see cref="ImatrixComputer.Compute"/>: <see cref="Chunk"/> of <see cref="Chunks"/> chunks done.</summary>
public sealed record ImatrixProgress(int Chunk, int Chunks, double Perplexity);

/// <summary>The outcome of <see cref="ImatrixComputer.Compute"/>.</summary>
/// <param name="Matrix">The importance matrix.</param>
/// <param name="Chunks">Chunks evaluated.</param>
/// <param name="Tokens">Tokens evaluated (Chunks × context size).</param>
/// <param name="Perplexity">Perplexity over the second half of every chunk, as llama-imatrix prints it.</param>
/// <param name="Elapsed">Wall time of the evaluation.</param>
public sealed record ImatrixResult(ImportanceMatrix Matrix, int Chunks, long Tokens, double Perplexity, TimeSpan Elapsed);

/// <summary>
/// Computes an importance matrix the way llama.cpp's imatrix tool does: the calibration tokens are cut into
/// chunks of the context size, each chunk's first token is replaced by BOS when the vocabulary adds one, and
/// each chunk is run through the model from an empty cache; for every weight matmul inside the blocks
/// (attn_q/k/v or attn_qkv, attn_output, ffn_gate/up, ffn_down; output.weight only on request, the token
/// embedding never since it is a lookup) the input rows are accumulated per column as Σx² (and Σx) with a
/// count of the tokens. Like llama.cpp, a forward batch of fewer than 16 tokens contributes nothing, and
/// weights that share an input (attn_q, attn_k, attn_v) get the same statistics.
/// </summary>
public static class ImatrixComputer
{
    /// <summary>llama-imatrix ignores matmuls over fewer tokens than this.</summary>
    public const int MinimumBatchTokens = 16;

    /// <summary>
    /// Runs <paramref name="tokens"/> (the whole calibration text, tokenized with BOS as the vocabulary asks)
    /// through <paramref name="model"/>. Needs at least two chunks of tokens, as llama-imatrix does.
    /// </summary>
    public static ImatrixResult Compute(LanguageModel model, IReadOnlyList<int> tokens, int bos, bool addBos, ImatrixOptions options,
        IProgress<ImatrixProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(options);
        int nCtx = options.ContextSize;
        if (nCtx < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), nCtx, "The context size must be at least 1 token.");
        }
        if (options.MaxChunks is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxChunks, "The chunk limit must be at least 1.");
        }
        if (tokens.Count < 2 * nCtx)
        {
            throw new ArgumentException(
                $"The calibration text has {tokens.Count} tokens; a context of {nCtx} needs at least {2 * nCtx} (two chunks). Give more text or a smaller context size.", nameof(tokens));
        }
        if (model.File is null)
        {
            throw new ArgumentException("The model was not loaded from a GGUF file, so its weight names are unknown.", nameof(model));
        }
        int chunks = tokens.Count / nCtx;
        if (options.MaxChunks is int max)
        {
            chunks = Math.Min(chunks, max);
        }
        int vocab = model.Config.VocabSize;
        var collector = new Collector(model, options.ProcessOutput);
        var chunk = new int[nCtx];
        var logits = new float[(long)nCtx * vocab];
        KvCache cache = model.CreateCache(nCtx);
        double nll = 0;
        long scored = 0;
        var clock = Stopwatch.StartNew();
        IMatMulInputObserver? previous = model.MatMulInputObserver;
        model.MatMulInputObserver = collector;
        try
        {
            for (int i = 0; i < chunks; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                int start = i * nCtx;
                for (int k = 0; k < nCtx; k++)
                {
                    chunk[k] = tokens[start + k];
                }
                if (addBos)
                {
                    chunk[0] = bos;
                }
                cache.Clear();
                model.Forward(chunk, cache, logits, allLogits: true);
                int first = nCtx / 2;
                for (int k = first; k < nCtx - 1; k++)
                {
                    nll -= LogSoftmax(logits.AsSpan(k * vocab, vocab), tokens[start + k + 1]);
                    scored++;
                }
                progress?.Report(new ImatrixProgress(i + 1, chunks, scored > 0 ? Math.Exp(nll / scored) : double.NaN));
            }
        }
        finally
        {
            model.MatMulInputObserver = previous;
        }
        ImportanceMatrix matrix = collector.ToMatrix(nCtx);
        matrix.Datasets.AddRange(options.Datasets);
        return new ImatrixResult(matrix, chunks, (long)chunks * nCtx, scored > 0 ? Math.Exp(nll / scored) : double.NaN, clock.Elapsed);
    }

    /// <summary>log softmax(logits)[token], with the max subtracted first and the exponentials summed in double (llama.cpp's log_softmax).</summary>
    private static double LogSoftmax(ReadOnlySpan<float> logits, int token)
    {
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            max = Math.Max(max, logits[i]);
        }
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            sum += MathF.Exp(logits[i] - max);
        }
        return logits[token] - max - Math.Log(sum);
    }

    /// <summary>Per-column Σx, Σx² and a token count for one matmul input; shared by the weights it feeds.</summary>
    private sealed class Accumulator(int columns, string[] names)
    {
        public float[] Sums { get; } = new float[columns];

        public float[] Squares { get; } = new float[columns];

        public long Count { get; set; }

        public string[] Names { get; } = names;
    }

    /// <summary>The observer that accumulates the statistics during forward passes.</summary>
    private sealed class Collector : IMatMulInputObserver
    {
        private readonly Accumulator?[,] _layers;
        private readonly Accumulator? _output;

        public Collector(LanguageModel model, bool processOutput)
        {
            var file = model.File!;
            ModelConfig cfg = model.Config;
            int inputs = Enum.GetValues<MatMulInput>().Length;
            _layers = new Accumulator?[cfg.BlockCount, inputs];
            for (int l = 0; l < cfg.BlockCount; l++)
            {
                string p = $"blk.{l}.";
                Add(l, MatMulInput.Attention, cfg.EmbeddingLength, p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight", p + "attn_qkv.weight");
                Add(l, MatMulInput.AttentionOutput, cfg.QDim, p + "attn_output.weight");
                Add(l, MatMulInput.FeedForward, cfg.EmbeddingLength, p + "ffn_gate.weight", p + "ffn_up.weight");
                Add(l, MatMulInput.FeedForwardDown, cfg.FeedForwardLength, p + "ffn_down.weight");
            }
            if (processOutput && file.FindTensor("output.weight") is not null)
            {
                _output = new Accumulator(cfg.EmbeddingLength, ["output.weight"]);
            }

            void Add(int layer, MatMulInput input, int columns, params string[] candidates)
            {
                string[] present = candidates.Where(n => file.FindTensor(n) is not null).ToArray();
                if (present.Length > 0)
                {
                    _layers[layer, (int)input] = new Accumulator(columns, present);
                }
            }
        }

        public void Observe(int layer, MatMulInput input, ReadOnlySpan<float> x, int tokens)
        {
            if (tokens < MinimumBatchTokens)
            {
                return;
            }
            Accumulator? a = input == MatMulInput.Output ? _output : _layers[layer, (int)input];
            if (a is null)
            {
                return;
            }
            int cols = a.Squares.Length;
            for (int t = 0; t < tokens; t++)
            {
                Accumulate(x.Slice(t * cols, cols), a.Sums, a.Squares);
            }
            a.Count += tokens;
            for (int j = 0; j < cols; j++)
            {
                if (!float.IsFinite(a.Squares[j]))
                {
                    throw new InvalidDataException($"The sum of squared inputs of {a.Names[0]} became {a.Squares[j]} at column {j}; the model produces non-finite activations on this text.");
                }
            }
        }

        /// <summary>The statistics as an importance matrix; like llama-imatrix, a weight no batch reached has no entry.</summary>
        public ImportanceMatrix ToMatrix(int chunkSize)
        {
            var matrix = new ImportanceMatrix { ChunkSize = chunkSize };
            long maxCount = 0;
            foreach (Accumulator? a in _layers)
            {
                Store(a);
            }
            Store(_output);
            matrix.ChunkCount = (int)(maxCount / chunkSize);
            return matrix;

            void Store(Accumulator? a)
            {
                if (a is null || a.Count == 0)
                {
                    return;
                }
                maxCount = Math.Max(maxCount, a.Count);
                foreach (string name in a.Names)
                {
                    matrix.Set(name, new ImatrixEntry((float[])a.Squares.Clone(), [a.Count], (float[])a.Sums.Clone()));
                }
            }
        }

        /// <summary>sums += x, squares += x·x, column by column (each column's sum runs over the tokens in order,
        /// so the vector width does not change the result).</summary>
        private static void Accumulate(ReadOnlySpan<float> x /* (cols) */, Span<float> sums /* (cols) */, Span<float> squares /* (cols) */)
        {
            int j = 0;
            if (Vector.IsHardwareAccelerated)
            {
                ReadOnlySpan<Vector<float>> xv = MemoryMarshal.Cast<float, Vector<float>>(x);
                Span<Vector<float>> sv = MemoryMarshal.Cast<float, Vector<float>>(sums);
                Span<Vector<float>> qv = MemoryMarshal.Cast<float, Vector<float>>(squares);
                for (int v = 0; v < xv.Length; v++)
                {
                    Vector<float> value = xv[v];
                    sv[v] += value;
                    qv[v] += value * value;
                }
                j = xv.Length * Vector<float>.Count;
            }
            for (; j < x.Length; j++)
            {
                sums[j] += x[j];
                squares[j] += x[j] * x[j];
            }
        }
    }
}
