using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

/// <summary>
/// The file types, overrides and per-tensor rules of llama.cpp's mixes, on hand-worked examples (the interop
/// suite checks them against llama.cpp itself over many shapes).
/// </summary>
public class MixesRuleTests
{
    [Theory]
    [InlineData("q4_k_m", QuantFileType.Q4_K_M)]
    [InlineData("Q4_K_M", QuantFileType.Q4_K_M)]
    [InlineData("q4_k", QuantFileType.Q4_K_M)]
    [InlineData("Q3_K", QuantFileType.Q3_K_M)]
    [InlineData("q5_k", QuantFileType.Q5_K_M)]
    [InlineData("q8_0", QuantFileType.Q8_0)]
    [InlineData(" q2_k ", QuantFileType.Q2_K)]
    [InlineData("15", QuantFileType.Q4_K_M)]
    [InlineData("7", QuantFileType.Q8_0)]
    [InlineData("bf16", QuantFileType.BF16)]
    public void File_types_parse_by_llama_quantize_name_alias_or_number(string text, QuantFileType expected)
    {
        Assert.Equal(expected, QuantFileTypes.Parse(text));
    }

    [Theory]
    [InlineData("q4_k_x")]
    [InlineData("iq2_xxs")]
    [InlineData("4")]
    [InlineData("")]
    public void Unknown_file_types_are_refused_with_the_valid_names(string text)
    {
        Assert.Null(QuantFileTypes.TryParse(text));
        var e = Assert.Throws<FormatException>(() => QuantFileTypes.Parse(text));
        Assert.Contains("Q4_K_M", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_file_type_has_llama_cpp_number_and_default_block_type()
    {
        Assert.Equal(15, (int)QuantFileType.Q4_K_M);
        Assert.Equal(12, (int)QuantFileType.Q3_K_M);
        Assert.Equal(18, (int)QuantFileType.Q6_K);
        Assert.Equal(32, (int)QuantFileType.BF16);
        Assert.Equal(GgmlType.Q3_K, QuantFileTypes.DefaultType(QuantFileType.Q3_K_L));
        Assert.Equal(GgmlType.Q4_K, QuantFileTypes.DefaultType(QuantFileType.Q4_K_S));
        Assert.Equal(GgmlType.Q5_1, QuantFileTypes.DefaultType(QuantFileType.Q5_1));
        Assert.True(QuantFileTypes.IsQuantized(QuantFileType.Q2_K));
        Assert.False(QuantFileTypes.IsQuantized(QuantFileType.F16));
    }

    [Fact]
    public void Glob_overrides_match_whole_names_and_regex_overrides_search()
    {
        var glob = TensorTypeOverride.Parse("blk.*.attn_v.weight=Q8_0");
        Assert.False(glob.IsRegex);
        Assert.Equal(GgmlType.Q8_0, glob.Type);
        Assert.True(glob.Matches("blk.12.attn_v.weight"));
        Assert.False(glob.Matches("blk.12.attn_v.weight.extra"));
        Assert.False(glob.Matches("blkX12.attn_v.weight"));
        var exact = TensorTypeOverride.Parse("output.weight=f16");
        Assert.True(exact.Matches("output.weight"));
        Assert.False(exact.Matches("output_weight"));
        var single = TensorTypeOverride.Parse("blk.?.ffn_down.weight=q6_k");
        Assert.True(single.Matches("blk.7.ffn_down.weight"));
        Assert.False(single.Matches("blk.17.ffn_down.weight"));
        var regex = TensorTypeOverride.Parse(@"re:attn_(q|k)\.=q5_k");
        Assert.True(regex.IsRegex);
        Assert.True(regex.Matches("blk.3.attn_q.weight"));
        Assert.False(regex.Matches("blk.3.attn_v.weight"));
        Assert.Equal(@"re:attn_(q|k)\.=q5_k", regex.ToString());
    }

    [Theory]
    [InlineData("attn_v", "no '='")]
    [InlineData("attn_v=q9_k", "not a tensor type")]
    [InlineData("=q8_0", "no tensor name")]
    [InlineData("re:=q8_0", "empty")]
    [InlineData("re:attn_(=q8_0", "not a valid regular expression")]
    [InlineData("attn_v=iq4_xs", "not a tensor type")]
    public void Malformed_overrides_are_refused_saying_what_is_wrong(string spec, string expected)
    {
        var e = Assert.Throws<FormatException>(() => TensorTypeOverride.Parse(spec));
        Assert.Contains(expected, e.Message.Replace("PATTERN=TYPE", "no '='", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("blk.0.attn_q.weight", 0L)]
    [InlineData("blk.17.ffn_down.weight", 17L)]
    [InlineData("blk.3x.weight", 3L)]
    [InlineData("blk.-2.weight", -2L)]
    [InlineData("blk. 5.weight", 5L)]
    [InlineData("output.weight", null)]
    [InlineData("blk.x.weight", null)]
    public void Layer_numbers_are_read_as_sscanf_reads_blk_n(string name, long? layer)
    {
        Assert.Equal(layer, QuantMix.LayerOf(name));
    }

    [Fact]
    public void Tensors_are_ordered_by_layer_then_by_name_with_non_block_tensors_first()
    {
        string[] names = ["blk.10.attn_q.weight", "output.weight", "blk.2.ffn_up.weight", "blk.2.attn_k.weight", "token_embd.weight", "blk.0.attn_norm.weight", "output_norm.weight"];
        GgufTensorInfo[] ordered = QuantMix.LlamaOrder(names.Select(n => new GgufTensorInfo(n, GgmlType.F32, [256, 256], 0)).ToList());
        Assert.Equal(
            new[] { "output.weight", "output_norm.weight", "token_embd.weight", "blk.0.attn_norm.weight", "blk.2.attn_k.weight", "blk.2.ffn_up.weight", "blk.10.attn_q.weight" },
            ordered.Select(t => t.Name));
    }

    [Theory]
    [InlineData("llama", "blk.0.attn_q.weight", true)]
    [InlineData("llama", "blk.0.attn_norm.weight", false)]
    [InlineData("llama", "blk.0.attn_q.bias", false)]
    [InlineData("llama", "blk.0.ffn_gate_inp.weight", false)]
    [InlineData("gpt2", "position_embd.weight", false)]
    [InlineData("llama", "position_embd.weight", false)]
    [InlineData("bert", "token_types.weight", false)]
    [InlineData("rwkv6", "blk.0.time_mix_w1.weight", false)]
    public void Only_llama_cpp_quantizable_weights_are_converted(string arch, string name, bool quantizable)
    {
        Assert.Equal(quantizable, QuantMix.AllowsQuantization(name, [256, 256]));
        Assert.Equal(quantizable, QuantMix.Plan(new QuantModelInfo(arch, 1, 4, 4, 0), [new GgufTensorInfo(name, GgmlType.F32, [256, 256], 0)], QuantFileType.Q4_0)[0].Choice.Quantizable);
    }

    [Fact]
    public void One_dimensional_tensors_and_trailing_unit_dimensions_are_kept()
    {
        Assert.False(QuantMix.AllowsQuantization("blk.0.x.weight", [256]));
        Assert.False(QuantMix.AllowsQuantization("blk.0.x.weight", [256, 1]));
        Assert.True(QuantMix.AllowsQuantization("blk.0.x.weight", [256, 1, 4]));
    }

    [Fact]
    public void Q4_K_M_gives_q6_k_to_attn_v_and_ffn_down_on_use_more_bits_layers_of_32()
    {
        var plan = Plan(Llama(32, 8, 8), tied: false, QuantFileType.Q4_K_M);
        // use_more_bits(i, 32): i < 4, i >= 28, or (i − 4) % 3 == 2, i.e. 6, 9, ..., 27.
        int[] moreBits = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
        for (int l = 0; l < 32; l++)
        {
            GgmlType expected = moreBits.Contains(l) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(expected, plan[$"blk.{l}.attn_v.weight"]);
            Assert.Equal(expected, plan[$"blk.{l}.ffn_down.weight"]);
            Assert.Equal(GgmlType.Q4_K, plan[$"blk.{l}.attn_q.weight"]);
            Assert.Equal(GgmlType.Q4_K, plan[$"blk.{l}.ffn_up.weight"]);
        }
        Assert.Equal(GgmlType.Q6_K, plan["output.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["token_embd.weight"]);
        Assert.Equal(GgmlType.F32, plan["blk.0.attn_norm.weight"]);
    }

    [Fact]
    public void Q3_K_M_raises_the_first_attn_v_and_the_first_sixteenth_of_ffn_down()
    {
        var plan = Plan(Llama(32, 8, 8), tied: true, QuantFileType.Q3_K_M);
        Assert.Equal(GgmlType.Q5_K, plan["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.Q5_K, plan["blk.1.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["blk.2.attn_v.weight"]);
        Assert.Equal(GgmlType.Q5_K, plan["blk.1.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["blk.2.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["blk.5.attn_output.weight"]);
        Assert.Equal(GgmlType.Q3_K, plan["blk.5.attn_q.weight"]);
        // Tied output: the token embedding is the output and gets its treatment.
        Assert.Equal(GgmlType.Q6_K, plan["token_embd.weight"]);
    }

    [Fact]
    public void Q2_K_attn_v_depends_on_the_grouped_query_ratio()
    {
        Assert.Equal(GgmlType.Q3_K, Plan(Llama(4, 8, 4), tied: false, QuantFileType.Q2_K)["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, Plan(Llama(4, 8, 2), tied: false, QuantFileType.Q2_K)["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.Q3_K, Plan(Llama(4, 8, 2), tied: false, QuantFileType.Q2_K)["blk.0.ffn_down.weight"]);
    }

    [Fact]
    public void A_70B_llama_gives_q5_k_to_attn_v()
    {
        var plan = Plan(Llama(80, 64, 8), tied: false, QuantFileType.Q4_K_S);
        Assert.Equal(GgmlType.Q5_K, plan["blk.40.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["blk.40.attn_q.weight"]);
        Assert.Equal(GgmlType.Q4_K, Plan(Llama(80, 8, 8), tied: false, QuantFileType.Q4_K_S)["blk.40.attn_v.weight"]);
    }

    [Fact]
    public void Q4_0_with_an_imatrix_guards_the_first_eighth_of_ffn_down_with_q4_1()
    {
        var model = Llama(16, 8, 8);
        var with = Plan(model, tied: false, QuantFileType.Q4_0, hasImportance: true);
        var without = Plan(model, tied: false, QuantFileType.Q4_0);
        Assert.Equal(GgmlType.Q4_1, with["blk.1.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q4_0, with["blk.2.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q4_0, without["blk.1.ffn_down.weight"]);
    }

    [Fact]
    public void Rows_that_do_not_fit_fall_back_as_llama_cpp_does()
    {
        var info = new QuantModelInfo("llama", 1, 4, 4, 0);
        GgufTensorInfo T(string name, long cols) => new(name, GgmlType.F32, [cols, 64], 0);
        var tensors = new List<GgufTensorInfo>
        {
            T("blk.0.attn_q.weight", 96), T("blk.0.ffn_down.weight", 100), T("blk.0.ffn_up.weight", 64), T("output.weight", 96),
        };
        var q2 = QuantMix.Plan(info, tensors, QuantFileType.Q2_K).ToDictionary(p => p.Tensor.Name, p => p.Choice);
        Assert.Equal(GgmlType.Q4_0, q2["blk.0.attn_q.weight"].Type);
        Assert.Equal(GgmlType.Q2_K, q2["blk.0.attn_q.weight"].Wanted);
        Assert.Equal(GgmlType.F16, q2["blk.0.ffn_down.weight"].Type);
        Assert.Equal(GgmlType.Q3_K, q2["blk.0.ffn_down.weight"].Wanted);
        Assert.Equal(GgmlType.Q8_0, q2["output.weight"].Type);
        Assert.Null(q2["output.weight"].Wanted);
        var q4 = QuantMix.Plan(info, tensors, QuantFileType.Q4_K_S).ToDictionary(p => p.Tensor.Name, p => p.Choice);
        Assert.Equal(GgmlType.Q5_0, q4["blk.0.attn_q.weight"].Type);
        var q5 = QuantMix.Plan(info, tensors, QuantFileType.Q5_K_S).ToDictionary(p => p.Tensor.Name, p => p.Choice);
        Assert.Equal(GgmlType.Q5_1, q5["blk.0.ffn_up.weight"].Type);
        var q6 = QuantMix.Plan(info, tensors, QuantFileType.Q6_K).ToDictionary(p => p.Tensor.Name, p => p.Choice);
        Assert.Equal(GgmlType.Q8_0, q6["blk.0.ffn_up.weight"].Type);
        Assert.True(q6["blk.0.ffn_up.weight"].FellBack);
    }

    [Fact]
    public void A_32_block_type_that_does_not_fit_has_no_fallback_and_is_refused_with_a_remedy()
    {
        var info = new QuantModelInfo("llama", 2, 4, 4, 0);
        var tensors = new List<GgufTensorInfo> { new("blk.1.ffn_down.weight", GgmlType.F32, [172, 64], 0) };
        var e = Assert.Throws<InvalidOperationException>(() => QuantMix.Plan(info, tensors, QuantFileType.Q8_0));
        Assert.Contains("172", e.Message, StringComparison.Ordinal);
        Assert.Contains("--keep 'blk.*.ffn_down.weight=f16'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Overrides_win_over_the_mix_and_still_fall_back()
    {
        var info = new QuantModelInfo("llama", 2, 4, 4, 0);
        var tensors = new List<GgufTensorInfo>
        {
            new("blk.0.attn_v.weight", GgmlType.F32, [256, 64], 0),
            new("blk.1.attn_v.weight", GgmlType.F32, [96, 64], 0),
            new("blk.0.attn_norm.weight", GgmlType.F32, [256], 0),
        };
        TensorTypeOverride[] overrides = [TensorTypeOverride.Parse("blk.*.attn_v.weight=q2_k"), TensorTypeOverride.Parse("*norm*=q8_0")];
        var plan = QuantMix.Plan(info, tensors, QuantFileType.Q4_K_M, overrides: overrides).ToDictionary(p => p.Tensor.Name, p => p.Choice);
        Assert.Equal(GgmlType.Q2_K, plan["blk.0.attn_v.weight"].Type);
        Assert.Same(overrides[0], plan["blk.0.attn_v.weight"].Override);
        Assert.Equal(GgmlType.Q4_0, plan["blk.1.attn_v.weight"].Type);
        Assert.Equal(GgmlType.Q2_K, plan["blk.1.attn_v.weight"].Wanted);
        Assert.Equal(GgmlType.F32, plan["blk.0.attn_norm.weight"].Type);
        Assert.False(plan["blk.0.attn_norm.weight"].Quantizable);
    }

    [Fact]
    public void Float_file_types_convert_every_matrix_and_ignore_mixes_and_overrides()
    {
        var plan = Plan(Llama(4, 8, 2), tied: false, QuantFileType.F16, overrides: [TensorTypeOverride.Parse("*=q8_0")]);
        Assert.Equal(GgmlType.F16, plan["output.weight"]);
        Assert.Equal(GgmlType.F16, plan["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.F32, plan["blk.0.ffn_norm.weight"]);
    }

    [Fact]
    public void Pure_gives_every_matrix_the_default_type()
    {
        var plan = Plan(Llama(8, 8, 2), tied: false, QuantFileType.Q4_K_M, pure: true);
        Assert.Equal(GgmlType.Q4_K, plan["output.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["blk.0.ffn_down.weight"]);
    }

    private static Dictionary<string, GgmlType> Plan(QuantModelInfo info, bool tied, QuantFileType fileType, bool hasImportance = false,
        IReadOnlyList<TensorTypeOverride>? overrides = null, bool pure = false)
    {
        var tensors = new List<GgufTensorInfo>();
        void Add(string name, params long[] shape) => tensors.Add(new GgufTensorInfo(name, GgmlType.F32, shape, 0));
        Add("token_embd.weight", 256, 512);
        Add("output_norm.weight", 256);
        if (!tied)
        {
            Add("output.weight", 256, 512);
        }
        for (int l = 0; l < info.LayerCount; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", 256);
            Add(p + "attn_q.weight", 256, 256);
            Add(p + "attn_k.weight", 256, 256 / info.GroupSize);
            Add(p + "attn_v.weight", 256, 256 / info.GroupSize);
            Add(p + "attn_output.weight", 256, 256);
            Add(p + "ffn_norm.weight", 256);
            Add(p + "ffn_gate.weight", 256, 512);
            Add(p + "ffn_up.weight", 256, 512);
            Add(p + "ffn_down.weight", 512, 256);
        }
        return QuantMix.Plan(info, tensors, fileType, hasImportance, overrides, pure).ToDictionary(p => p.Tensor.Name, p => p.Choice.Type);
    }

    private static QuantModelInfo Llama(int layers, int heads, int kvHeads) => new("llama", layers, heads, kvHeads, 0);
}
