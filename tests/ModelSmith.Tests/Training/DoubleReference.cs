using ModelSmith.Models;
using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

/// <summary>
/// The layers and the whole Llama / GPT-2 loss written plainly in double precision, straight from their
/// definitions and reading weights by GGUF tensor name, so finite differences of them are accurate to ~1e-9
/// and independent of the float code under test.
/// </summary>
internal static class DoubleReference
{
    /// <summary>y = x·Wᵀ + b. x: (N, In), w: (Out, In), b: (Out) or null.</summary>
    public static double[] Linear(double[] x, ReadOnlySpan<double> w, ReadOnlySpan<double> b, int n, int inDim, int outDim)
    {
        var y = new double[n * outDim];
        for (int t = 0; t < n; t++)
            for (int o = 0; o < outDim; o++)
            {
                double s = b.IsEmpty ? 0 : b[o];
                for (int i = 0; i < inDim; i++) s += x[t * inDim + i] * w[o * inDim + i];
                y[t * outDim + o] = s;
            }
        return y;
    }

    public static double[] RmsNorm(double[] x, ReadOnlySpan<double> w, double eps, int n, int c)
    {
        var y = new double[n * c];
        for (int t = 0; t < n; t++)
        {
            double ss = 0;
            for (int i = 0; i < c; i++) ss += x[t * c + i] * x[t * c + i];
            double r = 1 / Math.Sqrt(ss / c + eps);
            for (int i = 0; i < c; i++) y[t * c + i] = x[t * c + i] * r * w[i];
        }
        return y;
    }

    public static double[] LayerNorm(double[] x, ReadOnlySpan<double> w, ReadOnlySpan<double> b, double eps, int n, int c)
    {
        var y = new double[n * c];
        for (int t = 0; t < n; t++)
        {
            double mean = 0;
            for (int i = 0; i < c; i++) mean += x[t * c + i];
            mean /= c;
            double v = 0;
            for (int i = 0; i < c; i++) v += (x[t * c + i] - mean) * (x[t * c + i] - mean);
            double r = 1 / Math.Sqrt(v / c + eps);
            for (int i = 0; i < c; i++) y[t * c + i] = (x[t * c + i] - mean) * r * w[i] + b[i];
        }
        return y;
    }

    /// <summary>Rotates adjacent pairs of the first <paramref name="dims"/> of every Q and K head; qkv: (N, H·D + 2·Hkv·D).</summary>
    public static void Rope(double[] qkv, int n, int seqLen, int heads, int kvHeads, int d, int dims, double freqBase)
    {
        int stride = (heads + 2 * kvHeads) * d;
        for (int t = 0; t < n; t++)
        {
            int p = t % seqLen;
            for (int h = 0; h < heads + kvHeads; h++)
                for (int i = 0; i < dims / 2; i++)
                {
                    double theta = p * Math.Pow(freqBase, -2.0 * i / dims);
                    int at = t * stride + h * d + 2 * i;
                    double a = qkv[at], bb = qkv[at + 1];
                    qkv[at] = a * Math.Cos(theta) - bb * Math.Sin(theta);
                    qkv[at + 1] = a * Math.Sin(theta) + bb * Math.Cos(theta);
                }
        }
    }

    /// <summary>Causal GQA attention; qkv: (B·T, H·D + 2·Hkv·D) → (B·T, H·D).</summary>
    public static double[] Attention(double[] qkv, int batch, int seqLen, int heads, int kvHeads, int d)
    {
        int qDim = heads * d, stride = qDim + 2 * kvHeads * d;
        var output = new double[batch * seqLen * qDim];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                int g = h / (heads / kvHeads);
                for (int i = 0; i < seqLen; i++)
                {
                    var s = new double[i + 1];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j <= i; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < d; e++) dot += qkv[(b * seqLen + i) * stride + h * d + e] * qkv[(b * seqLen + j) * stride + qDim + g * d + e];
                        s[j] = dot / Math.Sqrt(d);
                        max = Math.Max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) sum += s[j] = Math.Exp(s[j] - max);
                    for (int e = 0; e < d; e++)
                    {
                        double o = 0;
                        for (int j = 0; j <= i; j++) o += s[j] / sum * qkv[(b * seqLen + j) * stride + qDim + kvHeads * d + g * d + e];
                        output[(b * seqLen + i) * qDim + h * d + e] = o;
                    }
                }
            }
        return output;
    }

    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    public static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>gateUp: (N, 2F) rows [gate | up] → (N, F).</summary>
    public static double[] SwiGlu(double[] gateUp, int n, int f)
    {
        var y = new double[n * f];
        for (int t = 0; t < n; t++)
            for (int i = 0; i < f; i++) y[t * f + i] = Silu(gateUp[t * 2 * f + i]) * gateUp[t * 2 * f + f + i];
        return y;
    }

    /// <summary>Mean over counted rows of log Σ exp(z) − z[target]. logits: (N, V).</summary>
    public static double CrossEntropy(double[] logits, int[] targets, bool[]? mask, int n, int v)
    {
        double sum = 0;
        int count = 0;
        for (int t = 0; t < n; t++)
        {
            if (mask != null && !mask[t]) continue;
            double max = double.NegativeInfinity;
            for (int j = 0; j < v; j++) max = Math.Max(max, logits[t * v + j]);
            double s = 0;
            for (int j = 0; j < v; j++) s += Math.Exp(logits[t * v + j] - max);
            sum += max + Math.Log(s) - logits[t * v + targets[t]];
            count++;
        }
        return count == 0 ? 0 : sum / count;
    }

    /// <summary>The logits (B·T, V) of the model with parameters <paramref name="p"/> (laid out by <paramref name="layout"/>).</summary>
    public static double[] Logits(ParameterLayout layout, double[] p, int[] tokens, int batch, int seqLen)
    {
        ModelConfig cfg = layout.Config;
        bool llama = cfg.Architecture == ModelArchitecture.Llama;
        int n = batch * seqLen, c = cfg.EmbeddingLength, f = cfg.FeedForwardLength, d = cfg.HeadDim;
        int qkvDim = cfg.QDim + 2 * cfg.KvDim;
        ReadOnlySpan<double> T(string name)
        {
            ParameterTensor t = layout.Find(name) ?? throw new KeyNotFoundException(name);
            return p.AsSpan(t.Offset, t.Length);
        }
        double[] Norm(double[] x, string prefix) => llama
            ? RmsNorm(x, T(prefix + ".weight"), cfg.NormEpsilon, n, c)
            : LayerNorm(x, T(prefix + ".weight"), T(prefix + ".bias"), cfg.NormEpsilon, n, c);

        var x = new double[n * c];
        for (int t = 0; t < n; t++)
            for (int i = 0; i < c; i++)
                x[t * c + i] = T("token_embd.weight")[tokens[t] * c + i] + (llama ? 0 : T("position_embd.weight")[t % seqLen * c + i]);

        for (int l = 0; l < cfg.BlockCount; l++)
        {
            string b = $"blk.{l}.";
            double[] h = Norm(x, b + "attn_norm");
            double[] qkv;
            if (llama)
            {
                double[] q = Linear(h, T(b + "attn_q.weight"), [], n, c, cfg.QDim);
                double[] k = Linear(h, T(b + "attn_k.weight"), [], n, c, cfg.KvDim);
                double[] v = Linear(h, T(b + "attn_v.weight"), [], n, c, cfg.KvDim);
                qkv = new double[n * qkvDim];
                for (int t = 0; t < n; t++)
                {
                    Array.Copy(q, t * cfg.QDim, qkv, t * qkvDim, cfg.QDim);
                    Array.Copy(k, t * cfg.KvDim, qkv, t * qkvDim + cfg.QDim, cfg.KvDim);
                    Array.Copy(v, t * cfg.KvDim, qkv, t * qkvDim + cfg.QDim + cfg.KvDim, cfg.KvDim);
                }
                Rope(qkv, n, seqLen, cfg.HeadCount, cfg.KvHeadCount, d, cfg.RopeDims, cfg.RopeFreqBase);
            }
            else
            {
                qkv = Linear(h, T(b + "attn_qkv.weight"), T(b + "attn_qkv.bias"), n, c, qkvDim);
            }
            double[] att = Attention(qkv, batch, seqLen, cfg.HeadCount, cfg.KvHeadCount, d);
            double[] proj = Linear(att, T(b + "attn_output.weight"), llama ? [] : T(b + "attn_output.bias"), n, cfg.QDim, c);
            for (int i = 0; i < x.Length; i++) x[i] += proj[i];

            h = Norm(x, b + "ffn_norm");
            double[] act;
            if (llama)
            {
                double[] gate = Linear(h, T(b + "ffn_gate.weight"), [], n, c, f);
                double[] up = Linear(h, T(b + "ffn_up.weight"), [], n, c, f);
                act = new double[n * f];
                for (int i = 0; i < act.Length; i++) act[i] = Silu(gate[i]) * up[i];
            }
            else
            {
                act = Linear(h, T(b + "ffn_up.weight"), T(b + "ffn_up.bias"), n, c, f);
                for (int i = 0; i < act.Length; i++) act[i] = Gelu(act[i]);
            }
            proj = Linear(act, T(b + "ffn_down.weight"), llama ? [] : T(b + "ffn_down.bias"), n, f, c);
            for (int i = 0; i < x.Length; i++) x[i] += proj[i];
        }
        double[] nf = Norm(x, "output_norm");
        return Linear(nf, T(cfg.TiedOutput ? "token_embd.weight" : "output.weight"), [], n, c, cfg.VocabSize);
    }

    public static double Loss(ParameterLayout layout, double[] p, int[] tokens, int[] targets, bool[]? mask, int batch, int seqLen)
        => CrossEntropy(Logits(layout, p, tokens, batch, seqLen), targets, mask, batch * seqLen, layout.Config.VocabSize);
}
