using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training.Data;

public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Chat =
    [
        new("system", "Be brief."),
        new("user", "Hi there"),
        new("assistant", " Hello! "),
        new("user", "2+2?"),
        new("assistant", "4"),
    ];

    // Expected texts are llama.cpp's llm_chat_apply_template output for each family.
    public static TheoryData<string, string> Renderings => new()
    {
        { "chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" },
        { "llama2", "[INST] Be brief.\nHi there [/INST] Hello! </s>[INST] 2+2? [/INST]4</s>" },
        { "llama2-sys", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s>[INST] 2+2? [/INST]4</s>" },
        { "llama2-sys-bos", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] 2+2? [/INST]4</s>" },
        { "llama2-sys-strip", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]Hello!</s>[INST] 2+2? [/INST]4</s>" },
        { "llama3", "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>" },
        { "zephyr", "<|system|>\nBe brief.<|endoftext|>\n<|user|>\nHi there<|endoftext|>\n<|assistant|>\n Hello! <|endoftext|>\n<|user|>\n2+2?<|endoftext|>\n<|assistant|>\n4<|endoftext|>\n" },
    };

    [Theory]
    [MemberData(nameof(Renderings))]
    public void Each_family_renders_as_llama_cpp_does(string name, string expected)
    {
        ChatTemplate template = ChatTemplate.Parse(name);
        Assert.Equal(name, template.Name);
        Assert.Equal(expected, template.Apply(Chat));
    }

    [Fact]
    public void The_assistant_prompt_opens_a_reply()
    {
        ChatMessage[] question = [new("user", "q")];
        Assert.Equal("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n", ChatTemplate.ChatML.Apply(question, addAssistantPrompt: true));
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", ChatTemplate.Parse("llama3").Apply(question, true), StringComparison.Ordinal);
        Assert.EndsWith("<|assistant|>\n", ChatTemplate.Parse("zephyr").Apply(question, true), StringComparison.Ordinal);
        Assert.Equal("[INST] q [/INST]", ChatTemplate.Parse("llama2").Apply(question, true));
    }

    [Fact]
    public void Assistant_content_and_its_end_marker_are_the_completion()
    {
        foreach (string name in (string[])["chatml", "llama2-sys", "llama3", "zephyr"])
        {
            IReadOnlyList<TextSegment> segments = ChatTemplate.Parse(name).Render(Chat);
            string completion = string.Concat(segments.Where(s => s.IsCompletion).Select(s => s.Text));
            string expected = name switch
            {
                "chatml" => " Hello! <|im_end|>4<|im_end|>",
                "llama2-sys" => " Hello! </s>4</s>",
                "llama3" => "Hello!<|eot_id|>4<|eot_id|>",
                _ => " Hello! <|endoftext|>4<|endoftext|>",
            };
            Assert.Equal(expected, completion);
            // message text is never markup; template text always is
            Assert.All(segments.Where(s => !s.IsMarkup), s => Assert.Contains(s.Text, (string[])["Be brief.", "Hi there", " Hello! ", "Hello!", "2+2?", "4"]));
        }
    }

    public static TheoryData<string, string> JinjaTemplates => new()
    {
        { ChatTemplate.ChatMLJinja, "chatml" },
        // Qwen2-style ChatML with a default system message
        { "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}", "chatml" },
        // Llama-3 instruct
        { "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}", "llama3" },
        // Llama-2 chat
        { "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}{% endfor %}", "llama2-sys-strip" },
        { "{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}", "llama2" },
        // names <|user|> and <|endoftext|> but not <|assistant|> (with it, llama.cpp would say falcon3 or glmedge)
        { "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' }}{% else %}{{ '<|' + message['role'] + '|>\\n' }}{% endif %}{{ message['content'] + '<|endoftext|>\\n' }}{% endfor %}", "zephyr" },
    };

    [Theory]
    [MemberData(nameof(JinjaTemplates))]
    public void Jinja_templates_are_recognised_as_llama_cpp_recognises_them(string jinja, string family)
    {
        ChatTemplate template = ChatTemplate.Parse(jinja);
        Assert.Equal(family, template.Name);
        Assert.Equal(jinja, template.Source);
    }

    [Fact]
    public void The_default_is_chatml_with_its_jinja_source()
    {
        Assert.Equal("chatml", new TrainingDataOptions().ChatTemplate.Name);
        Assert.Same(ChatTemplate.ChatML, ChatTemplate.Parse(ChatTemplate.ChatMLJinja));
        Assert.Equal("tokenizer.chat_template", ChatTemplate.MetadataKey);
    }

    [Fact]
    public void Templates_of_other_families_are_refused_naming_the_family()
    {
        var gemma = Assert.Throws<NotSupportedException>(() => ChatTemplate.Parse("{{ '<start_of_turn>' + role + '\\n' }}"));
        Assert.Contains("'gemma'", gemma.Message, StringComparison.Ordinal);
        Assert.Contains("chatml, llama2", gemma.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<NotSupportedException>(() => ChatTemplate.Parse("{{ messages }}"));
        Assert.Contains("not one llama.cpp recognises", unknown.Message, StringComparison.Ordinal);
        // Zephyr's own Hugging Face template has <|assistant|> and </s>, which llama.cpp takes for falcon3.
        Assert.Contains("'falcon3'", Assert.Throws<NotSupportedException>(() =>
            ChatTemplate.Parse("{{ '<|user|>\\n' + content + '</s>' }}{{ '<|assistant|>' }}")).Message, StringComparison.Ordinal);
    }
}
