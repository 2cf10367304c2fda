using System.Runtime.InteropServices;

namespace ModelSmith.Registry;

/// <summary>The machine a measurement ran on: results from different machines are not comparable.</summary>
public sealed record MachineInfo(string Hostname, string Cpu, int Cores, string Os)
{
    /// <summary>This machine: host name, CPU model (from /proc/cpuinfo on Linux), logical cores, OS description.</summary>
    public static MachineInfo Current() =>
        new(Environment.MachineName, CpuModel(), Environment.ProcessorCount, RuntimeInformation.OSDescription);

    private static string CpuModel()
    {
        const string cpuinfo = "/proc/cpuinfo";
        try
        {
            if (File.Exists(cpuinfo))
            {
                foreach (string line in File.ReadLines(cpuinfo))
                {
                    if (!line.StartsWith("model name", StringComparison.Ordinal)) continue;
                    int colon = line.IndexOf(':', StringComparison.Ordinal);
                    if (colon >= 0) return line[(colon + 1)..].Trim();
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Fall through to the architecture: the model name is informative, not required.
        }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }
}
