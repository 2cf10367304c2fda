using System.CommandLine;
using ModelSmith.Registry;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith add FILE`: register a model file in the workspace.</summary>
internal static class AddCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("file") { Description = "The model file to register (GGUF; other files are registered without a header summary)." };
        var kind = new Option<string>("--kind") { Description = "base, fine-tuned or quantized.", DefaultValueFactory = _ => "base" };
        var parent = new Option<string[]>("--parent") { Description = "Id, name or file of the variant it was made from (repeatable for merges)." };
        var name = new Option<string?>("--name") { Description = "Display name (default: the file name without extension)." };
        var copy = new Option<bool>("--copy") { Description = "Copy the file into the workspace's models/ folder and register the copy." };
        var json = new Option<bool>("--json") { Description = "Print the registered variant as JSON." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("add", """
            Register a model file in the workspace's registry: its id (the first 12 hex digits of its SHA-256),
            name, kind, parents, size and GGUF summary. Registering the same bytes again returns the same id.

            Examples:
              smith add models/stories260K.gguf --name stories
              smith add tuned.gguf --kind fine-tuned --parent stories --copy
              smith add tuned-q4.gguf --kind quantized --parent 3f2a9c1b0d4e --workspace ~/lab

            Exit codes: 0 registered, 1 the file or registry cannot be used, 2 bad usage.
            """)
        {
            file, kind, parent, name, copy, json, workspace,
        };
        command.SetAction(parse => Run(parse.GetValue(file)!, parse.GetValue(kind)!, parse.GetValue(parent) ?? [], parse.GetValue(name),
            parse.GetValue(copy), parse.GetValue(json), parse.GetValue(workspace)));
        return command;
    }

    private static int Run(FileInfo file, string kindText, string[] parents, string? name, bool copy, bool json, string? workspacePath)
    {
        VariantKind kind = VariantKinds.Parse(kindText) ?? throw new UsageException($"--kind '{kindText}' is not a kind; use base, fine-tuned or quantized.");
        if (kind != VariantKind.Base && parents.Length == 0)
            Console.Error.WriteLine($"warning: a {VariantKinds.Name(kind)} model without --parent has no lineage; add --parent ID to link it.");
        if (Directory.Exists(file.FullName)) throw new UsageException($"'{file.FullName}' is a folder; give a model file (a .gguf or .safetensors file).");
        if (!file.Exists) throw new FileNotFoundException($"'{file.FullName}' does not exist.", file.FullName);
        Workspace workspace = Workspace.Open(workspacePath);
        ModelVariant v = workspace.Register(new ModelRegistration
        {
            Path = file.FullName,
            Kind = kind,
            Name = name,
            Parents = parents,
            Copy = copy,
        });
        if (json)
        {
            RegistryJson.ToStdout(w =>
            {
                w.WriteStartObject();
                RegistryJson.WriteVariant(w, v);
                w.WriteEndObject();
            });
            return Program.Ok;
        }
        AnsiConsole.MarkupLine(Markup.Escape($"{v.Id}  {v.Name}  ({v.KindName}, {v.TypeSummary ?? "?"}, {Units.Bytes(v.Size)}) in {workspace.Root}"));
        return Program.Ok;
    }
}
