using System.Globalization;
using System.Net;
using System.Text;
using ModelSmith.Registry;

namespace ModelSmith.Cli.Report;

/// <summary>
/// The lineage as an SVG graph drawn by hand: one column per generation (a variant sits one column right of its
/// deepest parent), the first child on its parent's row and later children below, as `smith lineage` prints them;
/// an arrow from every parent to every child. Colour gives the kind; a dashed border marks a missing file.
/// </summary>
internal static class LineageSvg
{
    private const int BoxWidth = 190;
    private const int BoxHeight = 54;
    private const int ColumnGap = 60;
    private const int RowGap = 18;
    private const int Margin = 12;

    public static string Draw(IReadOnlyList<LineageNode> roots, IReadOnlyList<ModelVariant> variants)
    {
        var byId = variants.ToDictionary(v => v.Id, StringComparer.Ordinal);
        var depth = new Dictionary<string, int>(StringComparer.Ordinal);
        int Depth(ModelVariant v)
        {
            if (depth.TryGetValue(v.Id, out int d)) return d;
            depth[v.Id] = 0; // parents always precede children (a file cannot be its own ancestor), so no cycle
            int deepest = -1;
            foreach (string p in v.Parents)
            {
                if (byId.TryGetValue(p, out ModelVariant? parent)) deepest = Math.Max(deepest, Depth(parent));
            }
            return depth[v.Id] = deepest + 1;
        }
        foreach (ModelVariant v in variants) Depth(v);

        var row = new Dictionary<string, int>(StringComparer.Ordinal);
        int Place(LineageNode node, int start)
        {
            if (row.ContainsKey(node.Variant.Id)) return start - 1;
            row[node.Variant.Id] = start;
            int last = start;
            bool first = true;
            foreach (LineageNode child in node.Children)
            {
                int at = first ? start : last + 1;
                int used = Place(child, at);
                if (used >= at)
                {
                    last = Math.Max(last, used);
                    first = false;
                }
            }
            return last;
        }
        int next = 0;
        foreach (LineageNode root in roots) next = Place(root, next) + 1;

        int columns = variants.Count == 0 ? 1 : depth.Values.Max() + 1;
        int rows = Math.Max(1, next);
        int width = 2 * Margin + columns * BoxWidth + (columns - 1) * ColumnGap;
        int height = 2 * Margin + rows * BoxHeight + (rows - 1) * RowGap;
        double X(string id) => Margin + depth[id] * (BoxWidth + ColumnGap);
        double Y(string id) => Margin + row[id] * (BoxHeight + RowGap);

        var svg = new StringBuilder();
        svg.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"lineage\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\">"));
        svg.Append("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>");
        foreach (ModelVariant v in variants)
        {
            if (!row.ContainsKey(v.Id)) continue;
            foreach (string p in v.Parents)
            {
                if (!row.ContainsKey(p)) continue;
                double x1 = X(p) + BoxWidth, y1 = Y(p) + BoxHeight / 2.0, x2 = X(v.Id), y2 = Y(v.Id) + BoxHeight / 2.0;
                double mid = (x1 + x2) / 2;
                svg.Append(Inv($"<path d=\"M {x1:0.#} {y1:0.#} C {mid:0.#} {y1:0.#}, {mid:0.#} {y2:0.#}, {x2 - 2:0.#} {y2:0.#}\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>"));
            }
        }
        foreach (ModelVariant v in variants)
        {
            if (!row.ContainsKey(v.Id)) continue;
            double x = X(v.Id), y = Y(v.Id);
            string fill = v.Kind switch
            {
                VariantKind.Base => "#dbe9f6",
                VariantKind.FineTuned => "#dcf1dc",
                _ => "#fbe5cf",
            };
            string dash = v.Status == VariantStatus.Present ? "" : " stroke-dasharray=\"5 3\"";
            svg.Append(Inv($"<g><title>{E(v.Name)} ({v.Id}): {E(v.KindName)}, {E(v.TypeSummary ?? "?")}, {E(Units.Bytes(v.Size))}{(v.Status == VariantStatus.Present ? "" : ", file " + v.Status.ToString().ToLowerInvariant())}</title>"));
            svg.Append(Inv($"<rect x=\"{x:0.#}\" y=\"{y:0.#}\" width=\"{BoxWidth}\" height=\"{BoxHeight}\" rx=\"8\" fill=\"{fill}\" stroke=\"#444\"{dash}/>"));
            svg.Append(Inv($"<text x=\"{x + 8:0.#}\" y=\"{y + 18:0.#}\" font-size=\"13\" font-weight=\"bold\">{E(Clip(v.Name, 24))}</text>"));
            svg.Append(Inv($"<text x=\"{x + 8:0.#}\" y=\"{y + 33:0.#}\" font-size=\"11\" fill=\"#333\">{E(v.KindName)} · {E(v.TypeSummary ?? "?")} · {E(Units.Bytes(v.Size))}</text>"));
            svg.Append(Inv($"<text x=\"{x + 8:0.#}\" y=\"{y + 47:0.#}\" font-size=\"10\" fill=\"#666\" font-family=\"monospace\">{v.Id}{(v.Status == VariantStatus.Present ? "" : " · " + v.Status.ToString().ToLowerInvariant())}</text></g>"));
        }
        svg.Append("</svg>");
        return svg.ToString();
    }

    private static string Clip(string text, int length) => text.Length <= length ? text : text[..(length - 1)] + "…";

    private static string E(string text) => WebUtility.HtmlEncode(text);

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
