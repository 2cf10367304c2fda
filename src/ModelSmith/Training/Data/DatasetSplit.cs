using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace ModelSmith.Training.Data;

/// <summary>
/// Splits documents into training and validation sets, deterministically and by whole document. Each document gets
/// a key: the first 8 bytes of SHA-256("seed\nsource\nindex") (its file's name and its position there), so a
/// document's key does not depend on the other documents. The round(fraction x N) documents with the smallest keys
/// are the validation set (at least one, and at least one left for training, when the fraction is above 0 and
/// there are two documents or more). Both sets keep the documents' original order.
/// </summary>
public static class DatasetSplit
{
    public static (List<TrainingDocument> Train, List<TrainingDocument> Validation) Split(
        IReadOnlyList<TrainingDocument> documents, double validationFraction, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(documents);
        if (!(validationFraction >= 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "the validation fraction must be in [0, 1).");
        int n = documents.Count;
        int count = 0;
        if (validationFraction > 0 && n >= 2)
            count = Math.Clamp((int)Math.Round(validationFraction * n, MidpointRounding.AwayFromZero), 1, n - 1);

        var keys = new (ulong Key, int Index)[n];
        for (int i = 0; i < n; i++)
            keys[i] = (Key(documents[i], seed), i);
        Array.Sort(keys, (a, b) =>
        {
            int byKey = a.Key.CompareTo(b.Key);
            return byKey != 0 ? byKey : a.Index.CompareTo(b.Index);
        });
        var validation = new bool[n];
        for (int i = 0; i < count; i++)
            validation[keys[i].Index] = true;

        var train = new List<TrainingDocument>(n - count);
        var held = new List<TrainingDocument>(count);
        for (int i = 0; i < n; i++)
            (validation[i] ? held : train).Add(documents[i]);
        return (train, held);
    }

    internal static ulong Key(TrainingDocument document, ulong seed)
    {
        byte[] text = Encoding.UTF8.GetBytes($"{seed}\n{document.Source}\n{document.Index}");
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(text, hash);
        return BinaryPrimitives.ReadUInt64LittleEndian(hash);
    }
}
