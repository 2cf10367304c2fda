using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using ModelSmith.Selection;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith estimate`: memory and decode speed of a model, a quantized variant of it, or a model described by numbers.</summary>
internal static class EstimateCommand
{
    public static Command Create()
    {
        var model = new Argument<string?>("model") { Description = "A GGUF model, or a Hugging Face config.json (or the folder holding it). Omit to describe the model with --params and friends.", Arity = ArgumentArity.ZeroOrOne };
        var type = new Option<string?>("--type", "-t") { Description = "Estimate the model quantized to this file type (q4_k_m, q8_0, f16 ...), with llama.cpp's per-tensor mix." };
        var ctx = new Option<int?>("--ctx", "-c") { Description = "KV cache positions (default: the model's training context; 4096 with --params)." };
        var parameters = new Option<string?>("--params") { Description = "Parameter count, e.g. 8B, 1.1B, 260K (with --layers, --kv-heads, --head-dim)." };
        var layers = new Option<int?>("--layers") { Description = "Transformer blocks (with --params)." };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "Key/value heads (with --params)." };
        var headDim = new Option<int?>("--head-dim") { Description = "Size of one attention head (with --params)." };
        var vocab = new Option<int>("--vocab") { Description = "Vocabulary size (with --params).", DefaultValueFactory = _ => 32000 };
        var threads = new Option<int>("--threads") { Description = "Threads the model will run on (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var noSpeed = new Option<bool>("--no-speed") { Description = "Estimate memory only (skips measuring this machine when it has no cached profile)." };
        var remeasure = new Option<bool>("--remeasure") { Description = "Measure this machine again instead of using the cached profile." };
        var noRefresh = new Option<bool>("--no-refresh") { Description = "Use the cached profile as it is instead of measuring the model's rates and the fixed costs again (with several threads, about 4 s)." };
        var machineFile = new Option<string?>("--machine") { Description = $"The machine profile file (default {MachineProfile.DefaultCachePath()}); measured and written when missing." };
        var json = new Option<bool>("--json") { Description = "Print the estimate as JSON." };
        var command = new Command("estimate", $"""
            Estimate the peak memory and decode speed of running a model, before you have it.

            Memory = weights + KV cache + compute buffers + runtime:
              weights   the GGUF file's exact bytes (it is memory-mapped and read whole), or params × bits per
                        weight of the type with llama.cpp's mix (q4_k_m keeps output, half of attn_v/ffn_down in Q6_K)
              KV cache  2 · layers · ctx · kv-heads · head-dim · 4 bytes (the engine caches F32)
              compute   activations for a batch of min(256, ctx) tokens, vocab logits, packed matmul inputs,
                        per-thread scratch, RoPE table
              runtime   {ResourceEstimator.RuntimeBaselineBytes >> 20} MiB, the measured resident size of the .NET process itself
            Decode speed, one step at position p:
              t(p) = Σ_matrices (bytes / R_type(W) + c_type) + (KV bytes at p) / BW + t_token + t_layer · layers
            with W the weight bytes a step reads and R_type(W) the measured rate at which each type's decode kernel
            streams a working set of W bytes: measured at 512 KiB, 2, 8, 32, 64 and 256 MiB (a small model's weights
            stay in the caches and stream faster than a large one's from memory) and interpolated in log W, times
            the share of it a whole memory-mapped model reaches (also measured); BW this machine's stream-read
            bandwidth, t_token, t_layer the measured fixed cost of a step (two tiny F32 models),
            and c_type the fixed cost one matmul of that type adds beyond F32's (quantizing its input, the kernel's
            setup; measured on a width-256 model in that type, and negative where it corrects in-cache rates
            measured low). The fixed terms are what limits tiny models.
            Tokens/s is reported for 128 tokens from an empty cache, in the steady state the runtime reaches once it
            has recompiled the hot code (as `smith bench` measures after its warm-up), and for one token with the
            cache full. The machine is measured once per thread count (about 17 s on 2 cores; the rates keep each
            probe's fastest repetition, as other processes only slow a stream down, and the fixed-cost probes their
            median) and the result kept in {MachineProfile.DefaultCachePath()} ($MODELSMITH_CACHE or --machine move it).
            With several threads, the rates of the model's types and the fixed terms are measured again on every run
            unless the profile is under a minute old (about 4 s; --no-refresh skips it): the fixed terms are mostly the threads handing work to each other, and
            both they and the compute-bound kernels' rates change by 1.5-3x from minute to minute when the operating
            system or, on a cloud VM, the host moves the threads between cores.

            Examples:
              smith estimate model.gguf
              smith estimate model-f32.gguf --type q4_k_m --ctx 8192
              smith estimate Llama-3-8B/config.json --type q4_k_m --ctx 8192
              smith estimate --params 8B --type q4_k_m --ctx 8192 --layers 32 --kv-heads 8 --head-dim 128 --vocab 128256
              smith estimate model.gguf --json

            Exit codes: 0 done, 1 the model cannot be read (the message says why), 2 bad usage.
            """)
        {
            model, type, ctx, parameters, layers, kvHeads, headDim, vocab, threads, noSpeed, remeasure, noRefresh, machineFile, json,
        };
        command.SetAction(parse =>
        {
            var request = new EstimateRequest(
                parse.GetValue(model), parse.GetValue(type), parse.GetValue(ctx), parse.GetValue(parameters), parse.GetValue(layers),
                parse.GetValue(kvHeads), parse.GetValue(headDim), parse.GetValue(vocab));
            int threadCount = parse.GetValue(threads);
            if (threadCount < 1) throw new UsageException($"--threads {threadCount} must be at least 1.");
            ResourceEstimate estimate = Estimate(request, threadCount, !parse.GetValue(noSpeed), parse.GetValue(remeasure), !parse.GetValue(noRefresh), parse.GetValue(machineFile), out MachineProfile? machine);
            if (parse.GetValue(json)) WriteJson(estimate, machine);
            else WriteTable(estimate, machine);
            return Program.Ok;
        });
        return command;
    }

    /// <summary>What the user described on the command line.</summary>
    internal sealed record EstimateRequest(string? Model, string? Type, int? Context, string? Parameters, int? Layers, int? KvHeads, int? HeadDim, int Vocab);

    /// <summary>Resolves the request into a shape and estimates it (measuring the machine unless <paramref name="speed"/> is false).</summary>
    internal static ResourceEstimate Estimate(EstimateRequest request, int threads, bool speed, bool remeasure, bool refresh, string? machineFile, out MachineProfile? machine)
    {
        ModelShape shape = Shape(request);
        if (request.Context is < 1) throw new UsageException($"--ctx {request.Context} must be at least 1.");
        int context = request.Context ?? (request.Model is null ? 4096 : shape.Config.ContextLength);
        machine = !speed ? null : remeasure ? Remeasure(threads, machineFile) : MachineProfile.LoadOrMeasure(machineFile, threads);
        if (machine != null && refresh) machine = machine.Refreshed(ResourceEstimator.MatmulTypes(shape));
        return ResourceEstimator.Estimate(shape, context, machine, threads);
    }

    private static MachineProfile Remeasure(int threads, string? machineFile)
    {
        MachineProfile profile = MachineProfile.Measure(threads);
        MachineProfile.Save(profile, machineFile ?? MachineProfile.DefaultCachePath());
        return profile;
    }

    internal static ModelShape Shape(EstimateRequest r)
    {
        QuantFileType? fileType = null;
        if (r.Type != null)
        {
            fileType = QuantFileTypes.TryParse(r.Type)
                ?? throw new UsageException($"--type '{r.Type}' is not a file type; use one of {string.Join(", ", QuantFileTypes.All.Select(t => t.ToString().ToLowerInvariant()))}.");
        }
        ModelShape shape;
        if (r.Model != null)
        {
            if (r.Parameters != null || r.Layers != null || r.KvHeads != null || r.HeadDim != null)
                throw new UsageException("give either a model file or --params/--layers/--kv-heads/--head-dim, not both.");
            string path = Path.GetFullPath(r.Model);
            bool config = Directory.Exists(path) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
            if (!config && !File.Exists(path)) throw new FileNotFoundException($"Model '{path}' does not exist.", path);
            shape = config ? ModelShape.FromHfConfig(path) : ModelShape.FromGguf(path);
        }
        else
        {
            if (r.Parameters is null)
                throw new UsageException("give a model (GGUF or config.json) or describe one with --params N --layers N --kv-heads N --head-dim N.");
            long count = Quantities.TryParseCount(r.Parameters) is long n && n > 0
                ? n
                : throw new UsageException($"--params '{r.Parameters}' is not a parameter count; write e.g. 8B, 1.1B, 350M or 260K.");
            if (r.Layers is null || r.KvHeads is null || r.HeadDim is null)
                throw new UsageException("--params needs --layers, --kv-heads and --head-dim too (the KV cache depends on them).");
            if (r.Layers < 1) throw new UsageException($"--layers {r.Layers} must be at least 1.");
            if (r.KvHeads < 1) throw new UsageException($"--kv-heads {r.KvHeads} must be at least 1.");
            if (r.HeadDim < 2 || r.HeadDim % 2 != 0) throw new UsageException($"--head-dim {r.HeadDim} must be an even number of at least 2.");
            if (r.Vocab < 1) throw new UsageException($"--vocab {r.Vocab} must be at least 1.");
            try
            {
                shape = ModelShape.FromNumbers(count, r.Layers.Value, r.KvHeads.Value, r.HeadDim.Value, r.Vocab, r.Context ?? 4096, GgmlType.F16);
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message);
            }
            fileType ??= QuantFileType.F16;
        }
        if (fileType is QuantFileType ft)
        {
            try
            {
                shape = shape.Quantized(ft);
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message);
            }
        }
        return shape;
    }

    private static void WriteTable(ResourceEstimate e, MachineProfile? machine)
    {
        ModelShape s = e.Shape;
        MemoryEstimate m = e.Memory;
        var table = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn(new TableColumn("estimate").RightAligned()).AddColumn("how");
        string Inv(FormattableString f) => f.ToString(CultureInfo.InvariantCulture);
        table.AddRow("model", Markup.Escape(s.Source), Markup.Escape(Inv($"{s.Config.ArchitectureName}, {s.Config.BlockCount} layers, C {s.Config.EmbeddingLength}, F {s.Config.FeedForwardLength}, {s.Config.HeadCount}/{s.Config.KvHeadCount} heads × {s.Config.HeadDim}, vocab {s.Config.VocabSize}")));
        table.AddRow("parameters", Units.Count(s.ParameterCount), Markup.Escape(Inv($"{s.BitsPerWeight:0.00} bits per weight, mostly {s.DominantType}")));
        table.AddRow("weights", Units.Bytes(m.Weights), s.Exact ? "file size (mapped, read whole) + F32 norms" : "tensor bytes of the type mix + metadata + F32 norms");
        table.AddRow("KV cache", Units.Bytes(m.KvCache), Markup.Escape(Inv($"2 · {s.Config.BlockCount} layers · {e.Context} ctx · {s.Config.KvHeadCount} kv-heads · {s.Config.HeadDim} · 4 B")));
        table.AddRow("compute", Units.Bytes(m.Compute), Markup.Escape(Inv($"batch {Math.Min(256, e.Context)} activations, {s.Config.VocabSize} logits, {e.Threads} threads' scratch")));
        table.AddRow("runtime", Units.Bytes(m.Runtime), ".NET process baseline");
        table.AddRow("[bold]peak memory[/]", "[bold]" + Units.Bytes(m.Total) + "[/]", "");
        if (e.Speed is SpeedEstimate sp && machine != null)
        {
            table.AddRow("read per token", Units.Bytes(sp.BytesPerToken), Markup.Escape(Inv($"at {machine.BandwidthBytesPerSecond / 1e9:0.0} GB/s measured{(sp.ComputeBound ? "; some kernels are compute-bound here" : "")}")));
            table.AddRow("[bold]decode[/]", "[bold]" + Inv($"{sp.TokensPerSecond:0.0} tok/s") + "[/]", Inv($"128 tokens from an empty cache ({e.Threads} threads)"));
            string when = machine.RefreshedUtc > machine.MeasuredUtc ? "measured now" : Inv($"measured {machine.RefreshedUtc:yyyy-MM-dd HH:mm} UTC");
            table.AddRow("decode at ctx", Inv($"{sp.TokensPerSecondAtContext:0.0} tok/s"), Markup.Escape(Inv($"one token at position {e.Context - 1}; fixed cost {sp.OverheadSeconds * 1e3:0.000} ms/token ({when})")));
        }
        AnsiConsole.Write(table);
    }

    private static void WriteJson(ResourceEstimate e, MachineProfile? machine)
    {
        using var stream = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        Write(w, e, machine);
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    /// <summary>The estimate as one JSON object (also used by `smith pick --json`).</summary>
    internal static void Write(Utf8JsonWriter w, ResourceEstimate e, MachineProfile? machine)
    {
        ModelShape s = e.Shape;
        w.WriteStartObject();
        w.WriteString("model", s.Source);
        w.WriteString("architecture", s.Config.ArchitectureName);
        w.WriteBoolean("exact_tensors", s.Exact);
        w.WriteNumber("parameters", s.ParameterCount);
        w.WriteNumber("bits_per_weight", s.BitsPerWeight);
        w.WriteString("dominant_type", s.DominantType.ToString());
        w.WriteNumber("file_bytes", s.FileBytes);
        w.WriteNumber("layers", s.Config.BlockCount);
        w.WriteNumber("embedding", s.Config.EmbeddingLength);
        w.WriteNumber("feed_forward", s.Config.FeedForwardLength);
        w.WriteNumber("heads", s.Config.HeadCount);
        w.WriteNumber("kv_heads", s.Config.KvHeadCount);
        w.WriteNumber("head_dim", s.Config.HeadDim);
        w.WriteNumber("vocab", s.Config.VocabSize);
        w.WriteNumber("ctx", e.Context);
        w.WriteNumber("threads", e.Threads);
        w.WriteStartObject("memory");
        w.WriteNumber("weights", e.Memory.Weights);
        w.WriteNumber("kv_cache", e.Memory.KvCache);
        w.WriteNumber("compute", e.Memory.Compute);
        w.WriteNumber("runtime", e.Memory.Runtime);
        w.WriteNumber("total", e.Memory.Total);
        w.WriteEndObject();
        if (e.Speed is SpeedEstimate sp && machine != null)
        {
            w.WriteStartObject("decode");
            w.WriteNumber("bytes_per_token", sp.BytesPerToken);
            w.WriteNumber("tokens_per_second", sp.TokensPerSecond);
            w.WriteNumber("tokens_per_second_at_ctx", sp.TokensPerSecondAtContext);
            w.WriteNumber("overhead_seconds", sp.OverheadSeconds);
            w.WriteString("machine_measured_utc", machine.RefreshedUtc);
            w.WriteBoolean("compute_bound", sp.ComputeBound);
            w.WriteNumber("bandwidth_bytes_per_second", machine.BandwidthBytesPerSecond);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }
}
