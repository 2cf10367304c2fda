using System.Runtime.InteropServices;
using ModelSmith.Formats;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Formats;

/// <summary>Our table of ggml type ids against the one compiled into the shipped libggml-base.</summary>
[Trait("Category", "Interop")]
public sealed unsafe class GgmlTypeTableTests(ITestOutputHelper output)
{
    [Fact]
    public void Every_type_id_ggml_defines_has_our_block_size_and_byte_size()
    {
        _ = LlamaCppModel.NativeLibraryDescription;
        nint library = NativeLibrary.Load("libggml-base.so");
        var typeName = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(library, "ggml_type_name");
        var blockSize = (delegate* unmanaged<int, long>)NativeLibrary.GetExport(library, "ggml_blck_size");
        var typeSize = (delegate* unmanaged<int, nuint>)NativeLibrary.GetExport(library, "ggml_type_size");
        int checkedTypes = 0;
        var problems = new List<string>();
        // GGML_TYPE_COUNT of the native build LLamaSharp 0.30.0 ships; ggml_type_name reads past its
        // table for larger ids, so the bound must be exact.
        const int typeCount = 43;
        for (int id = 0; id < typeCount; id++)
        {
            byte* name = typeName(id);
            string text = name == null ? "" : Marshal.PtrToStringUTF8((nint)name) ?? "";
            long block = blockSize(id);
            long size = (long)typeSize(id);
            if (text.Length == 0 || block == 0 || size == 0)
            {
                if (GgmlTypeInfo.IsKnown((uint)id)) problems.Add($"id {id}: ggml has no such type but we know {(GgmlType)id}");
                continue;
            }
            output.WriteLine($"{id,3} {text,-10} block {block,4} bytes {size,4}");
            checkedTypes++;
            if (!GgmlTypeInfo.IsKnown((uint)id))
                problems.Add($"ggml type {id} ({text}, block {block}, {size} bytes) is missing from GgmlType");
            else if (block != GgmlTypeInfo.BlockSize((GgmlType)id) || size != GgmlTypeInfo.TypeSize((GgmlType)id))
                problems.Add($"ggml type {id} ({text}) has block {block} and {size} bytes; we say {GgmlTypeInfo.BlockSize((GgmlType)id)} and {GgmlTypeInfo.TypeSize((GgmlType)id)}");
        }
        Assert.Empty(problems);
        Assert.True(checkedTypes >= 30);
    }
}
