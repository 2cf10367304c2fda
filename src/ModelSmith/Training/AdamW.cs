using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Text;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>Hyperparameters of <see cref="AdamW"/>.</summary>
public sealed record AdamWOptions
{
    public float Beta1 { get; init; } = 0.9f;

    public float Beta2 { get; init; } = 0.95f;

    public float Epsilon { get; init; } = 1e-8f;

    /// <summary>Decoupled weight decay λ: each step θ −= lr·λ·θ, on matrices only (see <see cref="DecayEmbeddings"/>).</summary>
    public float WeightDecay { get; init; } = 0.1f;

    /// <summary>Whether embeddings (token, position, and the untied output) decay too; norms and biases never do.</summary>
    public bool DecayEmbeddings { get; init; } = true;

    /// <summary>Clip the gradient to this global L2 norm before the update; 0 turns clipping off.</summary>
    public float MaxGradNorm { get; init; } = 1f;

    /// <summary>Null when the options are usable, else what is wrong.</summary>
    public string? Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1)) return $"beta1 {Beta1} must be in [0, 1).";
        if (!(Beta2 >= 0 && Beta2 < 1)) return $"beta2 {Beta2} must be in [0, 1).";
        if (!(Epsilon > 0)) return $"epsilon {Epsilon} must be positive.";
        if (!(WeightDecay >= 0) || float.IsInfinity(WeightDecay)) return $"weight decay {WeightDecay} must be a non-negative number.";
        if (!(MaxGradNorm >= 0)) return $"maximum gradient norm {MaxGradNorm} must be 0 (off) or positive.";
        return null;
    }
}

/// <summary>What one optimizer step did.</summary>
public readonly record struct OptimizerStep(long Step, float LearningRate, double GradientNorm, float ClipScale);

/// <summary>
/// AdamW (Loshchilov &amp; Hutter): Adam moments with bias correction and weight decay decoupled from the
/// gradient, over every tensor of a <see cref="TensorLayout"/>. Per element, with g the (clipped) gradient:
/// m = β₁m + (1 − β₁)g, v = β₂v + (1 − β₂)g², θ −= lr·(m̂/(√v̂ + ε) + λθ), m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ),
/// with λ = 0 for norms and biases (and embeddings unless <see cref="AdamWOptions.DecayEmbeddings"/>).
/// </summary>
/// <remarks>
/// The global gradient norm is summed in double over fixed chunks, then the chunks in order, and the update
/// is element-wise, so a step is bit-identical for every thread count. The moments and the step count are the
/// whole state; <see cref="SaveState"/> and <see cref="LoadState"/> move it through a stream for checkpoints.
/// </remarks>
public sealed unsafe class AdamW
{
    private const int Chunk = 1 << 16;
    private const uint Magic = 0x57414D53; // "SMAW"
    private const int Version = 1;

    private readonly TensorLayout _layout;
    private readonly float[] _m;
    private readonly float[] _v;
    private readonly double[] _partials;

    public AdamW(TensorLayout layout, AdamWOptions options)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(options);
        string? problem = options.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(options));
        _layout = layout;
        Options = options;
        _m = GC.AllocateArray<float>(layout.Count, pinned: true);
        _v = GC.AllocateArray<float>(layout.Count, pinned: true);
        _partials = new double[(layout.Count + Chunk - 1) / Chunk];
    }

    public AdamWOptions Options { get; }

    /// <summary>Updates done so far (t of the bias correction is Step + 1 during the next update).</summary>
    public long Step { get; private set; }

    /// <summary>First moments, in layout order.</summary>
    public ReadOnlySpan<float> FirstMoments => _m;

    /// <summary>Second moments, in layout order.</summary>
    public ReadOnlySpan<float> SecondMoments => _v;

    /// <summary>True when weight decay applies to tensors of <paramref name="kind"/>.</summary>
    public bool Decays(ParameterKind kind) => kind switch
    {
        ParameterKind.Norm or ParameterKind.Bias => false,
        ParameterKind.TokenEmbedding or ParameterKind.PositionEmbedding or ParameterKind.Output => Options.DecayEmbeddings,
        _ => true,
    };

    /// <summary>The global L2 norm of <paramref name="gradients"/>, summed in a fixed order.</summary>
    public double GradientNorm<TLayout>(TensorSet<TLayout> gradients) where TLayout : TensorLayout
    {
        CheckLayout(gradients.Layout);
        return Math.Sqrt(SumOfSquares(gradients.Pointer, _layout.Count, null));
    }

    /// <summary>
    /// One AdamW update of <paramref name="parameters"/> with <paramref name="gradients"/> at rate
    /// <paramref name="learningRate"/>, clipping the gradient to <see cref="AdamWOptions.MaxGradNorm"/> first.
    /// The gradients are not modified.
    /// </summary>
    public OptimizerStep Update<TLayout>(TensorSet<TLayout> parameters, TensorSet<TLayout> gradients, float learningRate)
        where TLayout : TensorLayout
        => Update(parameters, gradients, learningRate, null);

    /// <summary><see cref="Update{TLayout}(TensorSet{TLayout}, TensorSet{TLayout}, float)"/> on a thread pool (same result for every thread count).</summary>
    internal OptimizerStep Update<TLayout>(TensorSet<TLayout> parameters, TensorSet<TLayout> gradients, float learningRate, ComputePool? pool)
        where TLayout : TensorLayout
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(gradients);
        CheckLayout(parameters.Layout);
        CheckLayout(gradients.Layout);
        if (!(learningRate >= 0) || float.IsInfinity(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "The learning rate must be a non-negative finite number.");
        double norm = Math.Sqrt(SumOfSquares(gradients.Pointer, _layout.Count, pool));
        float clip = 1f;
        if (Options.MaxGradNorm > 0 && norm > Options.MaxGradNorm) clip = (float)(Options.MaxGradNorm / (norm + 1e-6));
        if (double.IsNaN(norm) || double.IsInfinity(norm))
            throw new InvalidOperationException($"The gradient norm is {norm} at step {Step + 1}; the loss diverged (lower the learning rate) or the data produced non-finite values.");

        long t = Step + 1;
        var job = new UpdateJob
        {
            Theta = parameters.Pointer,
            Grad = gradients.Pointer,
            M = Pointer(_m),
            V = Pointer(_v),
            Count = _layout.Count,
            Beta1 = Options.Beta1,
            Beta2 = Options.Beta2,
            Epsilon = Options.Epsilon,
            Clip = clip,
            Rate = learningRate,
            Correction1 = (float)(1 - Math.Pow(Options.Beta1, t)),
            Correction2 = (float)(1 - Math.Pow(Options.Beta2, t)),
        };
        foreach (ParameterTensor tensor in _layout.Tensors)
        {
            job.Start = tensor.Offset;
            job.End = tensor.Offset + tensor.Length;
            job.Decay = Decays(tensor.Kind) ? Options.WeightDecay : 0f;
            int chunks = (tensor.Length + Chunk - 1) / Chunk;
            if (pool != null) pool.Run(in job, chunks);
            else for (int i = 0; i < chunks; i++) job.Execute(i, 0);
        }
        Step = t;
        return new OptimizerStep(t, learningRate, norm, clip);
    }

    /// <summary>
    /// Writes the step count and both moments (with the layout's tensor names and sizes, so a mismatched
    /// load is caught). Little-endian binary.
    /// </summary>
    public void SaveState(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write(Step);
        w.Write(_layout.Tensors.Count);
        foreach (ParameterTensor t in _layout.Tensors)
        {
            w.Write(t.Name);
            w.Write(t.Length);
        }
        WriteFloats(w, _m);
        WriteFloats(w, _v);
    }

    /// <summary>Restores what <see cref="SaveState"/> wrote; the layout must match tensor for tensor.</summary>
    public void LoadState(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var r = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        try
        {
            if (r.ReadUInt32() != Magic) throw new InvalidDataException("The stream is not a ModelSmith AdamW state (bad magic).");
            int version = r.ReadInt32();
            if (version != Version) throw new InvalidDataException($"AdamW state version {version} is not supported (expected {Version}).");
            long step = r.ReadInt64();
            if (step < 0) throw new InvalidDataException($"AdamW state has a negative step count {step}.");
            int count = r.ReadInt32();
            if (count != _layout.Tensors.Count)
                throw new InvalidDataException($"AdamW state holds {count} tensors but the model has {_layout.Tensors.Count}; it belongs to a different model.");
            foreach (ParameterTensor t in _layout.Tensors)
            {
                string name = r.ReadString();
                int length = r.ReadInt32();
                if (name != t.Name || length != t.Length)
                    throw new InvalidDataException($"AdamW state has tensor '{name}' of {length} values where the model has '{t.Name}' of {t.Length}; it belongs to a different model.");
            }
            var m = new float[_m.Length];
            var v = new float[_v.Length];
            ReadFloats(r, m);
            ReadFloats(r, v);
            m.CopyTo(_m, 0);
            v.CopyTo(_v, 0);
            Step = step;
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("The AdamW state ends early (truncated file).", e);
        }
    }

    private void CheckLayout(TensorLayout layout)
    {
        if (!ReferenceEquals(layout, _layout) && !layout.SameShape(_layout))
            throw new ArgumentException("The tensors do not have the layout this optimizer was created for.", nameof(layout));
    }

    private double SumOfSquares(float* g, int count, ComputePool? pool)
    {
        fixed (double* partials = _partials)
        {
            var job = new NormJob { G = g, Count = count, Partials = partials };
            if (pool != null) pool.Run(in job, _partials.Length);
            else for (int i = 0; i < _partials.Length; i++) job.Execute(i, 0);
        }
        double sum = 0;
        foreach (double p in _partials) sum += p;
        return sum;
    }

    private static float* Pointer(float[] pinned) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned));

    private static void WriteFloats(BinaryWriter w, float[] values)
    {
        var bytes = new byte[Math.Min(values.Length, 1 << 16) * sizeof(float)];
        for (int i = 0; i < values.Length; i += 1 << 16)
        {
            int n = Math.Min(1 << 16, values.Length - i);
            for (int j = 0; j < n; j++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(j * 4), values[i + j]);
            w.Write(bytes, 0, n * sizeof(float));
        }
    }

    private static void ReadFloats(BinaryReader r, float[] values)
    {
        var bytes = new byte[Math.Min(values.Length, 1 << 16) * sizeof(float)];
        for (int i = 0; i < values.Length; i += 1 << 16)
        {
            int n = Math.Min(1 << 16, values.Length - i);
            r.BaseStream.ReadExactly(bytes, 0, n * sizeof(float));
            for (int j = 0; j < n; j++) values[i + j] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(j * 4));
        }
    }

    private struct NormJob : IParallelJob
    {
        public float* G;
        public int Count;
        public double* Partials;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int start = item * Chunk, end = Math.Min(Count, start + Chunk);
            Partials[item] = VectorOps.SumOfSquaresDouble(new ReadOnlySpan<float>(G + start, end - start));
        }
    }

    private struct UpdateJob : IParallelJob
    {
        public float* Theta, Grad, M, V;
        public int Count, Start, End;
        public float Beta1, Beta2, Epsilon, Clip, Rate, Decay, Correction1, Correction2;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int i0 = Start + item * Chunk, i1 = Math.Min(End, i0 + Chunk);
            int i = i0;
            if (Vector512.IsHardwareAccelerated) i = Update<Vector512<float>, F512>(i, i1);
            else if (Vector256.IsHardwareAccelerated) i = Update<Vector256<float>, F256>(i, i1);
            else if (Vector128.IsHardwareAccelerated) i = Update<Vector128<float>, F128>(i, i1);
            Update<float, F1>(i, i1);
        }

        // The same operations in the same order at every width, so an element's update does not depend on it.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly int Update<TV, TS>(int i, int end) where TV : unmanaged where TS : IFloatVector<TV>
        {
            int l = TS.Lanes;
            TV b1 = TS.Create(Beta1), b2 = TS.Create(Beta2), c1 = TS.Create(1 - Beta1), c2 = TS.Create(1 - Beta2);
            TV clip = TS.Create(Clip), rate = TS.Create(Rate), decay = TS.Create(Decay), eps = TS.Create(Epsilon);
            TV k1 = TS.Create(Correction1), k2 = TS.Create(Correction2);
            for (; i <= end - l; i += l)
            {
                TV g = TS.Multiply(TS.Load(Grad + i), clip);
                TV m = TS.Add(TS.Multiply(b1, TS.Load(M + i)), TS.Multiply(c1, g));
                TV v = TS.Add(TS.Multiply(b2, TS.Load(V + i)), TS.Multiply(TS.Multiply(c2, g), g));
                TS.Store(m, M + i);
                TS.Store(v, V + i);
                TV theta = TS.Load(Theta + i);
                TV step = TS.Add(TS.Divide(TS.Divide(m, k1), TS.Add(TS.Sqrt(TS.Divide(v, k2)), eps)), TS.Multiply(decay, theta));
                TS.Store(TS.Subtract(theta, TS.Multiply(rate, step)), Theta + i);
            }
            return i;
        }
    }
}
