namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Seeded test matrices built with exact float arithmetic only (SplitMix64 bits, sums and products; no
/// log/sin whose last bit varies between C runtimes), so the same seed gives the same floats everywhere
/// and golden hashes of quantized bytes stay valid on every machine.
/// A copy of tests/ModelSmith.Tests/Quantization/TestWeights.cs: the golden hashes pinned there are
/// checked against llama.cpp here, so the two must generate the same values.
/// </summary>
internal sealed class TestWeights(ulong seed)
{
    private ulong _state = seed;

    /// <summary>Uniform in [0, 1) with 24 random bits.</summary>
    public float Uniform() => (Next() >> 40) * (1f / (1 << 24));

    /// <summary>Approximately N(0, 1): the centred sum of 4 uniforms, scaled to unit variance (Irwin–Hall).</summary>
    public float Normal() => (Uniform() + Uniform() + Uniform() + Uniform() - 2f) * 1.7320508f;

    /// <summary>
    /// A (rows, cols) matrix mixing what quantizers meet: rows of unit normals, of 0.02-scale normals with
    /// 1% outliers ×100, all-zero rows, rows with zeroed 16-value groups, tiny (1e-20) and positive-only rows.
    /// Row r takes kind r % 6.
    /// </summary>
    public float[] Mixed(int rows, int cols)
    {
        var x = new float[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = x.AsSpan(r * cols, cols);
            switch (r % 6)
            {
                case 0:
                    for (int c = 0; c < cols; c++) row[c] = Normal();
                    break;
                case 1:
                    for (int c = 0; c < cols; c++) row[c] = 0.02f * Normal() * (Uniform() < 0.01f ? 100f : 1f);
                    break;
                case 2:
                    break;
                case 3:
                    for (int c = 0; c < cols; c++) row[c] = (c / 16 % 3 == 1) ? 0f : Normal();
                    break;
                case 4:
                    for (int c = 0; c < cols; c++) row[c] = 1e-20f * Normal();
                    break;
                default:
                    for (int c = 0; c < cols; c++) row[c] = Uniform() + 0.125f;
                    break;
            }
        }
        return x;
    }

    /// <summary>A (rows, cols) matrix of N(0, 1) values.</summary>
    public float[] Normals(int rows, int cols)
    {
        var x = new float[rows * cols];
        for (int i = 0; i < x.Length; i++) x[i] = Normal();
        return x;
    }

    private ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
