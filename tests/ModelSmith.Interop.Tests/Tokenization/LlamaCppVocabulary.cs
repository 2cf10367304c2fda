using System.Runtime.CompilerServices;
using System.Text;
using LLama.Native;

namespace ModelSmith.Interop.Tests.Tokenization;

/// <summary>A GGUF file loaded by llama.cpp with vocab_only: its tokenizer, without weights or a context.</summary>
internal sealed class LlamaCppVocabulary : IDisposable
{
    private readonly SafeLlamaModelHandle _model;

    // LlamaCppModel's static constructor installs the log callback and LLamaSharp's native library resolver,
    // which must happen before the first native call.
    static LlamaCppVocabulary() => RuntimeHelpers.RunClassConstructor(typeof(LlamaCppModel).TypeHandle);

    public LlamaCppVocabulary(string path)
    {
        LLamaModelParams parameters = LLamaModelParams.Default();
        parameters.n_gpu_layers = 0;
        parameters.vocab_only = true;
        _model = SafeLlamaModelHandle.LoadFromFile(path, parameters);
    }

    public int Count => _model.Vocab.Count;

    public int Bos => _model.Vocab.BOS is { } t ? (int)t : -1;

    public int Eos => _model.Vocab.EOS is { } t ? (int)t : -1;

    public bool AddsBos => _model.Vocab.ShouldAddBOS;

    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial)
    {
        LLamaToken[] tokens = _model.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8);
        var ids = new int[tokens.Length];
        for (int i = 0; i < ids.Length; i++)
            ids[i] = (int)tokens[i];
        return ids;
    }

    public bool IsEndOfGeneration(int id) => ((LLamaToken)id).IsEndOfGeneration(_model.Vocab);

    public byte[] Piece(int id, bool special)
    {
        Span<byte> buffer = stackalloc byte[512];
        uint n = _model.TokenToSpan(id, buffer, 0, special);
        if (n <= buffer.Length)
            return buffer[..(int)n].ToArray();
        var large = new byte[n];
        n = _model.TokenToSpan(id, large, 0, special);
        return large[..(int)n];
    }

    public void Dispose() => _model.Dispose();
}
