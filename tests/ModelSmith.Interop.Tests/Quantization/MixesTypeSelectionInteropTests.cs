using System.Text;
using LLama.Native;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Our per-tensor type choice (QuantMix) against llama.cpp's own (llama_quant_compute_types, the code behind
/// llama_model_quantize's choice) for every file type over many model shapes: layer counts that move the
/// n/16, n/8 and use_more_bits boundaries, every grouped-query ratio, tied and untied output, row lengths
/// that need fallbacks, mixtures of experts, Falcon, GPT-2's fused attn_qkv, a 70B llama, and overrides.
/// </summary>
[Trait("Category", "Interop")]
public sealed class MixesTypeSelectionInteropTests(ITestOutputHelper output)
{
    private static readonly QuantFileType[] s_fileTypes = QuantFileTypes.All.ToArray();

    private static readonly QuantFileType[] s_kQuantFileTypes =
    [
        QuantFileType.Q2_K, QuantFileType.Q3_K_S, QuantFileType.Q3_K_M, QuantFileType.Q3_K_L,
        QuantFileType.Q4_K_S, QuantFileType.Q4_K_M, QuantFileType.Q5_K_S, QuantFileType.Q5_K_M, QuantFileType.Q6_K,
    ];

    public static TheoryData<string> Shapes => new(s_shapes.Keys);

    /// <summary>Model shapes; rows of 200 (not a multiple of 32) only go with K-quant file types, where llama.cpp falls back to F16.</summary>
    private static readonly Dictionary<string, (MixesNative.ModelSpec Model, bool Tied, QuantFileType[] FileTypes)> s_shapes = new()
    {
        ["llama-1-layer-mha-untied"] = (Llama(1, 256, 512, 8, 8), false, s_fileTypes),
        ["llama-2-layers-gqa2-tied"] = (Llama(2, 256, 512, 8, 4), true, s_fileTypes),
        ["llama-5-layers-gqa4-untied"] = (Llama(5, 256, 768, 8, 2), false, s_fileTypes),
        ["llama-8-layers-gqa8-untied"] = (Llama(8, 256, 512, 8, 1), false, s_fileTypes),
        ["llama-9-layers-mha-tied"] = (Llama(9, 512, 256, 8, 8), true, s_fileTypes),
        ["llama-16-layers-gqa4-untied"] = (Llama(16, 256, 512, 8, 2), false, s_fileTypes),
        ["llama-17-layers-gqa2-untied"] = (Llama(17, 256, 512, 8, 4), false, s_fileTypes),
        ["llama-24-layers-gqa4-tied"] = (Llama(24, 256, 512, 16, 4), true, s_fileTypes),
        ["llama-32-layers-gqa4-untied"] = (Llama(32, 256, 512, 32, 8), false, s_fileTypes),
        ["llama-40-layers-mha-untied"] = (Llama(40, 256, 256, 8, 8), false, s_fileTypes),
        ["llama-80-layers-gqa8-70B"] = (Llama(80, 256, 256, 64, 8), false, s_fileTypes),
        ["llama-80-layers-mha-65B"] = (Llama(80, 256, 256, 8, 8), false, s_fileTypes),
        ["llama-rows-of-96-and-224-untied"] = (Llama(8, 96, 224, 4, 1), false, s_fileTypes),
        ["llama-rows-of-96-and-224-tied"] = (Llama(6, 96, 224, 4, 2), true, s_fileTypes),
        ["llama-rows-of-96-and-200-kquants"] = (Llama(16, 96, 200, 4, 1), false, s_kQuantFileTypes),
        ["llama-rows-of-64-tied-kquants"] = (Llama(5, 64, 172, 8, 4), true, s_kQuantFileTypes),
        ["llama-8-experts"] = (Llama(8, 256, 512, 8, 2) with { Experts = 8 }, false, s_fileTypes),
        ["llama-4-experts-tied"] = (Llama(12, 256, 512, 8, 8) with { Experts = 4 }, true, s_fileTypes),
        ["falcon-16-layers"] = (Llama(16, 256, 512, 8, 1) with { Architecture = "falcon" }, false, s_fileTypes),
        ["falcon-rows-of-96"] = (Llama(4, 96, 224, 4, 1) with { Architecture = "falcon" }, true, s_fileTypes),
        ["gpt2-12-layers"] = (Llama(12, 256, 1024, 8, 8) with { Architecture = "gpt2" }, false, s_fileTypes),
        ["gpt2-rows-of-96-tied"] = (Llama(3, 96, 384, 4, 4) with { Architecture = "gpt2" }, true, s_fileTypes),
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Every_tensor_gets_llama_cpp_type_for_every_file_type(string shape)
    {
        (MixesNative.ModelSpec model, bool tied, QuantFileType[] fileTypes) = s_shapes[shape];
        GgufTensorInfo[] tensors = QuantMix.LlamaOrder(Tensors(model, tied));
        var report = new StringBuilder();
        int compared = 0;
        foreach (QuantFileType fileType in fileTypes)
        {
            GgmlType[] theirs = MixesNative.ComputeTypes(model, Specs(tensors), (LLamaFtype)(int)fileType);
            var plan = QuantMix.Plan(Info(model), tensors, fileType);
            for (int i = 0; i < tensors.Length; i++)
            {
                compared++;
                if (plan[i].Choice.Type != theirs[i])
                {
                    report.AppendLine($"  {fileType} {tensors[i].Name} {tensors[i].ShapeText}: ours {plan[i].Choice.Type}, llama.cpp {theirs[i]}");
                }
            }
            output.WriteLine($"{fileType}: {Summary(plan.Select(p => p.Choice.Type))}");
        }
        Assert.True(report.Length == 0, $"{shape}: type choices differ from llama.cpp ({compared} compared):\n{report}");
    }

    [Fact]
    public void Overrides_choose_the_types_llama_cpp_tensor_type_option_chooses()
    {
        var model = Llama(16, 96, 224, 4, 1);
        GgufTensorInfo[] tensors = QuantMix.LlamaOrder(Tensors(model, tied: false));
        (string Pattern, GgmlType Type)[] overrides =
        [
            (@"blk\.1[0-5]\.ffn_down", GgmlType.Q8_0),
            ("attn_v", GgmlType.Q2_K),
            ("token_embd", GgmlType.F16),
            (@"^output\.", GgmlType.Q4_K),
            (@"blk\.[0-3]\.attn_(q|k)\.weight$", GgmlType.Q5_1),
            ("ffn_gate", GgmlType.BF16),
        ];
        var ours = overrides.Select(o => TensorTypeOverride.FromRegex(o.Pattern, o.Type)).ToArray();
        var report = new StringBuilder();
        foreach (QuantFileType fileType in s_fileTypes)
        {
            GgmlType[] theirs = MixesNative.ComputeTypes(model, Specs(tensors), (LLamaFtype)(int)fileType, overrides);
            var plan = QuantMix.Plan(Info(model), tensors, fileType, overrides: ours);
            for (int i = 0; i < tensors.Length; i++)
            {
                if (plan[i].Choice.Type != theirs[i])
                {
                    report.AppendLine($"  {fileType} {tensors[i].Name}: ours {plan[i].Choice.Type}, llama.cpp {theirs[i]}");
                }
            }
        }
        Assert.True(report.Length == 0, $"override choices differ from llama.cpp:\n{report}");
    }

    private static MixesNative.ModelSpec Llama(int layers, int embedding, int feedForward, int heads, int kvHeads) =>
        new("llama", embedding, feedForward, layers, heads, kvHeads, 0);

    private static QuantModelInfo Info(MixesNative.ModelSpec m) => new(m.Architecture, m.Layers, m.Heads, m.KvHeads, m.Experts);

    private static MixesNative.TensorSpec[] Specs(GgufTensorInfo[] tensors) =>
        tensors.Select(t => new MixesNative.TensorSpec(t.Name, t.Shape)).ToArray();

    /// <summary>The tensors a GGUF of this architecture holds, with their shapes (innermost first).</summary>
    private static List<GgufTensorInfo> Tensors(MixesNative.ModelSpec m, bool tied)
    {
        const int vocab = 512;
        int c = m.Embedding;
        int f = m.FeedForward;
        int kv = c / m.Heads * m.KvHeads;
        var list = new List<GgufTensorInfo>();
        void Add(string name, params long[] shape) => list.Add(new GgufTensorInfo(name, GgmlType.F32, shape, 0));
        Add("token_embd.weight", c, vocab);
        Add("output_norm.weight", c);
        if (!tied)
        {
            Add("output.weight", c, vocab);
        }
        // Every architecture gets these two: llama.cpp never quantizes them, whatever the architecture.
        Add("position_embd.weight", c, 128);
        Add("token_types.weight", c, 2);
        if (m.Architecture == "gpt2")
        {
            Add("output_norm.bias", c);
        }
        for (int l = 0; l < m.Layers; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", c);
            if (m.Architecture == "gpt2")
            {
                Add(p + "attn_norm.bias", c);
                Add(p + "attn_qkv.weight", c, 3 * c);
                Add(p + "attn_qkv.bias", 3 * c);
                Add(p + "attn_output.weight", c, c);
                Add(p + "attn_output.bias", c);
                Add(p + "ffn_norm.weight", c);
                Add(p + "ffn_norm.bias", c);
                Add(p + "ffn_up.weight", c, f);
                Add(p + "ffn_up.bias", f);
                Add(p + "ffn_down.weight", f, c);
                Add(p + "ffn_down.bias", c);
                continue;
            }
            Add(p + "attn_q.weight", c, c);
            Add(p + "attn_k.weight", c, kv);
            Add(p + "attn_v.weight", c, kv);
            Add(p + "attn_output.weight", c, c);
            Add(p + "ffn_norm.weight", c);
            if (m.Experts > 1)
            {
                Add(p + "ffn_gate_inp.weight", c, m.Experts);
                Add(p + "ffn_gate_exps.weight", c, f, m.Experts);
                Add(p + "ffn_up_exps.weight", c, f, m.Experts);
                Add(p + "ffn_down_exps.weight", f, c, m.Experts);
            }
            else
            {
                Add(p + "ffn_gate.weight", c, f);
                Add(p + "ffn_up.weight", c, f);
                Add(p + "ffn_down.weight", f, c);
            }
        }
        return list;
    }

    private static string Summary(IEnumerable<GgmlType> types) =>
        string.Join(", ", types.GroupBy(t => t).OrderBy(g => g.Key).Select(g => $"{g.Key}×{g.Count()}"));
}
