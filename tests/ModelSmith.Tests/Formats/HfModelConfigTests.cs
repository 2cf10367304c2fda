using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Tests.Formats;

public sealed class HfModelConfigTests : IDisposable
{
    // The shape of TinyLlama-1.1B's config.json.
    private const string Llama = """
        {
          "architectures": ["LlamaForCausalLM"],
          "bos_token_id": 1,
          "eos_token_id": 2,
          "hidden_act": "silu",
          "hidden_size": 2048,
          "initializer_range": 0.02,
          "intermediate_size": 5632,
          "max_position_embeddings": 2048,
          "model_type": "llama",
          "num_attention_heads": 32,
          "num_hidden_layers": 22,
          "num_key_value_heads": 4,
          "pretraining_tp": 1,
          "rms_norm_eps": 1e-05,
          "rope_scaling": null,
          "rope_theta": 10000.0,
          "tie_word_embeddings": false,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.35.0",
          "use_cache": true,
          "vocab_size": 32000
        }
        """;

    // The shape of openai-community/gpt2's config.json.
    private const string Gpt2 = """
        {
          "activation_function": "gelu_new",
          "architectures": ["GPT2LMHeadModel"],
          "attn_pdrop": 0.1,
          "bos_token_id": 50256,
          "embd_pdrop": 0.1,
          "eos_token_id": 50256,
          "initializer_range": 0.02,
          "layer_norm_epsilon": 1e-05,
          "model_type": "gpt2",
          "n_ctx": 1024,
          "n_embd": 768,
          "n_head": 12,
          "n_inner": null,
          "n_layer": 12,
          "n_positions": 1024,
          "resid_pdrop": 0.1,
          "summary_activation": null,
          "summary_first_dropout": 0.1,
          "summary_proj_to_labels": true,
          "summary_type": "cls_index",
          "summary_use_proj": true,
          "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
          "vocab_size": 50257
        }
        """;

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Write(string json, string name = "config.json")
    {
        string path = _temp.File(name);
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void A_llama_config_reads_every_field()
    {
        HfModelConfig c = HfModelConfig.Load(Write(Llama));
        Assert.Equal(new HfModelConfig("llama", 2048, 22, 32, 4, 5632, 1e-5, 10000.0, 32000, 2048, false), c);
    }

    [Fact]
    public void A_gpt2_config_maps_its_own_names_and_defaults()
    {
        HfModelConfig c = HfModelConfig.Load(Write(Gpt2));
        Assert.Equal(new HfModelConfig("gpt2", 768, 12, 12, 12, 3072, 1e-5, null, 50257, 1024, true), c);
    }

    [Fact]
    public void A_model_folder_is_read_through_its_config_json()
    {
        Write(Llama);
        Assert.Equal(22, HfModelConfig.Load(_temp.Path).NumHiddenLayers);
    }

    [Fact]
    public void Optional_fields_take_the_transformers_defaults_and_rope_parameters_is_read()
    {
        string json = Llama.Replace("\"num_key_value_heads\": 4,", "").Replace("\"rope_theta\": 10000.0,", "")
            .Replace("\"tie_word_embeddings\": false,", "");
        HfModelConfig c = HfModelConfig.Parse(Encoding.UTF8.GetBytes(json), "config.json");
        Assert.Equal((32, 10000.0, false), (c.NumKeyValueHeads, c.RopeTheta!.Value, c.TieWordEmbeddings));

        string v5 = json.Replace("\"rms_norm_eps\"", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}, \"rms_norm_eps\"");
        Assert.Equal(500000.0, HfModelConfig.Parse(Encoding.UTF8.GetBytes(v5), "config.json").RopeTheta);
    }

    [Fact]
    public void A_utf8_byte_order_mark_is_skipped()
    {
        byte[] bytes = [.. Encoding.UTF8.Preamble, .. Encoding.UTF8.GetBytes(Gpt2)];
        Assert.Equal("gpt2", HfModelConfig.Parse(bytes, "config.json").ModelType);
    }

    [Theory]
    [InlineData("\"hidden_size\": 2048,", "", "'hidden_size' (or 'n_embd') is missing")]
    [InlineData("\"model_type\": \"llama\",", "", "'model_type' is missing")]
    [InlineData("\"vocab_size\": 32000", "\"vocab_size\": null", "'vocab_size' is missing or null")]
    [InlineData("\"rms_norm_eps\": 1e-05,", "", "'rms_norm_eps' (or 'layer_norm_epsilon', 'layer_norm_eps') is missing")]
    [InlineData("\"intermediate_size\": 5632,", "", "'intermediate_size' (or 'n_inner') is missing")]
    [InlineData("\"max_position_embeddings\": 2048,", "", "'max_position_embeddings' (or 'n_positions', 'n_ctx') is missing")]
    public void A_missing_field_is_named(string remove, string replacement, string problem)
    {
        string path = Write(Llama.Replace(remove, replacement));
        var e = Assert.Throws<ModelFormatException>(() => HfModelConfig.Load(path));
        Assert.Equal(path, e.FilePath);
        Assert.Contains(problem, e.Problem);
    }

    [Theory]
    [InlineData("\"hidden_size\": 2048", "\"hidden_size\": \"2048\"", "'hidden_size' is the string \"2048\"; expected a positive whole number")]
    [InlineData("\"hidden_size\": 2048", "\"hidden_size\": 2048.5", "'hidden_size' is 2048.5; expected a positive whole number")]
    [InlineData("\"hidden_size\": 2048", "\"hidden_size\": 0", "'hidden_size' is 0; expected a positive whole number")]
    [InlineData("\"hidden_size\": 2048", "\"hidden_size\": -1", "'hidden_size' is -1")]
    [InlineData("\"hidden_size\": 2048", "\"hidden_size\": 4294967296", "'hidden_size' is 4294967296")]
    [InlineData("\"hidden_size\": 2048", "\"hidden_size\": [2048]", "'hidden_size' is an array")]
    [InlineData("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"1e-05\"", "'rms_norm_eps' is the string \"1e-05\"; expected a positive number")]
    [InlineData("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "'rms_norm_eps' is 0; expected a positive number")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_theta\": true", "'rope_theta' is a boolean")]
    [InlineData("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": \"false\"", "'tie_word_embeddings' is the string \"false\"; expected true or false")]
    [InlineData("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", "'tie_word_embeddings' is the number 0")]
    [InlineData("\"model_type\": \"llama\"", "\"model_type\": 7", "'model_type' is the number 7; expected a non-empty string")]
    [InlineData("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5", "not a multiple of num_key_value_heads 5")]
    public void A_wrongly_typed_field_is_refused_at_its_value(string find, string replace, string problem)
    {
        string json = Llama.Replace(find, replace);
        string path = Write(json);
        var e = Assert.Throws<ModelFormatException>(() => HfModelConfig.Load(path));
        Assert.Equal(path, e.FilePath);
        Assert.Contains(problem, e.Problem);
        int valueAt = json.IndexOf(replace, StringComparison.Ordinal) + replace.IndexOf(':') + 2;
        Assert.Equal(valueAt, e.Offset);
    }

    [Theory]
    [InlineData("", "not valid JSON")]
    [InlineData("[1, 2]", "must be a JSON object")]
    [InlineData("{\"model_type\": \"llama\",}", "not valid JSON")]
    [InlineData("{\"model_type\": \"llama\"", "not valid JSON")]
    [InlineData("{\"model_type\": \"\\udc00\"}", "not valid Unicode")]
    public void Text_that_is_not_a_json_object_is_refused(string json, string problem)
    {
        var e = Assert.Throws<ModelFormatException>(() => HfModelConfig.Load(Write(json)));
        Assert.Contains(problem, e.Problem);
        Assert.True(e.Offset >= 0 && e.Offset <= json.Length);
    }

    [Fact]
    public void A_missing_file_is_a_file_not_found_error_naming_it()
    {
        string path = _temp.File("nope.json");
        Assert.Contains(path, Assert.Throws<FileNotFoundException>(() => HfModelConfig.Load(path)).Message);
    }
}
