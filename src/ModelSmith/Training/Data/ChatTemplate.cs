using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Training.Data;

/// <summary>
/// Renders chat messages as a model was (or will be) trained to see them. This is not a Jinja interpreter: like
/// llama.cpp's llama_chat_apply_template, it recognises a template by telltale substrings (in llama.cpp's order, so
/// a template is taken for what llama.cpp would take it for) and renders that family by hand, giving exactly the
/// text llama.cpp gives. Families rendered: <c>chatml</c> (the default), <c>llama2</c> with its variants
/// <c>llama2-sys</c>, <c>llama2-sys-bos</c>, <c>llama2-sys-strip</c>, <c>llama3</c>, and <c>zephyr</c>. A template
/// that llama.cpp recognises as another family, or not at all, is refused with a clear error.
/// <para>
/// A template is given either as its llama.cpp name (<c>chatml</c>, <c>llama3</c> ...) or as the Jinja text of a
/// model's <c>tokenizer.chat_template</c>. <see cref="Source"/> keeps what was given, to store into the metadata of
/// a model trained with it; the default <see cref="ChatML"/> carries a standard ChatML Jinja template, which
/// llama.cpp and Hugging Face tools both understand.
/// </para>
/// <para>
/// For training, <see cref="Render"/> marks what the model must learn to produce: each assistant message's content
/// and the end-of-turn marker after it (<c>&lt;|im_end|&gt;</c>, <c>&lt;/s&gt;</c>, <c>&lt;|eot_id|&gt;</c>,
/// <c>&lt;|endoftext|&gt;</c>), so that it learns to stop.
/// </para>
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The GGUF metadata key of a model's chat template.</summary>
    public const string MetadataKey = "tokenizer.chat_template";

    /// <summary>ChatML as a Jinja template (the form Hugging Face tokenizer configs carry).</summary>
    public const string ChatMLJinja =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private enum Family { ChatML, Llama2, Llama3, Zephyr }

    private static readonly string[] Supported = ["chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "llama3", "zephyr"];

    private readonly Family _family;
    private readonly bool _systemMessage, _bosInsideHistory, _strip;

    private ChatTemplate(string name, string source)
    {
        Name = name;
        Source = source;
        (_family, _systemMessage, _bosInsideHistory, _strip) = name switch
        {
            "chatml" => (Family.ChatML, true, false, false),
            "llama2" => (Family.Llama2, false, false, false),
            "llama2-sys" => (Family.Llama2, true, false, false),
            "llama2-sys-bos" => (Family.Llama2, true, true, false),
            "llama2-sys-strip" => (Family.Llama2, true, false, true),
            "llama3" => (Family.Llama3, true, false, false),
            "zephyr" => (Family.Zephyr, true, false, false),
            _ => throw new ArgumentException($"unknown chat template family '{name}'.", nameof(name)),
        };
    }

    /// <summary>The documented default: <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c> per message.</summary>
    public static ChatTemplate ChatML { get; } = new("chatml", ChatMLJinja);

    /// <summary>llama.cpp's name for the family: chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, llama3 or zephyr.</summary>
    public string Name { get; }

    /// <summary>The template as given (a name or Jinja text), to store as <see cref="MetadataKey"/>.</summary>
    public string Source { get; }

    /// <summary>The template of a model file: its <see cref="MetadataKey"/>, or <see cref="ChatML"/> when it has none.</summary>
    public static ChatTemplate FromMetadata(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string? source = file.GetStringOrNull(MetadataKey);
        return source is null ? ChatML : Parse(source);
    }

    /// <summary>Recognises <paramref name="template"/> (a llama.cpp template name or Jinja text) as llama.cpp does.</summary>
    public static ChatTemplate Parse(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (Array.IndexOf(Supported, template) >= 0)
            return template == "chatml" ? ChatML : new ChatTemplate(template, template);
        string name = Detect(template);
        if (Array.IndexOf(Supported, name) < 0)
        {
            string what = name.Length == 0 ? "is not one llama.cpp recognises" : $"is llama.cpp's '{name}' family, which this library does not render";
            throw new NotSupportedException(
                $"chat template {Abbreviate(template)} {what}; supported: {string.Join(", ", Supported)}. Pass one of these names to use its format.");
        }
        return name == "chatml" && template == ChatMLJinja ? ChatML : new ChatTemplate(name, template);
    }

    /// <summary>
    /// The messages as text, split into template markup, prompt content and completion (see <see cref="TextSegment"/>).
    /// <paramref name="addAssistantPrompt"/> appends the header that opens an assistant reply (as add_generation_prompt;
    /// the llama2 family has none, as in llama.cpp). Concatenated, the segments are llama_chat_apply_template's text.
    /// </summary>
    public IReadOnlyList<TextSegment> Render(IReadOnlyList<ChatMessage> messages, bool addAssistantPrompt = false)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var segments = new List<TextSegment>(messages.Count * 3 + 1);
        switch (_family)
        {
            case Family.ChatML:
                foreach (ChatMessage m in messages)
                {
                    bool reply = IsAssistant(m);
                    Markup(segments, "<|im_start|>" + m.Role + "\n");
                    Content(segments, m.Content, reply);
                    Markup(segments, "<|im_end|>", reply);
                    Markup(segments, "\n");
                }
                if (addAssistantPrompt)
                    Markup(segments, "<|im_start|>assistant\n");
                break;
            case Family.Llama2:
                bool insideTurn = true; // the first "[INST] " is written before the loop, and no BOS
                Markup(segments, "[INST] ");
                foreach (ChatMessage m in messages)
                {
                    string content = _strip ? Trim(m.Content) : m.Content;
                    if (!insideTurn)
                    {
                        insideTurn = true;
                        Markup(segments, _bosInsideHistory ? "<s>[INST] " : "[INST] ");
                    }
                    if (m.Role == "system")
                    {
                        if (_systemMessage)
                        {
                            Markup(segments, "<<SYS>>\n");
                            Content(segments, content, false);
                            Markup(segments, "\n<</SYS>>\n\n");
                        }
                        else
                        {
                            Content(segments, content, false);
                            Markup(segments, "\n");
                        }
                    }
                    else if (m.Role == "user")
                    {
                        Content(segments, content, false);
                        Markup(segments, " [/INST]");
                    }
                    else
                    {
                        bool reply = IsAssistant(m);
                        Content(segments, content, reply);
                        Markup(segments, "</s>", reply);
                        insideTurn = false;
                    }
                }
                break;
            case Family.Llama3:
                foreach (ChatMessage m in messages)
                {
                    bool reply = IsAssistant(m);
                    Markup(segments, "<|start_header_id|>" + m.Role + "<|end_header_id|>\n\n");
                    Content(segments, Trim(m.Content), reply);
                    Markup(segments, "<|eot_id|>", reply);
                }
                if (addAssistantPrompt)
                    Markup(segments, "<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case Family.Zephyr:
                foreach (ChatMessage m in messages)
                {
                    bool reply = IsAssistant(m);
                    Markup(segments, "<|" + m.Role + "|>\n");
                    Content(segments, m.Content, reply);
                    Markup(segments, "<|endoftext|>", reply);
                    Markup(segments, "\n");
                }
                if (addAssistantPrompt)
                    Markup(segments, "<|assistant|>\n");
                break;
        }
        return segments;
    }

    /// <summary>The rendered text (llama_chat_apply_template's result for this family).</summary>
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addAssistantPrompt = false)
    {
        var text = new StringBuilder();
        foreach (TextSegment segment in Render(messages, addAssistantPrompt))
            text.Append(segment.Text);
        return text.ToString();
    }

    public override string ToString() => Name;

    private static bool IsAssistant(ChatMessage m) => m.Role == "assistant";

    private static void Markup(List<TextSegment> segments, string text, bool completion = false) =>
        segments.Add(new TextSegment(text, completion, IsMarkup: true));

    private static void Content(List<TextSegment> segments, string text, bool completion)
    {
        if (text.Length > 0)
            segments.Add(new TextSegment(text, completion, IsMarkup: false));
    }

    /// <summary>llama.cpp's trim: C isspace characters (space, \t, \n, \v, \f, \r) off both ends.</summary>
    internal static string Trim(string text)
    {
        int start = 0, end = text.Length;
        while (start < end && IsCSpace(text[start]))
            start++;
        while (end > start && IsCSpace(text[end - 1]))
            end--;
        return text[start..end];
    }

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';

    /// <summary>
    /// llm_chat_detect_template's decision list up to the last family rendered here: the family name llama.cpp gives
    /// <paramref name="t"/>, or "" when it recognises none of these.
    /// </summary>
    private static string Detect(string t)
    {
        bool has(string s) => t.Contains(s, StringComparison.Ordinal);
        if (has("<|im_start|>"))
            return has("<|im_sep|>") ? "phi4" : has("<end_of_utterance>") ? "smolvlm" : "chatml";
        if (t.StartsWith("mistral", StringComparison.Ordinal) || has("[INST]"))
        {
            if (has("[SYSTEM_PROMPT]"))
                return "mistral-v7";
            if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]"))
                return has(" [INST]") ? "mistral-v1" : has("\"[INST]\"") ? "mistral-v3-tekken" : "mistral-v3";
            if (has("content.strip()"))
                return "llama2-sys-strip";
            if (has("bos_token + '[INST]"))
                return "llama2-sys-bos";
            return has("<<SYS>>") ? "llama2-sys" : "llama2";
        }
        if (has("<|assistant|>") && has("<|end|>"))
            return "phi3";
        if (has("[gMASK]<sop>"))
            return "chatglm4";
        if (has("<|assistant|>") && has("<|user|>"))
            return has("</s>") ? "falcon3" : "glmedge";
        if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>"))
            return "glmedge";
        if (has("<|user|>") && has("<|endoftext|>"))
            return "zephyr";
        if (has("bos_token + message['role']"))
            return "monarch";
        if (has("<start_of_turn>"))
            return "gemma";
        if (has("'\\n\\nAssistant: ' + eos_token"))
            return "orion";
        if (has("GPT4 Correct "))
            return "openchat";
        if (has("USER: ") && has("ASSISTANT: "))
            return has("SYSTEM: ") ? "vicuna-orca" : "vicuna";
        if (has("### Instruction:") && has("<|EOT|>"))
            return "deepseek";
        if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>"))
            return "command-r";
        if (has("<|start_header_id|>") && has("<|end_header_id|>"))
            return "llama3";
        return "";
    }

    private static string Abbreviate(string template)
    {
        string flat = template.ReplaceLineEndings(" ");
        return flat.Length <= 60 ? $"'{flat}'" : $"'{flat[..57]}...'";
    }
}
