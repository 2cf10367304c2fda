using System.CommandLine;
using ModelSmith.Registry;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith lineage [ID]`: the base → fine-tuned → quantized trees of the workspace.</summary>
internal static class LineageCommand
{
    public static Command Create()
    {
        var id = new Argument<string?>("id") { Description = "A variant (id, name or file): show its ancestors and descendants. Default: the whole workspace.", Arity = ArgumentArity.ZeroOrOne };
        var workspace = WorkspaceOption.Create();
        var command = new Command("lineage", """
            Draw the lineage: each base model with the variants made from it, left to right.

              stories (3f2a9c1b0d4e) ─┬→ stories-tuned (9b1c...) ─→ stories-tuned-q4_k_m (77d0...)
                                      └→ stories-q8_0 (a41e...)

            Examples:
              smith lineage
              smith lineage stories-tuned

            Exit codes: 0 ok, 1 the registry cannot be read or the variant is unknown.
            """)
        {
            id, workspace,
        };
        command.SetAction(parse => Run(parse.GetValue(id), parse.GetValue(workspace)));
        return command;
    }

    private static int Run(string? id, string? workspacePath)
    {
        Workspace workspace = Workspace.Open(workspacePath);
        IReadOnlyList<LineageNode> roots = workspace.Lineage(id);
        if (roots.Count == 0)
        {
            Console.WriteLine($"No variants registered in {workspace.Root}; 'smith add FILE' registers one.");
            return Program.Ok;
        }
        foreach (string line in Render(roots)) Console.WriteLine(line);
        return Program.Ok;
    }

    /// <summary>The trees as text: a single child follows its parent after " ─→ ", several fan out with ┬ ├ └.</summary>
    public static List<string> Render(IReadOnlyList<LineageNode> roots)
    {
        var lines = new List<string>();
        foreach (LineageNode root in roots) lines.AddRange(Render(root));
        return lines;
    }

    private static List<string> Render(LineageNode node)
    {
        ModelVariant v = node.Variant;
        string label = $"{v.Name} ({v.Id}, {v.KindName}{(v.TypeSummary != null ? ", " + v.TypeSummary : "")}{(v.Status == VariantStatus.Present ? "" : ", " + v.Status.ToString().ToLowerInvariant())})";
        var lines = new List<string>();
        if (node.Children.Count == 0)
        {
            lines.Add(label);
            return lines;
        }
        if (node.Children.Count == 1)
        {
            List<string> child = Render(node.Children[0]);
            lines.Add(label + " ─→ " + child[0]);
            string pad = new(' ', label.Length + 4);
            for (int i = 1; i < child.Count; i++) lines.Add(pad + child[i]);
            return lines;
        }
        string fork = new(' ', label.Length + 2);
        for (int c = 0; c < node.Children.Count; c++)
        {
            List<string> child = Render(node.Children[c]);
            bool last = c == node.Children.Count - 1;
            lines.Add(c == 0 ? label + " ─┬→ " + child[0] : fork + (last ? "└→ " : "├→ ") + child[0]);
            for (int i = 1; i < child.Count; i++) lines.Add(fork + (last ? "   " : "│  ") + child[i]);
        }
        return lines;
    }
}
