using System.Text.Json;
using ModelSmith.Registry;
using ModelSmith.Training;
using ModelSmith.Training.Data;

namespace ModelSmith.Cli.Commands;

/// <summary>Registers what `smith pretrain`, `smith finetune` and `smith merge` wrote, with its lineage.</summary>
internal static class TrainingRegistration
{
    /// <summary>
    /// Registers <paramref name="outcome"/>'s model in the workspace at <paramref name="workspaceRoot"/>: a base model
    /// for pretraining, a fine-tuned one (its parent registered first when unknown) otherwise, with the transform, its
    /// parameters and the fingerprint of <paramref name="data"/>. A registry that cannot be written is a warning.
    /// </summary>
    public static ModelVariant? Register(string workspaceRoot, TrainingOutcome outcome, TrainingData? data, bool quiet)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        ModelVariant? variant = WorkspaceOption.Record(() =>
        {
            Workspace workspace = Workspace.Open(workspaceRoot);
            var parents = new List<string>();
            if (outcome.ParentPath != null) parents.Add(WorkspaceOption.VariantOf(workspace, outcome.ParentPath).Id);
            var fingerprints = new List<DataFingerprint>();
            if (data != null)
            {
                string names = string.Join("+", data.Files.Select(f => f.Name));
                fingerprints.Add(new DataFingerprint(names, data.Fingerprint, data.Train.TokenCount));
            }
            return workspace.Register(new ModelRegistration
            {
                Path = outcome.OutputPath,
                Kind = outcome.ParentPath == null ? VariantKind.Base : VariantKind.FineTuned,
                Parents = parents,
                Transformation = outcome.Transform,
                TransformParameters = JsonSerializer.Serialize(outcome.Parameters),
                Data = fingerprints,
            });
        });
        if (variant != null && !quiet)
            Console.WriteLine($"registered as {variant.Id} ({variant.KindName}) in {workspaceRoot}");
        return variant;
    }
}
