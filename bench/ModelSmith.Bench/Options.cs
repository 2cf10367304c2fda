using System.Globalization;

namespace ModelSmith.Bench;

/// <summary>"--name value", "--flag" and at most one positional argument; every option must be read by
/// the suite, so a misspelt one is a usage error instead of being ignored.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public string? Positional { get; private set; }

    public int[] Threads => Measure.ParseThreadList(String("threads", "1,2"));

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var options = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                string name = a[2..];
                bool hasValue = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal);
                options._values[name] = hasValue ? args[++i] : null;
            }
            else if (options.Positional is null)
            {
                options.Positional = a;
            }
            else
            {
                throw new UsageException($"unexpected argument '{a}' (only one positional argument, the model path, is accepted).");
            }
        }
        return options;
    }

    public string String(string name, string fallback)
    {
        _used.Add(name);
        if (!_values.TryGetValue(name, out var value))
        {
            return fallback;
        }
        return value ?? throw new UsageException($"--{name} needs a value.");
    }

    public int Int(string name, int fallback)
    {
        string text = String(name, fallback.ToString(CultureInfo.InvariantCulture));
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < 1)
        {
            throw new UsageException($"--{name}: '{text}' is not a positive integer.");
        }
        return value;
    }

    public string Choice(string name, string fallback, string[] allowed)
    {
        string value = String(name, fallback);
        if (Array.IndexOf(allowed, value) < 0)
        {
            throw new UsageException($"--{name}: '{value}' is not one of {string.Join(", ", allowed)}.");
        }
        return value;
    }

    public bool Flag(string name)
    {
        _used.Add(name);
        if (!_values.TryGetValue(name, out var value))
        {
            return false;
        }
        return value is null ? true : throw new UsageException($"--{name} takes no value (got '{value}').");
    }

    public void ThrowOnUnused()
    {
        foreach (var name in _values.Keys)
        {
            if (!_used.Contains(name))
            {
                throw new UsageException($"unknown option --{name} for this suite.");
            }
        }
    }
}
