using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ModelSmith.Models;

namespace ModelSmith.Training;

/// <summary>
/// A flat float vector laid out by a <see cref="TensorLayout"/>, allocated once and pinned, so kernels
/// address its tensors by offset. Base of <see cref="ModelParameters"/> and <see cref="ModelGradients"/> (and
/// of the LoRA adapter sets), which are separate types so that one is never passed where the other is meant.
/// </summary>
public abstract unsafe class TensorSet<TLayout> where TLayout : TensorLayout
{
    private readonly float[] _values;

    private protected TensorSet(TLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Layout = layout;
        _values = GC.AllocateArray<float>(layout.Count, pinned: true);
        Pointer = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values));
    }

    public TLayout Layout { get; }

    /// <summary>All values, in layout order.</summary>
    public Span<float> Values => _values;

    /// <summary>The values of one tensor: (Rows, Cols) row-major.</summary>
    public Span<float> this[ParameterTensor tensor]
    {
        get
        {
            ArgumentNullException.ThrowIfNull(tensor);
            return _values.AsSpan(tensor.Offset, tensor.Length);
        }
    }

    /// <summary>The values of the tensor with GGUF name <paramref name="name"/>.</summary>
    public Span<float> this[string name] => this[Layout.Find(name) ?? throw new KeyNotFoundException($"The model has no tensor '{name}'.")];

    /// <summary>Start of the (pinned) values.</summary>
    internal float* Pointer { get; }

    /// <summary>The values at <paramref name="offset"/> (a layout offset; −1 gives null).</summary>
    internal float* At(int offset) => offset < 0 ? null : Pointer + offset;

    /// <summary>Copies every value from <paramref name="other"/>, which must have the same layout.</summary>
    public void CopyFrom(TensorSet<TLayout> other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (!other.Layout.SameShape(Layout))
            throw new ArgumentException("Cannot copy between tensor sets of different layouts.", nameof(other));
        other._values.AsSpan().CopyTo(_values);
    }
}

/// <summary>The trainable weights of a model, in <see cref="ParameterLayout"/> order.</summary>
public sealed class ModelParameters : TensorSet<ParameterLayout>
{
    public ModelParameters(ParameterLayout layout) : base(layout)
    {
    }

    public ModelConfig Config => Layout.Config;

    /// <summary>
    /// GPT-2-style initialisation from <paramref name="seed"/>: matrices and embeddings N(0, std²), the two
    /// projections that write into the residual stream (attn_output, ffn_down) scaled by 1/√(2·layers) so the
    /// stream's variance does not grow with depth, norm scales 1, biases 0. Tensors are drawn in layout order.
    /// </summary>
    public void Initialize(ulong seed, float std = 0.02f)
    {
        var rng = new TrainingRandom(seed);
        float residualStd = std / MathF.Sqrt(2f * Config.BlockCount);
        foreach (ParameterTensor t in Layout.Tensors)
        {
            Span<float> values = this[t];
            switch (t.Kind)
            {
                case ParameterKind.Norm: values.Fill(1f); break;
                case ParameterKind.Bias: values.Clear(); break;
                default:
                    bool residual = t.Name.EndsWith("attn_output.weight", StringComparison.Ordinal) || t.Name.EndsWith("ffn_down.weight", StringComparison.Ordinal);
                    rng.FillNormal(values, 0f, residual ? residualStd : std);
                    break;
            }
        }
    }
}

/// <summary>Gradients of the loss with respect to every parameter, in <see cref="ParameterLayout"/> order.</summary>
public sealed class ModelGradients : TensorSet<ParameterLayout>
{
    public ModelGradients(ParameterLayout layout) : base(layout)
    {
    }

    /// <summary>Sets every gradient to 0 (before the first micro-batch of a step).</summary>
    public void Clear() => Values.Clear();
}
