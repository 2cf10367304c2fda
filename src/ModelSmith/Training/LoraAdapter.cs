using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelSmith.Training;

/// <summary>
/// LoRA adapters attached to a <see cref="TrainingModel"/> (see <see cref="TrainingModel.AttachLora"/>): their
/// weights, gradients, what their forward pass keeps, and the dropout stream. While attached, the base model is
/// frozen: the backward pass produces adapter gradients only.
/// </summary>
public sealed unsafe class LoraAdapter
{
    private readonly float[] _kept;    // per target: hsᵀ (r, N), then xd (N, In) when dropout is on
    private readonly float[] _scratch; // dhT (r, N), dbT (r, max Out), dxd (N, max In)
    private readonly long[] _hs;
    private readonly long[] _xd;
    private readonly int _maxOut;

    internal LoraAdapter(ParameterLayout model, LoraOptions options, int maxTokens, ulong seed)
    {
        Layout = new LoraLayout(model, options);
        Parameters = new LoraParameters(Layout);
        Gradients = new LoraGradients(Layout);
        Parameters.Initialize(seed);
        DropoutSeed = seed ^ 0xD1B54A32D192ED03UL;
        int r = options.Rank, maxIn = 0, maxOut = 0;
        long kept = 0;
        _hs = new long[Layout.Targets.Count];
        _xd = new long[Layout.Targets.Count];
        for (int i = 0; i < Layout.Targets.Count; i++)
        {
            LoraTarget t = Layout.Targets[i];
            _hs[i] = kept;
            kept += (long)maxTokens * r;
            _xd[i] = options.Dropout > 0 ? kept : -1;
            if (options.Dropout > 0) kept += (long)maxTokens * t.In;
            maxIn = Math.Max(maxIn, t.In);
            maxOut = Math.Max(maxOut, t.Out);
        }
        if (kept > Array.MaxLength) throw new ArgumentException("The LoRA activations for this batch size exceed one array; use a smaller batch.", nameof(maxTokens));
        _kept = GC.AllocateArray<float>((int)kept, pinned: true);
        _maxOut = maxOut;
        _scratch = GC.AllocateArray<float>(checked(maxTokens * r + r * maxOut + (options.Dropout > 0 ? maxTokens * maxIn : 0)), pinned: true);
    }

    public LoraLayout Layout { get; }

    public LoraOptions Options => Layout.Options;

    public LoraParameters Parameters { get; }

    public LoraGradients Gradients { get; }

    /// <summary>Seed of the dropout masks.</summary>
    public ulong DropoutSeed { get; set; }

    /// <summary>Training forward passes so far; with <see cref="DropoutSeed"/> it fixes every future mask (checkpoint it).</summary>
    public long DropoutCounter { get; set; }

    internal IReadOnlyList<LoraTarget> Targets => Layout.Targets;

    /// <summary>hsᵀ = s·A·d(x)ᵀ of target <paramref name="target"/>: (r, N).</summary>
    internal float* Hs(int target) => Pointer(_kept) + _hs[target];

    internal float* Xd(int target) => _xd[target] < 0 ? null : Pointer(_kept) + _xd[target];

    /// <summary>Scratch dhᵀ: (r, N).</summary>
    internal float* Dh => Pointer(_scratch);

    /// <summary>Scratch (dB)ᵀ: (r, Out) of the widest target.</summary>
    internal float* DbT(int tokens) => Pointer(_scratch) + (long)tokens * Options.Rank;

    /// <summary>Scratch for the dropout input gradient: (N, In) of the widest target.</summary>
    internal float* Dxd(int tokens) => DbT(tokens) + (long)Options.Rank * _maxOut;

    /// <summary>The dropout key of target <paramref name="target"/> in forward pass number <paramref name="counter"/>.</summary>
    internal ulong Key(long counter, int target)
    {
        ulong z = DropoutSeed + (ulong)counter * 0x9E3779B97F4A7C15UL + (ulong)target * 0xC2B2AE3D27D4EB4FUL;
        z = (z ^ (z >> 33)) * 0xFF51AFD7ED558CCDUL;
        return z ^ (z >> 33);
    }

    private static float* Pointer(float[] pinned) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
}
