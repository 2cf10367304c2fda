using System.Globalization;
using ModelSmith.Quantization;
using ModelSmith.Registry;

namespace ModelSmith.Selection;

/// <summary>The deployment constraints of one pick.</summary>
/// <param name="MemoryBytes">Peak resident memory the model may use (estimated).</param>
/// <param name="MinTokensPerSecond">Decode speed floor (0: none); measured on this machine, else estimated.</param>
/// <param name="Domain">The data set quality is judged on; null: general text, the data set most candidates were measured on other than those a variant was fine-tuned on.</param>
/// <param name="MaxLoss">Perplexity increase allowed over the best candidate that fits, as a fraction (0.02 = 2%), to buy a smaller model; 0 picks the best.</param>
/// <param name="Context">KV cache positions the deployment needs.</param>
public sealed record PickRequest(long MemoryBytes, double MinTokensPerSecond = 0, DatasetKey? Domain = null, double MaxLoss = 0, int Context = 2048);

/// <summary>One candidate judged against a request.</summary>
/// <param name="Memory">Estimated peak memory at the request's context.</param>
/// <param name="TokensPerSecond">Decode speed: measured on this machine when <paramref name="SpeedMeasured"/>, else estimated (null when neither is possible).</param>
/// <param name="Perplexity">On the request's data set, or null when not measured there.</param>
/// <param name="Rejection">Why it cannot be picked, or null.</param>
/// <param name="Loss">Perplexity increase over the best candidate that fits (0 for the best), or null.</param>
public sealed record Judged(Candidate Candidate, MemoryEstimate Memory, double? TokensPerSecond, bool SpeedMeasured, double? Perplexity, string? Rejection, double? Loss)
{
    public bool Feasible => Rejection is null;
}

/// <summary>The outcome of a pick: the choice (or none), every candidate judged, the Pareto frontiers and the reasons in words.</summary>
/// <param name="Dataset">The data set quality was judged on (null when no candidate has a perplexity).</param>
/// <param name="MemoryFrontier">Candidates no other beats on both perplexity and memory, by memory.</param>
/// <param name="SpeedFrontier">Candidates no other beats on both perplexity and speed, by speed (fastest first).</param>
/// <param name="Explanation">Why the choice, in plain sentences.</param>
/// <param name="Suggestions">When nothing fits: what would (a smaller type, a shorter context, more memory, a lower floor), with estimated numbers.</param>
public sealed record PickResult(
    PickRequest Request,
    Judged? Choice,
    IReadOnlyList<Judged> Candidates,
    string? Dataset,
    IReadOnlyList<Judged> MemoryFrontier,
    IReadOnlyList<Judged> SpeedFrontier,
    IReadOnlyList<string> Explanation,
    IReadOnlyList<string> Suggestions);

/// <summary>A deployment target for <see cref="Picker.PickForProfiles"/>.</summary>
public sealed record DeploymentProfile(string Name, string Description, long MemoryBytes, double MinTokensPerSecond, int Context)
{
    /// <summary>A server: memory to spare (256 GiB), no speed floor, 4096 positions.</summary>
    public static DeploymentProfile Server { get; } = new("server", "256 GiB of memory, no speed floor", 256L << 30, 0, 4096);

    /// <summary>A laptop: 8 GiB, no speed floor, 4096 positions.</summary>
    public static DeploymentProfile Laptop { get; } = new("laptop", "8 GiB of memory, no speed floor", 8L << 30, 0, 4096);

    /// <summary>An edge device: 1 GiB, at least 20 tokens/s, 2048 positions.</summary>
    public static DeploymentProfile Edge { get; } = new("edge", "1 GiB of memory, at least 20 tokens/s", 1L << 30, 20, 2048);

    public static IReadOnlyList<DeploymentProfile> All { get; } = [Server, Laptop, Edge];
}

/// <summary>
/// Chooses a model variant for a deployment:
/// <list type="number">
/// <item>every candidate's peak memory is estimated at the request's context (<see cref="ResourceEstimator"/>) and
/// its decode speed taken from `smith bench` on this machine, or estimated (and flagged) when unmeasured;</item>
/// <item>those that fit the memory and meet the speed floor are ranked by perplexity on the domain data set (or the
/// data set most candidates were measured on);</item>
/// <item>the choice is the best perplexity (perplexities within <see cref="NoiseTolerance"/> of it tie, and the variant
/// with more bits per weight wins the tie: quantize only when the limits ask for it), or with a --max-loss the
/// smallest model whose perplexity is within that fraction of the best (then faster, then id);</item>
/// <item>the explanation follows the usual guidance: the base model when resources are ample and general ability is
/// what matters; a fine-tuned model for a domain; a quantized one when memory or speed is tight; a fine-tuned then
/// quantized one to keep domain quality small;</item>
/// <item>when nothing fits, the suggestions say what would, with numbers from the estimator.</item>
/// </list>
/// Without any perplexity the candidates are ranked by bits per weight (more bits, less quantization loss), and said so.
/// </summary>
public static class Picker
{
    /// <summary>
    /// Perplexities within this fraction of the best count as a tie when no loss is allowed: well under the standard
    /// error of a perplexity measured on tens of thousands of tokens, and well under what a real quality gap looks like.
    /// </summary>
    public const double NoiseTolerance = 0.001;

    /// <summary>Judges every candidate against <paramref name="request"/> and picks one (see <see cref="Picker"/>).</summary>
    public static PickResult Pick(IReadOnlyList<Candidate> candidates, PickRequest request, MachineProfile? machine)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(request);
        if (request.MemoryBytes <= 0) throw new ArgumentOutOfRangeException(nameof(request), request.MemoryBytes, "The memory limit must be positive.");
        if (request.MinTokensPerSecond < 0 || !double.IsFinite(request.MinTokensPerSecond))
            throw new ArgumentOutOfRangeException(nameof(request), request.MinTokensPerSecond, "The speed floor must be 0 or more.");
        if (request.MaxLoss < 0 || !double.IsFinite(request.MaxLoss)) throw new ArgumentOutOfRangeException(nameof(request), request.MaxLoss, "The allowed loss must be 0 or more.");
        ArgumentOutOfRangeException.ThrowIfLessThan(request.Context, 1);

        DatasetKey? dataset = request.Domain ?? CommonDataset(candidates);
        var judged = new List<Judged>(candidates.Count);
        foreach (Candidate c in candidates) judged.Add(Judge(c, request, dataset, machine));

        bool haveQuality = judged.Exists(j => j.Perplexity.HasValue);
        var feasible = judged.Where(j => j.Feasible).ToList();
        // Rank: by perplexity when there is any on the data set (unmeasured candidates after), else by bits per weight.
        var ranked = feasible.OrderBy(j => j.Perplexity.HasValue ? 0 : 1)
            .ThenBy(j => j.Perplexity ?? double.PositiveInfinity)
            .ThenByDescending(j => haveQuality ? 0 : j.Candidate.Shape.BitsPerWeight)
            .ThenBy(j => j.Memory.Total)
            .ThenByDescending(j => j.TokensPerSecond ?? 0)
            .ThenBy(j => j.Candidate.Id, StringComparer.Ordinal)
            .ToList();

        Judged? choice = null;
        double? best = ranked.Count > 0 ? ranked[0].Perplexity : null;
        if (best is double b)
        {
            for (int i = 0; i < judged.Count; i++)
            {
                if (judged[i].Feasible && judged[i].Perplexity is double p) judged[i] = judged[i] with { Loss = p / b - 1 };
            }
            // Within the allowed loss, the smallest model wins (then the faster, then the better). With no allowed loss,
            // perplexities within NoiseTolerance of the best are a tie that the variant with more bits per weight wins:
            // a quantized copy measuring 0.02% "better" than its parent is noise, and the parent is the safer choice.
            bool trade = request.MaxLoss > 0;
            double allowed = trade ? request.MaxLoss : NoiseTolerance;
            choice = judged.Where(j => j.Feasible && j.Loss is double loss && loss <= allowed + 1e-12)
                .OrderBy(j => trade ? j.Memory.Total : 0)
                .ThenByDescending(j => trade ? 0 : j.Candidate.Shape.BitsPerWeight)
                .ThenBy(j => j.Perplexity)
                .ThenBy(j => j.Memory.Total)
                .ThenByDescending(j => j.TokensPerSecond ?? 0)
                .ThenBy(j => j.Candidate.Id, StringComparer.Ordinal)
                .First();
        }
        else if (ranked.Count > 0)
        {
            choice = ranked[0];
        }

        string? datasetName = haveQuality && dataset != null
            ? candidates.Select(c => c.ScoreOn(dataset)?.Dataset).FirstOrDefault(n => n != null) ?? dataset.Name
            : null;
        var explanation = Explain(choice, judged, request, datasetName, haveQuality);
        IReadOnlyList<string> suggestions = choice is null ? Suggest(judged, request, machine) : [];
        return new PickResult(request, choice, judged, datasetName, MemoryFrontier(judged), SpeedFrontier(judged), explanation, suggestions);
    }

    /// <summary>One pick per deployment profile (server, laptop, edge by default), for reports and the demo.</summary>
    public static IReadOnlyList<(DeploymentProfile Profile, PickResult Result)> PickForProfiles(IReadOnlyList<Candidate> candidates, MachineProfile? machine,
        DatasetKey? domain = null, IReadOnlyList<DeploymentProfile>? profiles = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var results = new List<(DeploymentProfile, PickResult)>();
        foreach (DeploymentProfile p in profiles ?? DeploymentProfile.All)
            results.Add((p, Pick(candidates, new PickRequest(p.MemoryBytes, p.MinTokensPerSecond, domain, 0, p.Context), machine)));
        return results;
    }

    /// <summary>
    /// Guidance from the estimator alone, for a model with no measured variants: every file type's estimated
    /// memory and speed at the request's context, and the type with the most bits that fits and meets the floor.
    /// </summary>
    public static (IReadOnlyList<(QuantFileType Type, ResourceEstimate Estimate, bool Fits)> Options, QuantFileType? Best) AdviseTypes(
        ModelShape shape, PickRequest request, MachineProfile? machine)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(request);
        var options = new List<(QuantFileType, ResourceEstimate, bool)>();
        QuantFileType? best = null;
        foreach (QuantFileType type in TypesByBits)
        {
            ModelShape variant;
            try
            {
                variant = shape.Quantized(type);
            }
            catch (ArgumentException)
            {
                continue; // a row length the type cannot hold
            }
            ResourceEstimate e = ResourceEstimator.Estimate(variant, request.Context, machine);
            bool fits = e.Memory.Total <= request.MemoryBytes
                && (request.MinTokensPerSecond <= 0 || (e.Speed?.TokensPerSecond ?? 0) >= request.MinTokensPerSecond);
            options.Add((type, e, fits));
            if (fits && best is null) best = type;
        }
        return (options, best);
    }

    /// <summary>File types from the most bits per weight to the fewest (quality falls roughly in this order).</summary>
    public static IReadOnlyList<QuantFileType> TypesByBits { get; } =
    [
        QuantFileType.F32, QuantFileType.F16, QuantFileType.Q8_0, QuantFileType.Q6_K, QuantFileType.Q5_K_M, QuantFileType.Q5_K_S,
        QuantFileType.Q4_K_M, QuantFileType.Q4_K_S, QuantFileType.Q3_K_L, QuantFileType.Q3_K_M, QuantFileType.Q3_K_S, QuantFileType.Q2_K,
    ];

    private static Judged Judge(Candidate c, PickRequest request, DatasetKey? dataset, MachineProfile? machine)
    {
        ResourceEstimate e = ResourceEstimator.Estimate(c.Shape, request.Context, machine);
        bool measured = c.MeasuredTokensPerSecond.HasValue;
        double? speed = c.MeasuredTokensPerSecond ?? e.Speed?.TokensPerSecond;
        double? ppl = dataset is null ? null : c.PerplexityOn(dataset);
        string? rejection = null;
        if (c.Shape.Config.Architecture == Models.ModelArchitecture.Gpt2 && request.Context > c.Shape.Config.ContextLength)
            rejection = $"has learned positions for {c.Shape.Config.ContextLength} tokens only, fewer than the {request.Context} asked for";
        else if (e.Memory.Total > request.MemoryBytes)
            rejection = $"needs {Bytes(e.Memory.Total)} at {request.Context} positions, over the {Bytes(request.MemoryBytes)} limit";
        else if (request.MinTokensPerSecond > 0 && speed is null)
            rejection = "its speed is neither measured nor estimable (no machine profile)";
        else if (request.MinTokensPerSecond > 0 && speed < request.MinTokensPerSecond)
            rejection = Inv($"decodes {speed:0.#} tok/s ({(measured ? "measured" : "estimated")}), under the {request.MinTokensPerSecond:0.#} tok/s floor");
        return new Judged(c, e.Memory, speed, measured, ppl, rejection, null);
    }

    /// <summary>
    /// The general-text yardstick: the data set most candidates have a perplexity on, leaving out the data sets a
    /// fine-tuned candidate was trained on (unless nothing else is measured); ties go to the first name in order.
    /// </summary>
    private static DatasetKey? CommonDataset(IReadOnlyList<Candidate> candidates)
    {
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var domain = new HashSet<string>(StringComparer.Ordinal);
        foreach (Candidate c in candidates)
        {
            foreach (QualityScore q in c.Quality)
            {
                foreach (Candidate t in candidates)
                {
                    if (t.TrainedOn.Any(k => k.Matches(q.Dataset, q.Sha256))) domain.Add(q.Dataset);
                }
            }
            foreach (string name in c.Quality.Select(q => q.Dataset).Distinct(StringComparer.Ordinal)) counts[name] = counts.GetValueOrDefault(name) + 1;
        }
        if (counts.Keys.Any(n => !domain.Contains(n)))
        {
            foreach (string name in domain) counts.Remove(name);
        }
        string? best = null;
        int most = 0;
        foreach ((string name, int n) in counts)
        {
            if (n > most) (best, most) = (name, n);
        }
        return best is null ? null : new DatasetKey(best, null);
    }

    private static List<Judged> MemoryFrontier(List<Judged> judged)
    {
        var measured = judged.Where(j => j.Perplexity.HasValue).ToList();
        return measured.Where(j => !measured.Any(o => o != j && o.Perplexity <= j.Perplexity && o.Memory.Total <= j.Memory.Total
                && (o.Perplexity < j.Perplexity || o.Memory.Total < j.Memory.Total)))
            .OrderBy(j => j.Memory.Total).ToList();
    }

    private static List<Judged> SpeedFrontier(List<Judged> judged)
    {
        var measured = judged.Where(j => j.Perplexity.HasValue && j.TokensPerSecond.HasValue).ToList();
        return measured.Where(j => !measured.Any(o => o != j && o.Perplexity <= j.Perplexity && o.TokensPerSecond >= j.TokensPerSecond
                && (o.Perplexity < j.Perplexity || o.TokensPerSecond > j.TokensPerSecond)))
            .OrderByDescending(j => j.TokensPerSecond).ToList();
    }

    private static List<string> Explain(Judged? choice, List<Judged> judged, PickRequest request, string? dataset, bool haveQuality)
    {
        var lines = new List<string>();
        if (choice is null)
        {
            lines.Add(judged.Count == 0
                ? "No variants are registered, so there is nothing to pick from."
                : Inv($"None of the {judged.Count} variants fits {Bytes(request.MemoryBytes)}{(request.MinTokensPerSecond > 0 ? Inv($" at {request.MinTokensPerSecond:0.#} tok/s or more") : "")} with {request.Context} positions."));
            return lines;
        }
        Candidate c = choice.Candidate;
        string speed = choice.TokensPerSecond is double s ? Inv($"{s:0.#} tok/s{(choice.SpeedMeasured ? "" : " (estimated, not yet benchmarked)")}") : "an unknown speed";
        lines.Add(Inv($"Pick {c.Name} ({c.Role}, {c.Type}): {Bytes(choice.Memory.Total)} of the {Bytes(request.MemoryBytes)} allowed at {request.Context} positions, {speed}")
            + (choice.Perplexity is double p ? Inv($", perplexity {p:0.###} on {dataset}.") : "."));
        if (!haveQuality)
            lines.Add("No perplexity is recorded for these variants, so they are ranked by bits per weight (fewer bits lose more quality); run `smith eval` to rank them on your data.");
        else if (choice.Perplexity is null)
            lines.Add(Inv($"None of the variants that fit has a perplexity on {dataset}; it is ranked by what is known. Run `smith eval` on it."));

        Judged? bestOverall = judged.Where(j => j.Perplexity.HasValue).OrderBy(j => j.Perplexity).FirstOrDefault();
        Judged? baseModel = judged.Where(j => j.Candidate.Kind == VariantKind.Base).OrderBy(j => j.Perplexity ?? double.PositiveInfinity).FirstOrDefault();
        Judged? fineTuned = judged.Where(j => j.Candidate.Kind == VariantKind.FineTuned && j.Perplexity.HasValue).OrderBy(j => j.Perplexity).FirstOrDefault();
        switch (c.Kind)
        {
            case VariantKind.Base:
                lines.Add(request.Domain is null
                    ? "Resources are ample: the base model fits and is fast enough, and without a domain its broad, general ability is what counts."
                    : "The base model fits and is fast enough, and no fine-tuned variant does better on this domain.");
                break;
            case VariantKind.FineTuned:
                lines.Add(baseModel?.Perplexity is double bp && choice.Perplexity is double fp
                    ? Inv($"Fine-tuned for the domain: perplexity {fp:0.###} against {bp:0.###} for the base ({fp / bp - 1:+0.#%;-0.#%}). A fine-tuned model may have lost some general ability; keep the base for broad use.")
                    : "Fine-tuned for the domain: it knows the domain's text best among the variants that fit.");
                break;
            case VariantKind.Quantized:
                Judged? parent = judged.FirstOrDefault(j => c.Parents.Contains(j.Candidate.Id, StringComparer.Ordinal));
                string why = parent is null ? "memory or latency is tight"
                    : !parent.Feasible ? Inv($"its unquantized parent {parent.Candidate.Name} {parent.Rejection}")
                    : Inv($"it needs {Bytes(choice.Memory.Total)} instead of its parent's {Bytes(parent.Memory.Total)}");
                lines.Add(c.FineTunedAncestor
                    ? Inv($"Fine-tuned, then quantized: it keeps the domain quality in a small model; quantized because {why}.")
                    : Inv($"Quantized because {why}."));
                if (parent?.Perplexity is double pp && choice.Perplexity is double qp)
                    lines.Add(Inv($"Quantization costs {qp / pp - 1:+0.##%;-0.##%} perplexity against {parent.Candidate.Name}."));
                if (fineTuned?.Perplexity is double ftp && !c.FineTunedAncestor && request.Domain != null && ftp < (parent?.Perplexity ?? choice.Perplexity ?? double.PositiveInfinity))
                    lines.Add(Inv($"For this domain, quantizing the fine-tuned {fineTuned.Candidate.Name} instead would likely keep more of its quality."));
                break;
        }
        Judged? bestFeasible = judged.Where(j => j.Feasible && j.Perplexity.HasValue).OrderBy(j => j.Perplexity).FirstOrDefault();
        if (request.MaxLoss > 0 && choice.Loss is double loss && bestFeasible != null && !ReferenceEquals(bestFeasible, choice))
            lines.Add(Inv($"--max-loss {request.MaxLoss:0.##%} trades quality for size: {loss:+0.##%} perplexity against {bestFeasible.Candidate.Name}, the best that fits, which needs {Bytes(bestFeasible.Memory.Total)}."));
        else if (bestOverall != null && !bestOverall.Feasible && choice.Perplexity is double cp)
            lines.Add(Inv($"The best variant overall, {bestOverall.Candidate.Name} (perplexity {bestOverall.Perplexity:0.###}), is ruled out: it {bestOverall.Rejection}; the pick gives up {cp / bestOverall.Perplexity!.Value - 1:+0.##%}."));
        int rejected = judged.Count(j => !j.Feasible);
        if (rejected > 0) lines.Add(Inv($"{rejected} of {judged.Count} variants were ruled out by the limits."));
        return lines;
    }

    /// <summary>What would fit when nothing does: a smaller type, a shorter context, more memory, a lower speed floor.</summary>
    private static List<string> Suggest(List<Judged> judged, PickRequest request, MachineProfile? machine)
    {
        var lines = new List<string>();
        if (judged.Count == 0) return lines;
        // Start from the best-quality candidate (most bits when no perplexity is known).
        Judged reference = judged.OrderBy(j => j.Perplexity ?? double.PositiveInfinity).ThenByDescending(j => j.Candidate.Shape.BitsPerWeight).First();
        ModelShape shape = reference.Candidate.Shape;

        foreach (QuantFileType type in TypesByBits)
        {
            // Only types that store fewer bits than the reference already does.
            if (!QuantFileTypes.IsQuantized(type) || shape.BitsPerWeight <= GgmlTypeInfoBits(type)) continue;
            ModelShape variant;
            try
            {
                variant = shape.Quantized(type);
            }
            catch (ArgumentException)
            {
                continue;
            }
            ResourceEstimate e = ResourceEstimator.Estimate(variant, request.Context, machine);
            bool fast = request.MinTokensPerSecond <= 0 || (e.Speed?.TokensPerSecond ?? double.PositiveInfinity) >= request.MinTokensPerSecond;
            if (e.Memory.Total <= request.MemoryBytes && fast)
            {
                lines.Add(Inv($"A smaller type: `smith quantize {reference.Candidate.Name} --type {type.ToString().ToLowerInvariant()}` would need about {Bytes(e.Memory.Total)}")
                    + (e.Speed is SpeedEstimate sp ? Inv($" and decode about {sp.TokensPerSecond:0.#} tok/s (estimated).") : "."));
                break;
            }
        }

        // The best variant (by quality) that fits with a shorter context of at least 64 positions.
        foreach (Judged j in judged.OrderBy(j => j.Perplexity ?? double.PositiveInfinity).ThenByDescending(j => j.Candidate.Shape.BitsPerWeight))
        {
            int context = LongestContext(j.Candidate.Shape, request.MemoryBytes, machine);
            if (context < Math.Min(64, request.Context) || context >= request.Context) continue;
            lines.Add(Inv($"A shorter context: {j.Candidate.Name} fits {Bytes(request.MemoryBytes)} with up to {context} positions (its KV cache takes {Bytes(ResourceEstimator.KvCacheBytes(j.Candidate.Shape.Config, 1))} per position)."));
            break;
        }

        Judged smallest = judged.OrderBy(j => j.Memory.Total).First();
        if (smallest.Memory.Total > request.MemoryBytes)
            lines.Add(Inv($"More memory: the smallest variant, {smallest.Candidate.Name}, needs {Bytes(smallest.Memory.Total)} at {request.Context} positions; {reference.Candidate.Name} needs {Bytes(reference.Memory.Total)}."));

        if (request.MinTokensPerSecond > 0)
        {
            Judged? fastest = judged.Where(j => j.Memory.Total <= request.MemoryBytes && j.TokensPerSecond.HasValue).OrderByDescending(j => j.TokensPerSecond).FirstOrDefault();
            if (fastest != null && fastest.TokensPerSecond < request.MinTokensPerSecond)
                lines.Add(Inv($"A lower speed floor: the fastest variant that fits, {fastest.Candidate.Name}, decodes {fastest.TokensPerSecond:0.#} tok/s ({(fastest.SpeedMeasured ? "measured" : "estimated")}); --min-tps {Math.Floor(fastest.TokensPerSecond!.Value * 10) / 10:0.#} would accept it."));
        }
        return lines;
    }

    private static double GgmlTypeInfoBits(QuantFileType type) => Formats.GgmlTypeInfo.BitsPerWeight(QuantFileTypes.DefaultType(type));

    /// <summary>The most positions with which <paramref name="shape"/> fits in <paramref name="memory"/> (0 when none do).</summary>
    public static int LongestContext(ModelShape shape, long memory, MachineProfile? machine)
    {
        ArgumentNullException.ThrowIfNull(shape);
        int threads = machine?.Threads ?? Environment.ProcessorCount;
        if (ResourceEstimator.EstimateMemory(shape, 1, threads).Total > memory) return 0;
        int lo = 1, hi = 1 << 24;
        while (lo < hi)
        {
            int mid = lo + (hi - lo + 1) / 2;
            if (ResourceEstimator.EstimateMemory(shape, mid, threads).Total <= memory) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    private static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return unit == 0 ? Inv($"{bytes} B") : Inv($"{value:0.##} {units[unit]}");
    }

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
