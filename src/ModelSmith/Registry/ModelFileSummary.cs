using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Registry;

/// <summary>What the registry records from a model file's header: architecture, parameter count, storage type.</summary>
internal sealed record ModelFileSummary(string? Architecture, long ParameterCount, string? TypeSummary)
{
    private static readonly ModelFileSummary Unknown = new(null, 0, null);

    /// <summary>
    /// Reads a GGUF header. A file that does not start with the GGUF magic (a safetensors file, an adapter) has an
    /// unknown summary; a GGUF file that cannot be read throws <see cref="ModelFormatException"/>.
    /// </summary>
    public static ModelFileSummary Read(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        {
            if (stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) < 4) return Unknown;
        }
        if (BitConverter.ToUInt32(magic) != GgufFile.Magic) return Unknown;

        using GgufFile file = GgufFile.Open(path);
        long parameters = 0;
        var bytesByType = new Dictionary<GgmlType, long>();
        foreach (GgufTensorInfo t in file.Tensors)
        {
            parameters += t.ElementCount;
            bytesByType[t.Type] = bytesByType.GetValueOrDefault(t.Type) + t.ByteSize;
        }
        string? type = null;
        if (file.HasKey("general.file_type"))
        {
            long id = file.GetInteger("general.file_type");
            if (id is >= 0 and <= int.MaxValue && Enum.IsDefined((QuantFileType)(int)id)) type = QuantFileTypes.Name((QuantFileType)(int)id);
        }
        if (type == null)
        {
            long most = -1;
            foreach (var (t, bytes) in bytesByType)
            {
                if (bytes > most) { most = bytes; type = t.ToString(); }
            }
        }
        return new ModelFileSummary(file.GetStringOrNull("general.architecture"), parameters, type);
    }
}
