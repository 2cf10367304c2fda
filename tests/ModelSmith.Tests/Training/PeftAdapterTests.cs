using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

public class PeftAdapterTests
{
    private static LoraParameters RandomAdapter(ModelConfig config, LoraOptions options, ulong seed)
    {
        var lora = new LoraParameters(new LoraLayout(new ParameterLayout(config), options));
        new TrainingRandom(seed).FillUniform(lora.Values, 0.5f);
        return lora;
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    [InlineData("gpt2", false)]
    [InlineData("gpt2", true)]
    public void A_PEFT_adapter_round_trips_with_the_same_values_scale_and_merge(string name, bool rsLora)
    {
        ModelConfig config = ModelGradientTests.Named(name);
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 3, Alpha = 6, Dropout = 0.05f, RankStabilized = rsLora }, 2);
        using var dir = new TempDirectory();
        string adapterDir = dir.File("adapter");
        PeftAdapter.Write(lora, adapterDir, "org/base");
        Assert.Equal([PeftAdapter.ConfigFileName, PeftAdapter.WeightsFileName], Directory.GetFiles(adapterDir).Select(Path.GetFileName).Order());
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));

        LoraParameters back = PeftAdapter.Read(adapterDir, lora.Layout.Model);
        Assert.Equal(lora.Layout.Options, back.Layout.Options with { Modules = null });
        Assert.Equal(lora.Layout.Options.Scale, back.Layout.Options.Scale);
        Assert.True(lora.Layout.SameShape(back.Layout));
        Assert.True(lora.Values.SequenceEqual(back.Values));

        var a = new ModelParameters(lora.Layout.Model);
        var b = new ModelParameters(lora.Layout.Model);
        a.Initialize(5);
        b.CopyFrom(a);
        lora.MergeInto(a);
        back.MergeInto(b);
        Assert.True(a.Values.SequenceEqual(b.Values));
    }

    [Fact]
    public void Llama_keys_shapes_and_config_are_the_ones_PEFT_writes()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1f }, 3);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "meta-llama/Llama-3.2-1B");
        using (SafetensorsFile file = SafetensorsFile.Open(dir.File(PeftAdapter.WeightsFileName)))
        {
            Assert.Equal(2 * 7 * 2, file.Tensors.Count);
            Assert.Equal("pt", file.Metadata["format"]);
            string p = "base_model.model.model.layers.1.";
            (string Module, long In, long Out)[] expected =
            [
                ("self_attn.q_proj", 13, 24), ("self_attn.k_proj", 13, 12), ("self_attn.v_proj", 13, 12), ("self_attn.o_proj", 24, 13),
                ("mlp.gate_proj", 13, 17), ("mlp.up_proj", 13, 17), ("mlp.down_proj", 17, 13),
            ];
            foreach ((string module, long inDim, long outDim) in expected)
            {
                SafetensorsTensorInfo a = file.RequireTensor(p + module + ".lora_A.weight");
                SafetensorsTensorInfo b = file.RequireTensor(p + module + ".lora_B.weight");
                Assert.Equal(SafetensorsDtype.F32, a.Dtype);
                Assert.Equal([4L, inDim], a.Shape);
                Assert.Equal([outDim, 4L], b.Shape);
            }
            // Modules that RoPE does not touch keep their rows: B is our (out, r) tensor as it is.
            Assert.True(Floats(file, p + "mlp.down_proj.lora_B.weight").SequenceEqual(lora["blk.1.ffn_down.weight.lora_b"].ToArray()));
            Assert.True(Floats(file, p + "self_attn.q_proj.lora_A.weight").SequenceEqual(lora["blk.1.attn_q.weight.lora_a"].ToArray()));
        }
        using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(dir.File(PeftAdapter.ConfigFileName)));
        JsonElement c = json.RootElement;
        Assert.Equal("LORA", c.GetProperty("peft_type").GetString());
        Assert.Equal("CAUSAL_LM", c.GetProperty("task_type").GetString());
        Assert.Equal(4, c.GetProperty("r").GetInt32());
        Assert.Equal("8", c.GetProperty("lora_alpha").GetRawText());
        Assert.Equal("0.1", c.GetProperty("lora_dropout").GetRawText());
        Assert.False(c.GetProperty("use_rslora").GetBoolean());
        Assert.False(c.GetProperty("fan_in_fan_out").GetBoolean());
        Assert.Equal("none", c.GetProperty("bias").GetString());
        Assert.Equal("meta-llama/Llama-3.2-1B", c.GetProperty("base_model_name_or_path").GetString());
        Assert.Equal(JsonValueKind.Null, c.GetProperty("modules_to_save").ValueKind);
        Assert.True(c.GetProperty("inference_mode").GetBoolean());
        Assert.Equal(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"], c.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!));
        var keys = c.EnumerateObject().Select(e => e.Name).ToList();
        Assert.Equal(keys.Order(StringComparer.Ordinal), keys);
    }

    [Theory]
    [InlineData(new[] { "attn_qkv", "attn_output", "ffn_up", "ffn_down" }, new[] { "c_attn", "c_fc", "c_proj" })]
    [InlineData(new[] { "attn_qkv", "attn_output" }, new[] { "attn.c_proj", "c_attn" })]
    [InlineData(new[] { "ffn_down" }, new[] { "mlp.c_proj" })]
    public void Gpt2_keys_follow_transformers_conv1d_modules_and_target_each_c_proj_unambiguously(string[] modules, string[] targets)
    {
        ModelConfig config = ModelGradientTests.SmallGpt2();
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 2, Alpha = 4, Modules = modules }, 4);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "gpt2");
        using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(dir.File(PeftAdapter.ConfigFileName)));
        Assert.True(json.RootElement.GetProperty("fan_in_fan_out").GetBoolean());
        Assert.Equal(targets, json.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!));
        using (SafetensorsFile file = SafetensorsFile.Open(dir.File(PeftAdapter.WeightsFileName)))
        {
            Assert.Equal(2 * modules.Length * 2, file.Tensors.Count);
            if (modules.Contains("attn_qkv"))
            {
                // c_attn's Conv1D weight is [15, 45]; PEFT still stores A as [r, in] and B as [out, r].
                Assert.Equal([2L, 15L], file.RequireTensor("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").Shape);
                Assert.Equal([45L, 2L], file.RequireTensor("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight").Shape);
            }
            if (modules.Contains("ffn_down"))
                Assert.Equal([15L, 2L], file.RequireTensor("base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight").Shape);
        }
        LoraParameters back = PeftAdapter.Read(dir.Path, lora.Layout.Model);
        Assert.Equal(modules, back.Layout.Options.Modules!);
        Assert.True(lora.Values.SequenceEqual(back.Values));
    }

    /// <summary>
    /// transformers applies RoPE to q_proj / k_proj outputs by rotating pairs (i, i + D/2) of each head
    /// ("rotate half"); ggml rotates pairs (2i, 2i + 1). The PEFT adapter's q and k, merged onto the transformers
    /// base weights and rotated the transformers way, must give the same attention scores as our merged GGUF
    /// weights rotated the ggml way, at every pair of positions.
    /// </summary>
    [Fact]
    public void Llama_q_and_k_adapters_give_the_same_rotated_attention_scores_in_transformers_order()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        var layout = new ParameterLayout(config);
        var model = new ModelParameters(layout);
        model.Initialize(11, std: 0.3f);
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 3, Alpha = 5, Modules = ["attn_q", "attn_k"] }, 12);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "base");

        int c = config.EmbeddingLength, d = config.HeadDim, half = d / 2, r = 3;
        float s = lora.Layout.Options.Scale;
        var merged = new ModelParameters(layout);
        merged.CopyFrom(model);
        lora.MergeInto(merged);
        using SafetensorsFile file = SafetensorsFile.Open(dir.File(PeftAdapter.WeightsFileName));
        double[] Hf(string module, string gguf, int heads)
        {
            // transformers' weight: row h·D + j·D/2 + i holds what the GGUF file has in row h·D + 2i + j.
            Span<float> w = model[$"blk.0.{gguf}.weight"];
            float[] a = Floats(file, $"base_model.model.model.layers.0.self_attn.{module}.lora_A.weight");
            float[] b = Floats(file, $"base_model.model.model.layers.0.self_attn.{module}.lora_B.weight");
            var result = new double[heads * d * c];
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < half; i++)
                    {
                        int hfRow = h * d + j * half + i, ggufRow = h * d + 2 * i + j;
                        for (int col = 0; col < c; col++)
                        {
                            double delta = 0;
                            for (int k = 0; k < r; k++) delta += (double)b[hfRow * r + k] * a[k * c + col];
                            result[hfRow * c + col] = w[ggufRow * c + col] + s * delta;
                        }
                    }
            return result;
        }
        double[] qHf = Hf("q_proj", "attn_q", config.HeadCount), kHf = Hf("k_proj", "attn_k", config.KvHeadCount);
        double[] qGguf = ToDouble(merged["blk.0.attn_q.weight"]), kGguf = ToDouble(merged["blk.0.attn_k.weight"]);

        var rng = new Random(3);
        var x = new double[c];
        var y = new double[c];
        for (int i = 0; i < c; i++) (x[i], y[i]) = (rng.NextDouble() * 2 - 1, rng.NextDouble() * 2 - 1);
        foreach ((int pq, int pk) in new[] { (0, 0), (3, 1), (7, 2), (5, 5) })
        {
            double[] q1 = Rope(Project(qGguf, x, c), d, pq, interleaved: true), k1 = Rope(Project(kGguf, y, c), d, pk, interleaved: true);
            double[] q2 = Rope(Project(qHf, x, c), d, pq, interleaved: false), k2 = Rope(Project(kHf, y, c), d, pk, interleaved: false);
            for (int h = 0; h < config.HeadCount; h++)
            {
                int g = h / config.GroupSize;
                double s1 = 0, s2 = 0;
                for (int e = 0; e < d; e++)
                {
                    s1 += q1[h * d + e] * k1[g * d + e];
                    s2 += q2[h * d + e] * k2[g * d + e];
                }
                Assert.Equal(s1, s2, 1e-5);
            }
        }
        // The adapter matters: without it the scores differ.
        Assert.NotEqual(ToDouble(model["blk.0.attn_q.weight"]), qGguf);
    }

    [Fact]
    public void Writing_into_an_existing_folder_replaces_the_adapter_and_keeps_other_files()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("README.md"), "model card");
        PeftAdapter.Write(RandomAdapter(config, new LoraOptions { Rank = 2 }, 1), dir.Path, "base");
        LoraParameters second = RandomAdapter(config, new LoraOptions { Rank = 5, Alpha = 3, Modules = ["attn_v"] }, 2);
        PeftAdapter.Write(second, dir.Path, "base");
        Assert.Equal(["README.md", PeftAdapter.ConfigFileName, PeftAdapter.WeightsFileName], Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        LoraParameters back = PeftAdapter.Read(dir.Path, second.Layout.Model);
        Assert.Equal(5, back.Layout.Options.Rank);
        Assert.True(second.Values.SequenceEqual(back.Values));
    }

    public static TheoryData<string, string, string> BadConfigs => new()
    {
        { "\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\"", "'peft_type' is 'IA3'" },
        { "\"r\": 3", "\"r\": 0", "field 'r'" },
        { "\"r\": 3", "\"r\": 4", "has shape [3, 13]; with r = 4 this model needs [4, 13]" },
        { "\"lora_alpha\": 6", "\"lora_alpha\": -1", "'lora_alpha' is -1" },
        { "\"bias\": \"none\"", "\"bias\": \"all\"", "'bias' is 'all'" },
        { "\"use_dora\": false", "\"use_dora\": true", "DoRA" },
        { "\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]", "'modules_to_save'" },
        { "\"layers_to_transform\": null", "\"layers_to_transform\": [0]", "subset of layers" },
        { "\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 2}", "per-module ranks" },
        { "\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true", "Conv1D" },
        { "\"use_rslora\": false", "\"use_rslora\": 1", "'use_rslora' must be true or false" },
        { "\"q_proj\"", "\"qq_proj\"", "not the lora_A or lora_B of a block projection that adapter_config.json targets" },
        { "\"use_dora\": false", "\"use_dora\": false, \"target_parameters\": [\"experts.gate_up_proj\"]", "'target_parameters'" },
        { "\"use_dora\": false", "\"use_dora\": false, \"exclude_modules\": [\"layers.1.self_attn.v_proj\"]", "in some layers but not in layer 1" },
        { "\"v_proj\"", "\"v_proj\", \"o_proj\"", "self_attn.o_proj.lora_A.weight' is missing" },
        { "\"r\": 3,", "\"r\": 3", "not valid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void A_bad_config_is_refused_with_the_file_and_the_field(string find, string replace, string message)
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 3, Alpha = 6, Modules = ["attn_q", "attn_v"] }, 2);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "base");
        string path = dir.File(PeftAdapter.ConfigFileName);
        string text = File.ReadAllText(path);
        Assert.Contains(find, text, StringComparison.Ordinal);
        File.WriteAllText(path, text.Replace(find, replace, StringComparison.Ordinal));
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Read(dir.Path, lora.Layout.Model));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.Contains(dir.Path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Exclude_modules_removes_layers_from_the_targets()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 2, Alpha = 4, Modules = ["attn_q"] }, 9);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "base");
        string path = dir.File(PeftAdapter.ConfigFileName);
        string text = File.ReadAllText(path);
        File.WriteAllText(path, text.Replace("\"q_proj\"", "\"q_proj\", \"down_proj\"", StringComparison.Ordinal)
            .Replace("\"use_dora\": false", "\"use_dora\": false, \"exclude_modules\": \"model\\\\.layers\\\\.\\\\d\\\\.mlp\\\\.down_proj\"", StringComparison.Ordinal));
        LoraParameters back = PeftAdapter.Read(dir.Path, lora.Layout.Model);
        Assert.Equal(["attn_q"], back.Layout.Options.Modules!);
        Assert.True(lora.Values.SequenceEqual(back.Values));
    }

    [Fact]
    public void Missing_extra_misshapen_and_integer_tensors_are_refused_by_key()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 2, Modules = ["attn_v"] }, 2);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "base");
        string weights = dir.File(PeftAdapter.WeightsFileName);
        string key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";

        void Rewrite(Func<SafetensorsTensorInfo, SafetensorsFile, SafetensorsWriter, bool> change)
        {
            var writer = new SafetensorsWriter();
            using (SafetensorsFile file = SafetensorsFile.Open(weights))
            {
                foreach (SafetensorsTensorInfo t in file.Tensors)
                    if (!change(t, file, writer)) writer.AddTensor(t.Name, t.Dtype, t.Shape, file.GetTensorData(t).ToArray());
            }
            writer.Write(weights);
        }
        string Error() => Assert.Throws<ModelFormatException>(() => PeftAdapter.Read(dir.Path, lora.Layout.Model)).Message;

        Rewrite((t, _, _) => t.Name == key);
        Assert.Contains($"tensor '{key}' is missing", Error(), StringComparison.Ordinal);
        PeftAdapter.Write(lora, dir.Path, "base");
        Rewrite((t, _, w) => { if (t.Name == key) w.AddTensor("base_model.model.lm_head.lora_A.weight", [2L, 13L], new float[26]); return false; });
        Assert.Contains("'base_model.model.lm_head.lora_A.weight' is not the lora_A or lora_B", Error(), StringComparison.Ordinal);
        PeftAdapter.Write(lora, dir.Path, "base");
        Rewrite((t, _, w) => { if (t.Name != key) return false; w.AddTensor(key, [2L, 12L], new float[24]); return true; });
        Assert.Contains($"tensor '{key}' has shape [2, 12]", Error(), StringComparison.Ordinal);
        PeftAdapter.Write(lora, dir.Path, "base");
        Rewrite((t, _, w) => { if (t.Name != key) return false; w.AddTensor(key, SafetensorsDtype.I32, [12L, 2L], new byte[96]); return true; });
        Assert.Contains($"tensor '{key}' is I32", Error(), StringComparison.Ordinal);

        File.Delete(weights);
        Assert.Throws<FileNotFoundException>(() => PeftAdapter.Read(dir.Path, lora.Layout.Model));
        Assert.Throws<DirectoryNotFoundException>(() => PeftAdapter.Read(dir.File("nowhere"), lora.Layout.Model));
    }

    [Fact]
    public void Half_precision_tensors_a_regex_target_and_all_linear_are_read()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        LoraParameters lora = RandomAdapter(config, new LoraOptions { Rank = 2, Alpha = 4, Modules = ["attn_q", "ffn_up"] }, 6);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.Path, "base");
        string path = dir.File(PeftAdapter.ConfigFileName);
        string text = File.ReadAllText(path);
        int start = text.IndexOf("\"target_modules\"", StringComparison.Ordinal), end = text.IndexOf(']', start);
        File.WriteAllText(path, text[..start] + "\"target_modules\": \"model\\\\.layers\\\\.\\\\d+\\\\.(self_attn\\\\.q_proj|mlp\\\\.up_proj)\"" + text[(end + 1)..]);
        Assert.True(lora.Values.SequenceEqual(PeftAdapter.Read(dir.Path, lora.Layout.Model).Values));

        LoraParameters all = RandomAdapter(config, new LoraOptions { Rank = 2, Alpha = 4 }, 7);
        PeftAdapter.Write(all, dir.Path, "base");
        text = File.ReadAllText(path);
        start = text.IndexOf("\"target_modules\"", StringComparison.Ordinal);
        end = text.IndexOf(']', start);
        File.WriteAllText(path, text[..start] + "\"target_modules\": \"all-linear\"" + text[(end + 1)..]);
        var writer = new SafetensorsWriter();
        using (SafetensorsFile file = SafetensorsFile.Open(dir.File(PeftAdapter.WeightsFileName)))
        {
            foreach (SafetensorsTensorInfo t in file.Tensors)
            {
                float[] v = Floats(file, t.Name);
                var bf16 = new byte[v.Length * 2];
                for (int i = 0; i < v.Length; i++) BitConverter.TryWriteBytes(bf16.AsSpan(2 * i), (ushort)(BitConverter.SingleToUInt32Bits(v[i]) >> 16));
                writer.AddTensor(t.Name, SafetensorsDtype.BF16, t.Shape, bf16);
            }
        }
        writer.Write(dir.File(PeftAdapter.WeightsFileName));
        LoraParameters back = PeftAdapter.Read(dir.Path, all.Layout.Model);
        for (int i = 0; i < all.Values.Length; i++) Assert.Equal(all.Values[i], back.Values[i], 0.5f / 128);
    }

    internal static float[] Floats(SafetensorsFile file, string name)
    {
        SafetensorsTensorInfo t = file.RequireTensor(name);
        Assert.Equal(SafetensorsDtype.F32, t.Dtype);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(file.GetTensorData(t).Span).ToArray();
    }

    private static double[] ToDouble(ReadOnlySpan<float> v)
    {
        var d = new double[v.Length];
        for (int i = 0; i < v.Length; i++) d[i] = v[i];
        return d;
    }

    private static double[] Project(double[] w, double[] x, int c) // w: (rows, c)
    {
        var y = new double[w.Length / c];
        for (int o = 0; o < y.Length; o++)
            for (int i = 0; i < c; i++) y[o] += w[o * c + i] * x[i];
        return y;
    }

    /// <summary>RoPE at position <paramref name="p"/> on every head of D: pairs (2i, 2i+1) (ggml) or (i, i+D/2) (transformers), angle p·10000^(−2i/D).</summary>
    private static double[] Rope(double[] v, int d, int p, bool interleaved)
    {
        var result = (double[])v.Clone();
        for (int h = 0; h < v.Length / d; h++)
            for (int i = 0; i < d / 2; i++)
            {
                double theta = p * Math.Pow(10000, -2.0 * i / d);
                int e0 = h * d + (interleaved ? 2 * i : i), e1 = h * d + (interleaved ? 2 * i + 1 : i + d / 2);
                (double cos, double sin) = (Math.Cos(theta), Math.Sin(theta));
                result[e0] = v[e0] * cos - v[e1] * sin;
                result[e1] = v[e0] * sin + v[e1] * cos;
            }
        return result;
    }
}
