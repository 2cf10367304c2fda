using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>Compares a GGUF file we wrote with the one llama.cpp wrote from the same input.</summary>
internal static class MixesFileComparison
{
    /// <summary>
    /// Tensor order, names, types, shapes and bytes, and every metadata key llama.cpp wrote (value and order).
    /// Returns the differences (empty when none) and a one-line summary of the types and whether the two
    /// files are byte for byte the same.
    /// </summary>
    public static (string Report, string Summary) Compare(string oursPath, string theirsPath, IReadOnlySet<string>? ignoredKeys = null)
    {
        using GgufFile ours = GgufFile.Open(oursPath);
        using GgufFile theirs = GgufFile.Open(theirsPath);
        var report = new StringBuilder();
        if (!theirs.Tensors.Select(t => t.Name).SequenceEqual(ours.Tensors.Select(t => t.Name)))
        {
            report.AppendLine($"  tensor order: ours {string.Join(",", ours.Tensors.Select(t => t.Name))}; llama.cpp {string.Join(",", theirs.Tensors.Select(t => t.Name))}");
            return (report.ToString(), "");
        }
        var types = new SortedDictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < theirs.Tensors.Count; i++)
        {
            GgufTensorInfo a = ours.Tensors[i];
            GgufTensorInfo b = theirs.Tensors[i];
            types[b.Type.ToString()] = types.GetValueOrDefault(b.Type.ToString()) + 1;
            if (a.Type != b.Type || !a.Shape.SequenceEqual(b.Shape))
            {
                report.AppendLine($"  {a.Name}: ours {a.Type} {a.ShapeText}, llama.cpp {b.Type} {b.ShapeText}");
                continue;
            }
            if (!ours.GetTensorData(a).Span.SequenceEqual(theirs.GetTensorData(b).Span))
            {
                report.AppendLine($"  {a.Name} ({a.Type}): bytes differ");
            }
        }
        foreach (string key in theirs.MetadataKeys)
        {
            if (ignoredKeys?.Contains(key) == true)
            {
                continue;
            }
            if (!ours.Metadata.TryGetValue(key, out GgufValue? value) || !value.Equals(theirs.Metadata[key]))
            {
                report.AppendLine($"  metadata {key}: ours {(value is null ? "missing" : value.ToString())}, llama.cpp {theirs.Metadata[key]}");
            }
        }
        if (ignoredKeys is null && !theirs.MetadataKeys.SequenceEqual(ours.MetadataKeys))
        {
            report.AppendLine($"  metadata key order differs: ours {string.Join(",", ours.MetadataKeys)}; llama.cpp {string.Join(",", theirs.MetadataKeys)}");
        }
        bool sameFile = new FileInfo(oursPath).Length == new FileInfo(theirsPath).Length
            && File.ReadAllBytes(oursPath).AsSpan().SequenceEqual(File.ReadAllBytes(theirsPath));
        string summary = $"  types {string.Join(", ", types.Select(kv => $"{kv.Key}×{kv.Value}"))}; whole file byte-identical: {sameFile}";
        return (report.ToString(), summary);
    }
}
