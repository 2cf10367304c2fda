using ScottPlot;

namespace ModelSmith.Cli.Report;

/// <summary>
/// Perplexity against a cost (file size) or a benefit (decode speed), one series per data set, every variant
/// labelled, and each series' Pareto frontier drawn as a dashed line through the variants no other beats on both.
/// Rendered by ScottPlot as SVG so the report needs no external files.
/// </summary>
internal static class QualityPlot
{
    /// <summary>One data set's points: variant name, x (MiB or tokens/s), perplexity.</summary>
    public sealed record Series(string Label, IReadOnlyList<(string Name, double X, double Perplexity)> Points);

    private static readonly Color[] Palette = [Color.FromHex("#1f77b4"), Color.FromHex("#d62728"), Color.FromHex("#2ca02c"), Color.FromHex("#9467bd")];

    /// <summary>The SVG document (an &lt;svg&gt; element) of the plot.</summary>
    public static string Svg(string title, string xLabel, IReadOnlyList<Series> series, bool maximizeX, int width = 680, int height = 500)
    {
        var plot = new Plot();
        int s = 0;
        foreach (Series one in series)
        {
            if (one.Points.Count == 0) continue;
            Color color = Palette[s++ % Palette.Length];
            double[] xs = one.Points.Select(p => p.X).ToArray();
            double[] ys = one.Points.Select(p => p.Perplexity).ToArray();
            var points = plot.Add.Scatter(xs, ys);
            points.LineWidth = 0;
            points.MarkerSize = 9;
            points.Color = color;
            points.LegendText = one.Label;

            List<int> frontier = ParetoFrontier.Indices(xs, ys, maximizeX);
            var line = plot.Add.Scatter(frontier.Select(i => xs[i]).ToArray(), frontier.Select(i => ys[i]).ToArray());
            line.MarkerSize = 0;
            line.LineWidth = 2;
            line.LinePattern = LinePattern.Dashed;
            line.Color = color;
            line.LegendText = one.Label + ": Pareto frontier";

            foreach (var (name, x, y) in one.Points)
            {
                var text = plot.Add.Text(name, x, y);
                text.LabelFontSize = 11;
                text.LabelFontColor = color;
                text.OffsetX = 7;
                text.OffsetY = -7;
            }
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel("perplexity (lower is better)");
        // Room right of the points for their labels.
        plot.Axes.Margins(left: 0.08, right: 0.25, bottom: 0.1, top: 0.1);
        plot.ShowLegend(Edge.Bottom);
        return plot.GetSvgXml(width, height);
    }
}
