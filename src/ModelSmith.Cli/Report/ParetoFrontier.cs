namespace ModelSmith.Cli.Report;

/// <summary>The points no other point beats on both axes: lower perplexity and lower cost (or higher speed).</summary>
internal static class ParetoFrontier
{
    /// <summary>
    /// Indices of the points that are not dominated when <paramref name="y"/> is minimized and <paramref name="x"/>
    /// is minimized (<paramref name="maximizeX"/> false: size) or maximized (true: speed), sorted by x.
    /// A point is dominated when another is at least as good on both and better on one.
    /// </summary>
    public static List<int> Indices(IReadOnlyList<double> x, IReadOnlyList<double> y, bool maximizeX)
    {
        var keep = new List<int>();
        for (int i = 0; i < x.Count; i++)
        {
            bool dominated = false;
            for (int j = 0; j < x.Count && !dominated; j++)
            {
                if (j == i) continue;
                bool xAsGood = maximizeX ? x[j] >= x[i] : x[j] <= x[i];
                bool xBetter = maximizeX ? x[j] > x[i] : x[j] < x[i];
                dominated = xAsGood && y[j] <= y[i] && (xBetter || y[j] < y[i]);
            }
            if (!dominated) keep.Add(i);
        }
        keep.Sort((a, b) => x[a].CompareTo(x[b]));
        return keep;
    }
}
