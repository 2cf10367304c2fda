using ModelSmith.Formats;
using ModelSmith.Registry;

namespace ModelSmith.Selection;

/// <summary>The registered variants of a workspace as <see cref="Candidate"/>s for the <see cref="Picker"/>.</summary>
public static class WorkspaceCandidates
{
    /// <summary>
    /// Every variant whose file is present and a GGUF model the engine runs, with: its latest decode speed and
    /// peak memory from `smith bench` on <paramref name="machine"/> (default: this machine; other machines'
    /// numbers are not comparable and are ignored), its latest perplexity on each data set, and whether a
    /// fine-tuned variant is among its ancestors; a fine-tuned variant's training data (so it is not taken for
    /// general text). <paramref name="skipped"/> lists the variants left out and why.
    /// </summary>
    public static IReadOnlyList<Candidate> Load(Workspace workspace, out IReadOnlyList<string> skipped, MachineInfo? machine = null)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        machine ??= MachineInfo.Current();
        IReadOnlyList<ModelVariant> variants = workspace.List();
        var byId = variants.ToDictionary(v => v.Id, StringComparer.Ordinal);
        IReadOnlyList<EvalResult> evals = workspace.Evals();
        IReadOnlyList<BenchResult> benches = workspace.Benches();
        var candidates = new List<Candidate>();
        var left = new List<string>();
        foreach (ModelVariant v in variants)
        {
            if (v.Status != VariantStatus.Present)
            {
                left.Add($"{v.Name} ({v.Id}): the file {v.Path} is {(v.Status == VariantStatus.Missing ? "missing" : "changed since it was registered")}.");
                continue;
            }
            ModelShape shape;
            try
            {
                shape = ModelShape.FromGguf(v.Path);
            }
            catch (Exception e) when (e is ModelFormatException or IOException or NotSupportedException)
            {
                left.Add($"{v.Name} ({v.Id}): {e.Message}");
                continue;
            }
            BenchResult? bench = benches.Where(b => b.VariantId == v.Id && b.DecodeTokensPerSecond.HasValue && SameMachine(b.Machine, machine))
                .OrderByDescending(b => b.Recorded ?? DateTimeOffset.MinValue).ThenByDescending(b => b.Id).FirstOrDefault();
            var quality = evals.Where(e => e.VariantId == v.Id && e.Perplexity.HasValue)
                .OrderByDescending(e => e.Recorded ?? DateTimeOffset.MinValue).ThenByDescending(e => e.Id)
                .DistinctBy(e => e.Data.Name, StringComparer.Ordinal)
                .Select(e => new QualityScore(e.Data.Name, e.Data.Sha256, e.Perplexity!.Value))
                .ToList();
            candidates.Add(new Candidate(v.Id, v.Name, v.Kind, v.Parents, HasFineTunedAncestor(v, byId), shape,
                bench?.DecodeTokensPerSecond, bench?.PeakResidentBytes, quality)
            {
                TrainedOn = v.Kind == VariantKind.FineTuned ? v.Data.Select(d => new DatasetKey(d.Name, d.Sha256)).ToList() : [],
            });
        }
        skipped = left;
        return candidates;
    }

    private static bool SameMachine(MachineInfo? a, MachineInfo b) =>
        a is not null && a.Hostname == b.Hostname && a.Cpu == b.Cpu && a.Cores == b.Cores;

    private static bool HasFineTunedAncestor(ModelVariant v, Dictionary<string, ModelVariant> byId)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>(v.Parents);
        while (stack.Count > 0)
        {
            string id = stack.Pop();
            if (!seen.Add(id) || !byId.TryGetValue(id, out ModelVariant? parent)) continue;
            if (parent.Kind == VariantKind.FineTuned) return true;
            foreach (string p in parent.Parents) stack.Push(p);
        }
        return false;
    }
}
