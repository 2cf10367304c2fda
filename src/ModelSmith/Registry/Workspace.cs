using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using ModelSmith.Formats;

namespace ModelSmith.Registry;

/// <summary>
/// A folder holding model files (models/) and the registry (registry.db): every variant with its lineage, and
/// every evaluation and benchmark run on it. Each call opens its own connection and writes in one transaction,
/// so several commands may use one workspace at once. A Workspace object holds no open resources.
/// </summary>
public sealed class Workspace
{
    /// <summary>The environment variable that names the workspace folder when no path is given.</summary>
    public const string EnvironmentVariable = "SMITH_WORKSPACE";

    /// <summary>The workspace folder used when neither a path nor <see cref="EnvironmentVariable"/> is given.</summary>
    public const string DefaultFolder = ".smith";

    private Workspace(string root)
    {
        Root = root;
    }

    /// <summary>The workspace folder (absolute).</summary>
    public string Root { get; }

    /// <summary>Where registered copies of model files live.</summary>
    public string ModelsDirectory => Path.Combine(Root, "models");

    /// <summary>The SQLite registry file.</summary>
    public string DatabasePath => Path.Combine(Root, "registry.db");

    /// <summary>The folder a workspace would use: <paramref name="path"/>, else $SMITH_WORKSPACE, else ./.smith.</summary>
    public static string ResolveRoot(string? path)
    {
        if (string.IsNullOrWhiteSpace(path)) path = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(path)) path = DefaultFolder;
        return Path.GetFullPath(path);
    }

    /// <summary>
    /// Opens the workspace at <paramref name="path"/> (see <see cref="ResolveRoot"/>), creating the folder and the
    /// registry if they do not exist and migrating an older schema. A file that is not a registry database
    /// throws <see cref="RegistryException"/> naming it.
    /// </summary>
    public static Workspace Open(string? path = null)
    {
        var workspace = new Workspace(ResolveRoot(path));
        if (File.Exists(workspace.Root))
            throw new RegistryException($"{workspace.Root}: is a file; a workspace is a folder. Give another --workspace (or set {EnvironmentVariable}).");
        Directory.CreateDirectory(workspace.ModelsDirectory);
        workspace.Use(connection =>
        {
            RegistryDatabase.Migrate(connection, workspace.DatabasePath);
            return 0;
        });
        return workspace;
    }

    /// <summary>
    /// Registers a model file: hashes it, reads its GGUF header, and records it with its parents and how it was
    /// made. A file whose bytes are already registered returns the existing variant (filling in parents and
    /// transformation if it had none, and its new path if the old one is gone). With
    /// <see cref="ModelRegistration.Copy"/> the file is first copied into <see cref="ModelsDirectory"/>.
    /// </summary>
    public ModelVariant Register(ModelRegistration registration)
    {
        ArgumentNullException.ThrowIfNull(registration);
        string source = Path.GetFullPath(registration.Path);
        if (Directory.Exists(source)) throw new ArgumentException($"'{source}' is a folder; register a model file (a .gguf or .safetensors file).", nameof(registration));
        if (!File.Exists(source)) throw new FileNotFoundException($"'{source}' does not exist; give the model file to register.", source);
        string parameters = NormalizeParameters(registration.TransformParameters);
        string sha = FileHash.Sha256(source);
        long size = new FileInfo(source).Length;
        ModelFileSummary summary = ModelFileSummary.Read(source);
        string path = source;
        if (registration.Copy && !IsInside(source, ModelsDirectory))
        {
            path = CopyIntoModels(source, sha);
        }
        string name = string.IsNullOrWhiteSpace(registration.Name) ? Path.GetFileNameWithoutExtension(source) : registration.Name.Trim();

        return Write(transaction =>
        {
            var connection = transaction.Connection!;
            var parents = new List<string>();
            foreach (string p in registration.Parents)
            {
                ModelVariant parent = FindIn(connection, transaction, p)
                    ?? throw new RegistryException($"{DatabasePath}: parent '{p}' is not registered; register it first (smith add FILE) or give its id from 'smith list'.");
                if (parent.Sha256 == sha) throw new RegistryException($"'{source}' cannot be its own parent ('{p}' is the same file).");
                if (!parents.Contains(parent.Id)) parents.Add(parent.Id);
            }

            ModelVariant? existing = ReadVariants(connection, transaction, "WHERE v.sha256 = $a", sha).FirstOrDefault();
            if (existing != null)
            {
                if (existing.Status == VariantStatus.Missing || (existing.Status == VariantStatus.Changed && path != existing.Path))
                    Command(connection, transaction, "UPDATE variants SET path = $a WHERE id = $b", StoredPath(path), existing.Id).ExecuteNonQuery();
                if (existing.Parents.Count == 0 && parents.Count > 0)
                {
                    Command(connection, transaction, "UPDATE variants SET kind = $a, transformation = $b, parameters = $c WHERE id = $d",
                        KindText(registration.Kind), registration.Transformation, parameters, existing.Id).ExecuteNonQuery();
                    InsertParentsAndData(connection, transaction, existing.Id, parents, existing.Data.Count == 0 ? registration.Data : []);
                }
                if (!string.IsNullOrWhiteSpace(registration.Name) && name != existing.Name)
                    Command(connection, transaction, "UPDATE variants SET name = $a WHERE id = $b", name, existing.Id).ExecuteNonQuery();
                return ReadVariants(connection, transaction, "WHERE v.id = $a", existing.Id)[0];
            }

            string id = NewId(connection, transaction, sha);
            Command(connection, transaction, """
                INSERT INTO variants (id, name, kind, transformation, parameters, path, sha256, size, architecture, parameter_count, type_summary, created)
                VALUES ($a, $b, $c, $d, $e, $f, $g, $h, $i, $j, $k, $l)
                """,
                id, name, KindText(registration.Kind), registration.Transformation, parameters, StoredPath(path), sha, size,
                summary.Architecture, summary.ParameterCount, summary.TypeSummary, Now()).ExecuteNonQuery();
            InsertParentsAndData(connection, transaction, id, parents, registration.Data);
            return ReadVariants(connection, transaction, "WHERE v.id = $a", id)[0];
        });
    }

    /// <summary>
    /// Finds a variant by id, unique id prefix (4+ characters), name, or the path of a registered file (or a
    /// file with the same bytes). Null when nothing matches; <see cref="RegistryException"/> when a name or
    /// prefix matches several.
    /// </summary>
    public ModelVariant? Find(string idOrNameOrPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(idOrNameOrPath);
        return Use(connection => FindIn(connection, null, idOrNameOrPath));
    }

    /// <summary>Like <see cref="Find"/>, but an unknown variant throws <see cref="RegistryException"/> saying how to list them.</summary>
    public ModelVariant Get(string idOrNameOrPath) => Find(idOrNameOrPath)
        ?? throw new RegistryException($"'{idOrNameOrPath}' is not a registered variant in {Root}; 'smith list' shows ids and names, 'smith add FILE' registers a file.");

    /// <summary>Every variant, oldest first.</summary>
    public IReadOnlyList<ModelVariant> List() => Use(connection => ReadVariants(connection, null, "", null));

    /// <summary>The variants made directly from <paramref name="id"/>.</summary>
    public IReadOnlyList<ModelVariant> Children(string id) =>
        Use(connection => ReadVariants(connection, null, "WHERE v.id IN (SELECT child FROM variant_parents WHERE parent = $a)", id));

    /// <summary>
    /// The lineage as trees from the roots (variants without parents). With <paramref name="id"/>, only the
    /// variant, its ancestors and its descendants; without, the whole workspace. A variant with several parents
    /// appears under each of them.
    /// </summary>
    public IReadOnlyList<LineageNode> Lineage(string? id = null)
    {
        IReadOnlyList<ModelVariant> all = List();
        var byId = all.ToDictionary(v => v.Id, StringComparer.Ordinal);
        var children = new Dictionary<string, List<ModelVariant>>(StringComparer.Ordinal);
        foreach (ModelVariant v in all)
        {
            foreach (string p in v.Parents)
            {
                if (!children.TryGetValue(p, out var list)) children[p] = list = [];
                list.Add(v);
            }
        }
        HashSet<string>? keep = null;
        if (id != null)
        {
            ModelVariant target = Get(id);
            keep = new HashSet<string>(StringComparer.Ordinal);
            var up = new Stack<string>([target.Id]);
            while (up.Count > 0)
            {
                string v = up.Pop();
                if (!keep.Add(v)) continue;
                foreach (string p in byId[v].Parents) up.Push(p);
            }
            var down = new Stack<string>(children.GetValueOrDefault(target.Id)?.Select(c => c.Id) ?? []);
            while (down.Count > 0)
            {
                string v = down.Pop();
                if (!keep.Add(v)) continue;
                foreach (ModelVariant c in children.GetValueOrDefault(v) ?? []) down.Push(c.Id);
            }
        }

        LineageNode Build(ModelVariant v) => new(v,
            (children.GetValueOrDefault(v.Id) ?? []).Where(c => keep == null || keep.Contains(c.Id)).Select(Build).ToList());

        return all.Where(v => v.Parents.Count == 0 && (keep == null || keep.Contains(v.Id))).Select(Build).ToList();
    }

    /// <summary>Records an evaluation of <paramref name="variantId"/> (an id, name or path) and returns it as stored.</summary>
    public EvalResult RecordEval(string variantId, EvalResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return Write(transaction =>
        {
            var connection = transaction.Connection!;
            string id = RequireIn(connection, transaction, variantId).Id;
            string? reference = result.ReferenceId == null ? null : RequireIn(connection, transaction, result.ReferenceId).Id;
            long machine = MachineId(connection, transaction, result.Machine ?? MachineInfo.Current());
            DateTimeOffset recorded = result.Recorded ?? DateTimeOffset.UtcNow;
            long row = (long)Command(connection, transaction, """
                INSERT INTO evals (variant, dataset, data_sha256, data_tokens, context, perplexity, perplexity_error, scored_tokens,
                                   mean_kld, same_top1, reference, accuracy, accuracy_norm, machine, recorded)
                VALUES ($a, $b, $c, $d, $e, $f, $g, $h, $i, $j, $k, $l, $m, $n, $o) RETURNING id
                """,
                id, result.Data.Name, result.Data.Sha256, result.Data.Tokens, result.Context, result.Perplexity, result.PerplexityError,
                result.ScoredTokens, result.MeanKld, result.SameTop1, reference, result.Accuracy, result.AccuracyNorm, machine,
                Time(recorded)).ExecuteScalar()!;
            return ReadEvals(connection, transaction, "WHERE e.id = $a", row)[0];
        });
    }

    /// <summary>Records a benchmark of <paramref name="variantId"/> (an id, name or path) and returns it as stored.</summary>
    public BenchResult RecordBench(string variantId, BenchResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return Write(transaction =>
        {
            var connection = transaction.Connection!;
            string id = RequireIn(connection, transaction, variantId).Id;
            long machine = MachineId(connection, transaction, result.Machine ?? MachineInfo.Current());
            DateTimeOffset recorded = result.Recorded ?? DateTimeOffset.UtcNow;
            long row = (long)Command(connection, transaction, """
                INSERT INTO benches (variant, prompt_tokens, pp_tps, pp_sd, gen_tokens, tg_tps, tg_sd, load_seconds, peak_rss, threads,
                                     repetitions, machine, recorded)
                VALUES ($a, $b, $c, $d, $e, $f, $g, $h, $i, $j, $k, $l, $m) RETURNING id
                """,
                id, result.PromptTokens, result.PrefillTokensPerSecond, result.PrefillStdDev, result.GeneratedTokens,
                result.DecodeTokensPerSecond, result.DecodeStdDev, result.LoadSeconds, result.PeakResidentBytes, result.Threads,
                result.Repetitions, machine, Time(recorded)).ExecuteScalar()!;
            return ReadBenches(connection, transaction, "WHERE b.id = $a", row)[0];
        });
    }

    /// <summary>Every evaluation of a variant (id, name or path), oldest first; all variants' when null.</summary>
    public IReadOnlyList<EvalResult> Evals(string? variantId = null) => Use(connection => variantId == null
        ? ReadEvals(connection, null, "", null)
        : ReadEvals(connection, null, "WHERE e.variant = $a", RequireIn(connection, null, variantId).Id));

    /// <summary>Every benchmark of a variant (id, name or path), oldest first; all variants' when null.</summary>
    public IReadOnlyList<BenchResult> Benches(string? variantId = null) => Use(connection => variantId == null
        ? ReadBenches(connection, null, "", null)
        : ReadBenches(connection, null, "WHERE b.variant = $a", RequireIn(connection, null, variantId).Id));

    // ---- connections -------------------------------------------------------------------------------------

    /// <summary>Runs <paramref name="work"/> on a fresh connection; SQLite failures become RegistryException naming the file.</summary>
    private T Use<T>(Func<SqliteConnection, T> work)
    {
        try
        {
            using SqliteConnection connection = RegistryDatabase.Connect(DatabasePath);
            return work(connection);
        }
        catch (SqliteException e)
        {
            throw Explain(e);
        }
    }

    /// <summary>Runs <paramref name="work"/> in a BEGIN IMMEDIATE transaction and commits it.</summary>
    private T Write<T>(Func<SqliteTransaction, T> work) => Use(connection =>
    {
        using SqliteTransaction transaction = connection.BeginTransaction(deferred: false);
        T result = work(transaction);
        transaction.Commit();
        return result;
    });

    private RegistryException Explain(SqliteException e) => e.SqliteErrorCode switch
    {
        26 or 11 => new RegistryException($"{DatabasePath}: is not a readable registry database ({e.Message}). Move it aside to start a new registry, or give another --workspace.", e),
        5 or 6 => new RegistryException($"{DatabasePath}: the registry stayed locked by another smith process for {RegistryDatabase.BusySeconds} s ({e.Message}); try again when it finishes.", e),
        _ => new RegistryException($"{DatabasePath}: {e.Message}", e),
    };

    private static SqliteCommand Command(SqliteConnection connection, SqliteTransaction? transaction, string sql, params object?[] values)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        for (int i = 0; i < values.Length; i++)
        {
            command.Parameters.AddWithValue("$" + (char)('a' + i), values[i] ?? DBNull.Value);
        }
        return command;
    }

    // ---- variants ----------------------------------------------------------------------------------------

    private ModelVariant RequireIn(SqliteConnection connection, SqliteTransaction? transaction, string text) =>
        FindIn(connection, transaction, text)
        ?? throw new RegistryException($"'{text}' is not a registered variant in {Root}; 'smith list' shows ids and names, 'smith add FILE' registers a file.");

    private ModelVariant? FindIn(SqliteConnection connection, SqliteTransaction? transaction, string text)
    {
        string key = text.Trim();
        var byId = ReadVariants(connection, transaction, "WHERE v.id = $a", key.ToLowerInvariant());
        if (byId.Count == 1) return byId[0];
        var byName = ReadVariants(connection, transaction, "WHERE v.name = $a", key);
        if (byName.Count == 1) return byName[0];
        if (byName.Count > 1)
            throw new RegistryException($"the name '{key}' fits {byName.Count} variants ({string.Join(", ", byName.Select(v => v.Id))}); give an id instead.");
        if (File.Exists(key))
        {
            string full = Path.GetFullPath(key);
            // The latest variant registered at this path is the one whose bytes are there now.
            var byPath = ReadVariants(connection, transaction, "WHERE v.path = $a", StoredPath(full));
            if (byPath.Count > 0 && byPath[^1].Status == VariantStatus.Present) return byPath[^1];
            var bySha = ReadVariants(connection, transaction, "WHERE v.sha256 = $a", FileHash.Sha256(full));
            if (bySha.Count == 1) return bySha[0];
        }
        if (key.Length >= 4 && key.All(char.IsAsciiHexDigit))
        {
            var byPrefix = ReadVariants(connection, transaction, "WHERE v.id LIKE $a", key.ToLowerInvariant() + "%");
            if (byPrefix.Count == 1) return byPrefix[0];
            if (byPrefix.Count > 1)
                throw new RegistryException($"the id prefix '{key}' fits {byPrefix.Count} variants ({string.Join(", ", byPrefix.Select(v => v.Id))}); give more digits.");
        }
        return null;
    }

    private List<ModelVariant> ReadVariants(SqliteConnection connection, SqliteTransaction? transaction, string where, object? value)
    {
        var rows = new List<(string Id, string Name, string Kind, string? Transformation, string Parameters, string Path, string Sha, long Size,
            string? Architecture, long Parameters2, string? Type, string Created)>();
        using (var command = Command(connection, transaction,
            $"SELECT v.id, v.name, v.kind, v.transformation, v.parameters, v.path, v.sha256, v.size, v.architecture, v.parameter_count, v.type_summary, v.created FROM variants v {where} ORDER BY v.created, v.rowid",
            value == null ? [] : [value]))
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read())
            {
                rows.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3),
                    reader.GetString(4), reader.GetString(5), reader.GetString(6), reader.GetInt64(7), reader.IsDBNull(8) ? null : reader.GetString(8),
                    reader.GetInt64(9), reader.IsDBNull(10) ? null : reader.GetString(10), reader.GetString(11)));
            }
        }
        var variants = new List<ModelVariant>(rows.Count);
        foreach (var r in rows)
        {
            var parents = new List<string>();
            using (var command = Command(connection, transaction, "SELECT parent FROM variant_parents WHERE child = $a ORDER BY position", r.Id))
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read()) parents.Add(reader.GetString(0));
            }
            var data = new List<DataFingerprint>();
            using (var command = Command(connection, transaction, "SELECT name, sha256, tokens FROM variant_data WHERE variant = $a ORDER BY position", r.Id))
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read()) data.Add(new DataFingerprint(reader.GetString(0), reader.GetString(1), reader.GetInt64(2)));
            }
            string path = FullPath(r.Path);
            VariantStatus status = StatusOf(path, r.Size);
            // A later registration at the same path means the file was overwritten by another variant's bytes.
            if (status == VariantStatus.Present
                && Command(connection, transaction, "SELECT count(*) FROM variants WHERE path = $a AND sha256 <> $b AND created > $c", r.Path, r.Sha, r.Created).ExecuteScalar() is > 0L)
            {
                status = VariantStatus.Changed;
            }
            variants.Add(new ModelVariant
            {
                Id = r.Id,
                Name = r.Name,
                Kind = VariantKinds.Parse(r.Kind) ?? throw new RegistryException($"{DatabasePath}: variant {r.Id} has kind '{r.Kind}', which this smith does not know."),
                Parents = parents,
                Transformation = r.Transformation,
                TransformParameters = r.Parameters,
                Data = data,
                Path = path,
                Sha256 = r.Sha,
                Size = r.Size,
                Architecture = r.Architecture,
                ParameterCount = r.Parameters2,
                TypeSummary = r.Type,
                Created = ParseTime(r.Created),
                Status = status,
            });
        }
        return variants;
    }

    private static VariantStatus StatusOf(string path, long size)
    {
        var file = new FileInfo(path);
        if (!file.Exists) return VariantStatus.Missing;
        return file.Length == size ? VariantStatus.Present : VariantStatus.Changed;
    }

    private static void InsertParentsAndData(SqliteConnection connection, SqliteTransaction transaction, string id, List<string> parents, IReadOnlyList<DataFingerprint> data)
    {
        for (int i = 0; i < parents.Count; i++)
            Command(connection, transaction, "INSERT OR IGNORE INTO variant_parents (child, parent, position) VALUES ($a, $b, $c)", id, parents[i], i).ExecuteNonQuery();
        for (int i = 0; i < data.Count; i++)
            Command(connection, transaction, "INSERT OR REPLACE INTO variant_data (variant, position, name, sha256, tokens) VALUES ($a, $b, $c, $d, $e)",
                id, i, data[i].Name, data[i].Sha256, data[i].Tokens).ExecuteNonQuery();
    }

    /// <summary>The first 12 hex digits of the hash; longer only in the (unlikely) case another file has that prefix.</summary>
    private static string NewId(SqliteConnection connection, SqliteTransaction transaction, string sha)
    {
        for (int length = 12; length < sha.Length; length += 4)
        {
            string id = sha[..length];
            if (Command(connection, transaction, "SELECT count(*) FROM variants WHERE id = $a", id).ExecuteScalar() is 0L) return id;
        }
        return sha;
    }

    private string CopyIntoModels(string source, string sha)
    {
        string target = Path.Combine(ModelsDirectory, Path.GetFileName(source));
        if (File.Exists(target))
        {
            if (FileHash.Sha256(target) == sha) return target;
            target = Path.Combine(ModelsDirectory, $"{sha[..12]}-{Path.GetFileName(source)}");
            if (File.Exists(target)) return target;
        }
        AtomicFile.Write(target, output =>
        {
            using var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
            input.CopyTo(output, 1 << 20);
        });
        return target;
    }

    /// <summary>Files inside the workspace are stored relative to it, so the workspace can be moved.</summary>
    private string StoredPath(string full) => IsInside(full, Root) ? Path.GetRelativePath(Root, full) : full;

    private string FullPath(string stored) => Path.IsPathRooted(stored) ? stored : Path.GetFullPath(Path.Combine(Root, stored));

    private static bool IsInside(string path, string folder)
    {
        string relative = Path.GetRelativePath(folder, path);
        return !relative.StartsWith("..", StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }

    private static string NormalizeParameters(string? json)
    {
        if (string.IsNullOrWhiteSpace(json)) return "{}";
        try
        {
            using JsonDocument document = JsonDocument.Parse(json);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ArgumentException($"Transform parameters must be a JSON object, not {document.RootElement.ValueKind}: {json}", nameof(json));
            return document.RootElement.GetRawText();
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"Transform parameters are not valid JSON ({e.Message}): {json}", nameof(json), e);
        }
    }

    private static string KindText(VariantKind kind) => VariantKinds.Name(kind);

    private static string Now() => Time(DateTimeOffset.UtcNow);

    private static string Time(DateTimeOffset t) => t.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    private static DateTimeOffset ParseTime(string text) => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);

    // ---- results -----------------------------------------------------------------------------------------

    private static long MachineId(SqliteConnection connection, SqliteTransaction transaction, MachineInfo m)
    {
        Command(connection, transaction, "INSERT OR IGNORE INTO machines (hostname, cpu, cores, os) VALUES ($a, $b, $c, $d)", m.Hostname, m.Cpu, m.Cores, m.Os).ExecuteNonQuery();
        return (long)Command(connection, transaction, "SELECT id FROM machines WHERE hostname = $a AND cpu = $b AND cores = $c AND os = $d", m.Hostname, m.Cpu, m.Cores, m.Os).ExecuteScalar()!;
    }

    private static double? Real(SqliteDataReader reader, int i) => reader.IsDBNull(i) ? null : reader.GetDouble(i);

    private static MachineInfo Machine(SqliteDataReader reader, int first) =>
        new(reader.GetString(first), reader.GetString(first + 1), reader.GetInt32(first + 2), reader.GetString(first + 3));

    private static List<EvalResult> ReadEvals(SqliteConnection connection, SqliteTransaction? transaction, string where, object? value)
    {
        using var command = Command(connection, transaction, $"""
            SELECT e.id, e.variant, e.dataset, e.data_sha256, e.data_tokens, e.context, e.perplexity, e.perplexity_error, e.scored_tokens,
                   e.mean_kld, e.same_top1, e.reference, e.accuracy, e.accuracy_norm, e.recorded, m.hostname, m.cpu, m.cores, m.os
            FROM evals e JOIN machines m ON m.id = e.machine {where} ORDER BY e.id
            """, value == null ? [] : [value]);
        using var reader = command.ExecuteReader();
        var results = new List<EvalResult>();
        while (reader.Read())
        {
            results.Add(new EvalResult
            {
                Id = reader.GetInt64(0),
                VariantId = reader.GetString(1),
                Data = new DataFingerprint(reader.GetString(2), reader.GetString(3), reader.GetInt64(4)),
                Context = reader.GetInt32(5),
                Perplexity = Real(reader, 6),
                PerplexityError = Real(reader, 7),
                ScoredTokens = reader.GetInt64(8),
                MeanKld = Real(reader, 9),
                SameTop1 = Real(reader, 10),
                ReferenceId = reader.IsDBNull(11) ? null : reader.GetString(11),
                Accuracy = Real(reader, 12),
                AccuracyNorm = Real(reader, 13),
                Recorded = ParseTime(reader.GetString(14)),
                Machine = Machine(reader, 15),
            });
        }
        return results;
    }

    private static List<BenchResult> ReadBenches(SqliteConnection connection, SqliteTransaction? transaction, string where, object? value)
    {
        using var command = Command(connection, transaction, $"""
            SELECT b.id, b.variant, b.prompt_tokens, b.pp_tps, b.pp_sd, b.gen_tokens, b.tg_tps, b.tg_sd, b.load_seconds, b.peak_rss,
                   b.threads, b.repetitions, b.recorded, m.hostname, m.cpu, m.cores, m.os
            FROM benches b JOIN machines m ON m.id = b.machine {where} ORDER BY b.id
            """, value == null ? [] : [value]);
        using var reader = command.ExecuteReader();
        var results = new List<BenchResult>();
        while (reader.Read())
        {
            results.Add(new BenchResult
            {
                Id = reader.GetInt64(0),
                VariantId = reader.GetString(1),
                PromptTokens = reader.GetInt32(2),
                PrefillTokensPerSecond = Real(reader, 3),
                PrefillStdDev = Real(reader, 4),
                GeneratedTokens = reader.GetInt32(5),
                DecodeTokensPerSecond = Real(reader, 6),
                DecodeStdDev = Real(reader, 7),
                LoadSeconds = reader.GetDouble(8),
                PeakResidentBytes = reader.GetInt64(9),
                Threads = reader.GetInt32(10),
                Repetitions = reader.GetInt32(11),
                Recorded = ParseTime(reader.GetString(12)),
                Machine = Machine(reader, 13),
            });
        }
        return results;
    }
}
