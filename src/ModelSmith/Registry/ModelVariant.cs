namespace ModelSmith.Registry;

/// <summary>What a variant is in the base → fine-tuned → quantized lineage.</summary>
public enum VariantKind
{
    /// <summary>Pretrained on broad text; the starting point of a lineage.</summary>
    Base,
    /// <summary>A model trained further on domain or task data (full, LoRA or QLoRA).</summary>
    FineTuned,
    /// <summary>A model whose weights are stored in fewer bits.</summary>
    Quantized,
}

/// <summary>Whether a registered variant's file is still where the registry says, with the size it had.</summary>
public enum VariantStatus
{
    /// <summary>The file exists with the registered size.</summary>
    Present,
    /// <summary>The file is gone (deleted or moved); results stay in the registry.</summary>
    Missing,
    /// <summary>The file exists but its size differs from the registered one: it was overwritten.</summary>
    Changed,
}

/// <summary>Names and parses <see cref="VariantKind"/> as the command line and the database spell it.</summary>
public static class VariantKinds
{
    /// <summary>"base", "fine-tuned" or "quantized".</summary>
    public static string Name(VariantKind kind) => kind switch
    {
        VariantKind.Base => "base",
        VariantKind.FineTuned => "fine-tuned",
        VariantKind.Quantized => "quantized",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown variant kind."),
    };

    /// <summary>Parses "base", "fine-tuned" (or "finetuned"), "quantized"; null when the text is none of them.</summary>
    public static VariantKind? Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "base" => VariantKind.Base,
        "fine-tuned" or "finetuned" or "fine_tuned" => VariantKind.FineTuned,
        "quantized" => VariantKind.Quantized,
        _ => null,
    };
}

/// <summary>
/// A fingerprint of data a variant was made from or measured on: a name (usually the file name), the SHA-256
/// of the bytes, and how many tokens they gave (0 when not tokenized).
/// </summary>
public sealed record DataFingerprint(string Name, string Sha256, long Tokens)
{
    /// <summary>Fingerprints a file: its name and the SHA-256 of its bytes as stored (a .gz is hashed compressed).</summary>
    public static DataFingerprint OfFile(string path, long tokens = 0) =>
        new(System.IO.Path.GetFileName(path), FileHash.Sha256(path), tokens);
}

/// <summary>
/// A registered model variant. <see cref="Path"/> is absolute; <see cref="Status"/> is checked against the file
/// system when the variant is read.
/// </summary>
public sealed record ModelVariant
{
    /// <summary>Short stable id: the first 12 hex digits of the file's SHA-256.</summary>
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required VariantKind Kind { get; init; }
    /// <summary>Ids of the variants this one was made from (one for fine-tuned and quantized, several for merges).</summary>
    public required IReadOnlyList<string> Parents { get; init; }
    /// <summary>What made it from its parents ("quantize", "finetune", "merge", ...); null for an imported base.</summary>
    public string? Transformation { get; init; }
    /// <summary>The transformation's parameters as a JSON object ("{}" when none).</summary>
    public required string TransformParameters { get; init; }
    /// <summary>Fingerprints of the data the transformation used (training text, calibration text, ...).</summary>
    public required IReadOnlyList<DataFingerprint> Data { get; init; }
    public required string Path { get; init; }
    /// <summary>SHA-256 of the file, 64 lowercase hex digits.</summary>
    public required string Sha256 { get; init; }
    /// <summary>File size in bytes.</summary>
    public required long Size { get; init; }
    /// <summary>general.architecture of the GGUF ("llama", "gpt2"); null when the file is not GGUF.</summary>
    public string? Architecture { get; init; }
    /// <summary>Elements in all tensors of the file (0 when not GGUF).</summary>
    public long ParameterCount { get; init; }
    /// <summary>Storage type: the llama.cpp file type ("Q4_K_M", "F32") or the type holding most bytes.</summary>
    public string? TypeSummary { get; init; }
    public required DateTimeOffset Created { get; init; }
    public required VariantStatus Status { get; init; }

    /// <summary>"base", "fine-tuned" or "quantized".</summary>
    public string KindName => VariantKinds.Name(Kind);
}

/// <summary>What <see cref="Workspace.Register"/> needs to know about a new variant besides its file.</summary>
public sealed record ModelRegistration
{
    /// <summary>The model file.</summary>
    public required string Path { get; init; }
    public VariantKind Kind { get; init; } = VariantKind.Base;
    /// <summary>Display name; default the file name without extension.</summary>
    public string? Name { get; init; }
    /// <summary>Ids (or names, or paths of registered files) of the variants it was made from.</summary>
    public IReadOnlyList<string> Parents { get; init; } = [];
    public string? Transformation { get; init; }
    /// <summary>The transformation's parameters: a JSON object, or null for none.</summary>
    public string? TransformParameters { get; init; }
    public IReadOnlyList<DataFingerprint> Data { get; init; } = [];
    /// <summary>Copy the file into the workspace's models/ folder and register the copy.</summary>
    public bool Copy { get; init; }
}

/// <summary>A variant and the variants made from it, as <see cref="Workspace.Lineage"/> returns them.</summary>
public sealed record LineageNode(ModelVariant Variant, IReadOnlyList<LineageNode> Children);
