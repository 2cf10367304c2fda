using System.Runtime.InteropServices;
using ModelSmith.Models;

namespace ModelSmith.Training;

/// <summary>
/// Everything the forward pass keeps for the backward pass, plus the backward pass's scratch gradients, for
/// batches of up to (MaxBatch, MaxSeqLen) tokens: one 64-byte-aligned native allocation, sliced per tensor at
/// construction. N = B·T below; S = H·D + 2·Hkv·D (fused QKV width); F2 = 2F for Llama ([gate | up]), F for GPT-2.
/// </summary>
internal sealed unsafe class TrainingActivations : IDisposable
{
    private float* _memory;

    public TrainingActivations(ModelConfig config, int maxBatch, int maxSeqLen)
    {
        int c = config.EmbeddingLength, f = config.FeedForwardLength, v = config.VocabSize;
        int s = config.QDim + 2 * config.KvDim;
        int fIn = config.Architecture == ModelArchitecture.Llama ? 2 * f : f;
        long n = (long)maxBatch * maxSeqLen;
        long att = (long)maxBatch * config.HeadCount * maxSeqLen * maxSeqLen;

        // Two passes: first count the floats, then hand out pointers into one allocation.
        long total = 0;
        float* Take(long count)
        {
            float* p = _memory == null ? null : _memory + total;
            total += (count + 15) & ~15L;
            return p;
        }

        for (int pass = 0; pass < 2; pass++)
        {
            total = 0;
            Blocks = new Block[config.BlockCount];
            Residuals = new nint[config.BlockCount + 1];
            Residuals[0] = (nint)Take(n * c);
            for (int l = 0; l < config.BlockCount; l++)
            {
                Blocks[l] = new Block
                {
                    Norm1 = Take(n * c), Mean1 = Take(n), Rstd1 = Take(n),
                    Qkv = Take(n * s), Att = Take(att), AttOut = Take(n * config.QDim),
                    Mid = Take(n * c), Norm2 = Take(n * c), Mean2 = Take(n), Rstd2 = Take(n),
                    FfnIn = Take(n * fIn), FfnAct = Take(n * f),
                };
                Residuals[l + 1] = (nint)Take(n * c);
            }
            NormF = Take(n * c);
            MeanF = Take(n);
            RstdF = Take(n);
            Logits = Take(n * v);
            Lse = Take(n);
            Losses = Take(n);
            DResidual = Take(n * c);
            DNorm = Take(n * c);
            DQkv = Take(n * s);
            DAttOut = Take(n * config.QDim);
            DFfnIn = Take(n * fIn);
            DFfnAct = Take(n * f);
            if (pass == 0)
            {
                _memory = (float*)NativeMemory.AlignedAlloc((nuint)total * sizeof(float), 64);
                NativeMemory.Clear(_memory, (nuint)total * sizeof(float));
                Count = total;
            }
        }
    }

    /// <summary>Floats held.</summary>
    public long Count { get; }

    public long SizeInBytes => Count * sizeof(float);

    /// <summary>Per block.</summary>
    public Block[] Blocks { get; private set; } = [];

    /// <summary>The residual stream entering block l, (N, C); entry L is the stream after the last block.</summary>
    public nint[] Residuals { get; private set; } = [];

    public float* Residual(int l) => (float*)Residuals[l];

    public float* NormF { get; private set; }   // (N, C)
    public float* MeanF { get; private set; }   // (N)
    public float* RstdF { get; private set; }   // (N)
    public float* Logits { get; private set; }  // (N, V); the backward pass overwrites it with dlogits
    public float* Lse { get; private set; }     // (N)
    public float* Losses { get; private set; }  // (N)

    public float* DResidual { get; private set; } // (N, C)
    public float* DNorm { get; private set; }     // (N, C)
    public float* DQkv { get; private set; }      // (N, S)
    public float* DAttOut { get; private set; }   // (N, H·D)
    public float* DFfnIn { get; private set; }    // (N, F2)
    public float* DFfnAct { get; private set; }   // (N, F)

    public void Dispose()
    {
        NativeMemory.AlignedFree(_memory);
        _memory = null;
    }

    /// <summary>What one block keeps.</summary>
    internal struct Block
    {
        public float* Norm1;  // (N, C) normalised input of attention
        public float* Mean1;  // (N) LayerNorm mean (GPT-2)
        public float* Rstd1;  // (N)
        public float* Qkv;    // (N, S) Q and K rotated (Llama)
        public float* Att;    // (B, H, T, T) attention probabilities
        public float* AttOut; // (N, H·D)
        public float* Mid;    // (N, C) residual stream after attention
        public float* Norm2;  // (N, C)
        public float* Mean2;  // (N)
        public float* Rstd2;  // (N)
        public float* FfnIn;  // (N, F2) pre-activation
        public float* FfnAct; // (N, F)
    }
}
