using System.Globalization;
using System.Net;
using System.Text;
using ModelSmith.Cli.Commands;
using ModelSmith.Formats;
using ModelSmith.Registry;
using ModelSmith.Selection;

namespace ModelSmith.Cli.Report;

/// <summary>
/// The workspace as one self-contained HTML page: lineage graph, a table of every variant and its measurements,
/// perplexity on general and on domain text against file size and decode speed (Pareto frontiers marked), and
/// the <see cref="Picker"/>'s recommendation for a server, a laptop and an edge device. No external assets: the
/// graph and plots are inline SVG, the style an inline sheet.
/// </summary>
internal static class HtmlReport
{
    /// <summary>Which data sets count as general and as domain text, and the machine profile for speed estimates.</summary>
    public sealed record Options(string? General, string? Domain, MachineProfile? Machine);

    /// <summary>Builds the report and writes it to <paramref name="path"/> atomically (temp file, then rename); returns its size in bytes.</summary>
    public static long Write(Workspace workspace, Options options, string path)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(Build(workspace, options));
        AtomicFile.Write(path, stream => stream.Write(bytes));
        return bytes.Length;
    }

    public static string Build(Workspace workspace, Options options)
    {
        List<VariantMeasures> all = VariantMeasures.Load(workspace);
        IReadOnlyList<ModelVariant> variants = all.Select(m => m.Variant).ToList();
        string? domain = ResolveDomain(all, options.Domain);
        string? general = ResolveGeneral(all, options.General, domain);
        MachineInfo machine = MachineInfo.Current();

        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ModelSmith report</title><style>")
            .Append(Style)
            .Append("</style></head><body>\n");
        html.Append("<h1>ModelSmith report</h1>\n");
        html.Append(Inv($"<p class=\"meta\">Workspace <code>{E(workspace.Root)}</code> · {all.Count} variants · generated {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC on {E(machine.Hostname)} ({E(machine.Cpu)}, {machine.Cores} cores, {E(machine.Os)})</p>\n"));

        html.Append("<section id=\"lineage\"><h2>Lineage</h2>\n");
        if (all.Count == 0) html.Append("<p>No variants are registered. <code>smith add FILE</code> registers one.</p>");
        else html.Append(LineageSvg.Draw(workspace.Lineage(), variants));
        html.Append("<p class=\"legend\"><span class=\"k base\">base</span> <span class=\"k fine-tuned\">fine-tuned</span> <span class=\"k quantized\">quantized</span> · dashed border: file missing</p></section>\n");

        html.Append("<section id=\"variants\"><h2>Variants and measurements</h2>\n");
        AppendTable(html, all, general, domain);
        html.Append("</section>\n");

        html.Append("<section id=\"quality\"><h2>Quality against size and speed</h2>\n");
        AppendPlots(html, all, general, domain);
        html.Append("</section>\n");

        html.Append("<section id=\"recommendations\"><h2>Recommendations</h2>\n");
        AppendRecommendations(html, workspace, domain, options.Machine);
        html.Append("</section>\n");
        html.Append("</body></html>\n");
        return html.ToString();
    }

    /// <summary>
    /// The domain data set: the one named (by file name or stem), else one whose bytes or name stem match the data a
    /// fine-tuned variant was trained on; null when there is none.
    /// </summary>
    private static string? ResolveDomain(List<VariantMeasures> all, string? requested)
    {
        List<string> names = PerplexityDatasets(all);
        if (requested != null) return Match(names, requested) ?? requested;
        foreach (VariantMeasures m in all.Where(m => m.Variant.Kind == VariantKind.FineTuned))
        {
            foreach (DataFingerprint d in m.Variant.Data)
            {
                string? bySha = all.SelectMany(x => x.Evals).FirstOrDefault(e => e.Perplexity.HasValue && e.Data.Sha256 == d.Sha256)?.Data.Name;
                if (bySha != null) return bySha;
                string? byName = Match(names, d.Name);
                if (byName != null) return byName;
            }
        }
        return null;
    }

    /// <summary>The general data set: the one named, else the one most variants were measured on other than the domain.</summary>
    private static string? ResolveGeneral(List<VariantMeasures> all, string? requested, string? domain)
    {
        List<string> names = PerplexityDatasets(all);
        if (requested != null) return Match(names, requested) ?? requested;
        return names.Where(n => n != domain)
            .OrderByDescending(n => all.Count(m => m.BestPerplexityOn(n) != null))
            .ThenBy(n => names.IndexOf(n))
            .FirstOrDefault();
    }

    private static List<string> PerplexityDatasets(List<VariantMeasures> all) =>
        all.SelectMany(m => m.Evals).Where(e => e.Perplexity.HasValue).Select(e => e.Data.Name).Distinct(StringComparer.Ordinal).ToList();

    private static string? Match(List<string> names, string requested)
    {
        string name = Path.GetFileName(requested);
        return names.FirstOrDefault(n => n == name)
            ?? names.FirstOrDefault(n => string.Equals(DatasetKey.Stem(n), DatasetKey.Stem(name), StringComparison.OrdinalIgnoreCase));
    }

    private static void AppendTable(StringBuilder html, List<VariantMeasures> all, string? general, string? domain)
    {
        List<string> datasets = PerplexityDatasets(all);
        // General and domain first, then any other data set measured.
        datasets = datasets.OrderBy(d => d == general ? 0 : d == domain ? 1 : 2).ToList();
        var byId = all.ToDictionary(m => m.Variant.Id, StringComparer.Ordinal);
        html.Append("<table class=\"variants\"><thead><tr><th>id</th><th>name</th><th>kind</th><th>parents</th><th>made by</th><th>type</th><th>size</th><th>params</th>");
        foreach (string d in datasets)
        {
            string role = d == general ? "general" : d == domain ? "domain" : "other";
            html.Append(Inv($"<th>PPL {E(d)}<br><small>{role}</small></th>"));
        }
        html.Append("<th>KLD vs ref.</th><th>same top-1</th><th>task acc</th><th>prefill t/s</th><th>decode t/s</th><th>peak RSS</th><th>status</th></tr></thead><tbody>\n");
        foreach (VariantMeasures m in all)
        {
            ModelVariant v = m.Variant;
            html.Append(Inv($"<tr><td><code>{v.Id}</code></td><td>{E(v.Name)}</td><td><span class=\"k {v.KindName}\">{v.KindName}</span></td>"));
            html.Append(Inv($"<td>{E(string.Join(", ", v.Parents.Select(p => byId.TryGetValue(p, out var pm) ? pm.Variant.Name : p)))}</td>"));
            html.Append(Inv($"<td>{E(v.Transformation ?? "-")}{(v.TransformParameters != "{}" ? Inv($"<br><small><code>{E(v.TransformParameters)}</code></small>") : "")}{(v.Data.Count > 0 ? Inv($"<br><small>data: {E(string.Join(", ", v.Data.Select(d => d.Name)))}</small>") : "")}</td>"));
            html.Append(Inv($"<td>{E(v.TypeSummary ?? "?")}</td><td class=\"n\">{E(Units.Bytes(v.Size))}</td><td class=\"n\">{(v.ParameterCount > 0 ? Units.Count(v.ParameterCount) : "-")}</td>"));
            foreach (string d in datasets)
                html.Append(Inv($"<td class=\"n\">{E(VariantMeasures.Ppl(m.BestPerplexityOn(d)))}</td>"));
            EvalResult? kld = m.Evals.LastOrDefault(e => e.MeanKld.HasValue);
            EvalResult? task = m.Evals.LastOrDefault(e => e.Accuracy.HasValue);
            BenchResult? decode = m.LatestDecode;
            BenchResult? prefill = m.LatestPrefill;
            html.Append(Inv($"<td class=\"n\">{(kld?.MeanKld is { } k ? k.ToString("0.0000", CultureInfo.InvariantCulture) : "-")}</td>"));
            html.Append(Inv($"<td class=\"n\">{(kld?.SameTop1 is { } t ? (100 * t).ToString("0.0", CultureInfo.InvariantCulture) + " %" : "-")}</td>"));
            html.Append(Inv($"<td class=\"n\">{(task?.Accuracy is { } a ? E($"{100 * a:0.0} % ({task.Data.Name})") : "-")}</td>"));
            html.Append(Inv($"<td class=\"n\">{E(Speed(prefill?.PrefillTokensPerSecond, prefill?.PrefillStdDev))}</td>"));
            html.Append(Inv($"<td class=\"n\">{E(Speed(decode?.DecodeTokensPerSecond, decode?.DecodeStdDev))}</td>"));
            BenchResult? any = m.Benches.Count > 0 ? m.Benches[^1] : null;
            html.Append(Inv($"<td class=\"n\">{(any != null ? E(Units.Bytes(any.PeakResidentBytes)) : "-")}</td>"));
            html.Append(Inv($"<td class=\"{(v.Status == VariantStatus.Present ? "ok" : "bad")}\">{v.Status.ToString().ToLowerInvariant()}</td></tr>\n"));
        }
        html.Append("</tbody></table>\n");
        IEnumerable<MachineInfo> machines = all.SelectMany(m => m.Benches).Select(b => b.Machine).OfType<MachineInfo>().Distinct();
        foreach (MachineInfo mi in machines)
            html.Append(Inv($"<p class=\"note\">Speeds measured on {E(mi.Hostname)}: {E(mi.Cpu)}, {mi.Cores} cores, {E(mi.Os)}.</p>\n"));
    }

    private static void AppendPlots(StringBuilder html, List<VariantMeasures> all, string? general, string? domain)
    {
        var roles = new List<(string Label, string Dataset)>();
        if (general != null) roles.Add(($"general text ({general})", general));
        if (domain != null) roles.Add(($"domain text ({domain})", domain));
        if (roles.Count == 0)
        {
            html.Append("<p>No perplexity is recorded yet: <code>smith eval MODEL --data FILE</code> measures and records it.</p>\n");
            return;
        }
        if (domain == null)
            html.Append("<p class=\"note\">No domain data set identified (none named with <code>--domain</code> and no fine-tuned variant's training data was evaluated), so only general text is plotted.</p>\n");

        var bySize = new List<QualityPlot.Series>();
        var bySpeed = new List<QualityPlot.Series>();
        foreach (var (label, dataset) in roles)
        {
            var size = new List<(string, double, double)>();
            var speed = new List<(string, double, double)>();
            foreach (VariantMeasures m in all)
            {
                if (m.BestPerplexityOn(dataset)?.Perplexity is not double ppl) continue;
                size.Add((m.Variant.Name, m.Variant.Size / (1024.0 * 1024.0), ppl));
                if (m.LatestDecode?.DecodeTokensPerSecond is double tps) speed.Add((m.Variant.Name, tps, ppl));
            }
            bySize.Add(new QualityPlot.Series(label, size));
            bySpeed.Add(new QualityPlot.Series(label, speed));
        }
        html.Append("<div class=\"plot\">").Append(QualityPlot.Svg("Perplexity against file size", "file size (MiB, smaller is better)", bySize, maximizeX: false)).Append("</div>\n");
        if (bySpeed.Any(s => s.Points.Count > 0))
            html.Append("<div class=\"plot\">").Append(QualityPlot.Svg("Perplexity against decode speed", "decode tokens/s (higher is better)", bySpeed, maximizeX: true)).Append("</div>\n");
        else
            html.Append("<p>No decode speed is recorded for the measured variants: <code>smith bench MODEL</code> measures and records it.</p>\n");
        html.Append("<p class=\"note\">Dashed lines join each data set's Pareto frontier: the variants no other variant beats on both perplexity and size (or speed).</p>\n");
    }

    private static void AppendRecommendations(StringBuilder html, Workspace workspace, string? domain, MachineProfile? machine)
    {
        IReadOnlyList<Candidate> candidates = WorkspaceCandidates.Load(workspace, out IReadOnlyList<string> skipped);
        DatasetKey? key = domain == null ? null : new DatasetKey(domain, null);
        html.Append(Inv($"<p class=\"note\">Chosen by <code>ModelSmith.Selection.Picker</code> (as <code>smith pick</code>) from the {candidates.Count} variants whose files are present, judged on {(domain != null ? "the domain data set " + E(domain) : "the data set most variants were measured on")}; memory estimated at each profile's context; speed as measured by <code>smith bench</code> on this machine, else {(machine != null ? "estimated from this machine's profile" : "unknown (no machine profile: <code>smith report --measure-machine</code> or <code>smith estimate</code> measures one)")}.</p>\n"));
        foreach (var (profile, result) in Picker.PickForProfiles(candidates, machine, key))
        {
            html.Append(Inv($"<div class=\"profile\"><h3>{E(profile.Name)} <small>{E(profile.Description)}, {profile.Context} positions</small></h3>\n"));
            if (result.Choice is { } choice)
            {
                Candidate c = choice.Candidate;
                string type = workspace.Find(c.Id)?.TypeSummary ?? c.Type.ToString();
                html.Append(Inv($"<p class=\"choice\">→ <b>{E(c.Name)}</b> <code>{c.Id}</code> ({E(c.Role)}, {E(type)})</p>\n"));
            }
            else
            {
                html.Append("<p class=\"choice none\">→ nothing fits</p>\n");
            }
            html.Append("<ul>");
            foreach (string line in result.Explanation) html.Append(Inv($"<li>{E(line)}</li>"));
            foreach (string line in result.Suggestions) html.Append(Inv($"<li class=\"suggestion\">{E(line)}</li>"));
            html.Append("</ul></div>\n");
        }
        if (skipped.Count > 0)
        {
            html.Append("<p class=\"note\">Not considered:</p><ul class=\"note\">");
            foreach (string s in skipped) html.Append(Inv($"<li>{E(s)}</li>"));
            html.Append("</ul>\n");
        }
    }

    private static string Speed(double? mean, double? sd) => mean is { } m
        ? m.ToString(m < 100 ? "0.0" : "0", CultureInfo.InvariantCulture) + (sd is { } s ? " ± " + s.ToString(s < 100 ? "0.0" : "0", CultureInfo.InvariantCulture) : "")
        : "-";

    private static string E(string text) => WebUtility.HtmlEncode(text);

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private const string Style = """
        body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
        h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
        .meta, .note { color: #555; font-size: 0.9em; }
        table.variants { border-collapse: collapse; font-size: 0.85em; }
        table.variants th, table.variants td { border: 1px solid #ddd; padding: 4px 7px; vertical-align: top; }
        table.variants th { background: #f3f3f3; text-align: left; }
        td.n { text-align: right; white-space: nowrap; } td.bad { color: #b00; font-weight: bold; } td.ok { color: #080; }
        .k { padding: 1px 6px; border-radius: 4px; font-size: 0.9em; white-space: nowrap; }
        .k.base { background: #dbe9f6; } .k.fine-tuned { background: #dcf1dc; } .k.quantized { background: #fbe5cf; }
        .plot { display: inline-block; margin: 0.5em 1em 0.5em 0; border: 1px solid #eee; }
        .profile { border: 1px solid #ddd; border-radius: 8px; padding: 0.2em 1em; margin: 0.8em 0; }
        .profile small { color: #666; font-weight: normal; } .choice { font-size: 1.1em; } .none { color: #b00; }
        li.suggestion { color: #735c0f; }
        """;
}
