using Microsoft.Data.Sqlite;

namespace ModelSmith.Registry;

/// <summary>
/// The SQLite file behind a <see cref="Workspace"/>: connections, schema and migrations.
///
/// Concurrency: the database is in WAL mode (readers never block the writer), every connection waits up to
/// <see cref="BusySeconds"/> for a lock instead of failing, and every write runs in a BEGIN IMMEDIATE
/// transaction so two writers never both hold a read lock and deadlock trying to upgrade it.
/// Each operation opens its own unpooled connection, so no file handle outlives a call.
/// </summary>
internal static class RegistryDatabase
{
    public const int BusySeconds = 60;

    /// <summary>
    /// Migrations[v] takes the schema from version v to v + 1. Append a new entry to change the schema; never
    /// edit a released one. Version 0 is an empty file.
    /// </summary>
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE variants (
            id               TEXT PRIMARY KEY,
            name             TEXT NOT NULL,
            kind             TEXT NOT NULL,
            transformation   TEXT,
            parameters       TEXT NOT NULL DEFAULT '{}',
            path             TEXT NOT NULL,
            sha256           TEXT NOT NULL UNIQUE,
            size             INTEGER NOT NULL,
            architecture     TEXT,
            parameter_count  INTEGER NOT NULL DEFAULT 0,
            type_summary     TEXT,
            created          TEXT NOT NULL
        );
        CREATE INDEX variants_name ON variants(name);
        CREATE TABLE variant_parents (
            child     TEXT NOT NULL REFERENCES variants(id) ON DELETE CASCADE,
            parent    TEXT NOT NULL REFERENCES variants(id),
            position  INTEGER NOT NULL,
            PRIMARY KEY (child, parent)
        );
        CREATE INDEX variant_parents_parent ON variant_parents(parent);
        CREATE TABLE variant_data (
            variant   TEXT NOT NULL REFERENCES variants(id) ON DELETE CASCADE,
            position  INTEGER NOT NULL,
            name      TEXT NOT NULL,
            sha256    TEXT NOT NULL,
            tokens    INTEGER NOT NULL,
            PRIMARY KEY (variant, position)
        );
        CREATE TABLE machines (
            id        INTEGER PRIMARY KEY,
            hostname  TEXT NOT NULL,
            cpu       TEXT NOT NULL,
            cores     INTEGER NOT NULL,
            os        TEXT NOT NULL,
            UNIQUE (hostname, cpu, cores, os)
        );
        CREATE TABLE evals (
            id               INTEGER PRIMARY KEY,
            variant          TEXT NOT NULL REFERENCES variants(id) ON DELETE CASCADE,
            dataset          TEXT NOT NULL,
            data_sha256      TEXT NOT NULL,
            data_tokens      INTEGER NOT NULL,
            context          INTEGER NOT NULL,
            perplexity       REAL,
            perplexity_error REAL,
            scored_tokens    INTEGER NOT NULL,
            mean_kld         REAL,
            same_top1        REAL,
            reference        TEXT,
            accuracy         REAL,
            accuracy_norm    REAL,
            machine          INTEGER NOT NULL REFERENCES machines(id),
            recorded         TEXT NOT NULL
        );
        CREATE INDEX evals_variant ON evals(variant);
        CREATE TABLE benches (
            id               INTEGER PRIMARY KEY,
            variant          TEXT NOT NULL REFERENCES variants(id) ON DELETE CASCADE,
            prompt_tokens    INTEGER NOT NULL,
            pp_tps           REAL,
            pp_sd            REAL,
            gen_tokens       INTEGER NOT NULL,
            tg_tps           REAL,
            tg_sd            REAL,
            load_seconds     REAL NOT NULL,
            peak_rss         INTEGER NOT NULL,
            threads          INTEGER NOT NULL,
            repetitions      INTEGER NOT NULL,
            machine          INTEGER NOT NULL REFERENCES machines(id),
            recorded         TEXT NOT NULL
        );
        CREATE INDEX benches_variant ON benches(variant);
        """,
    ];

    /// <summary>The schema version this code writes.</summary>
    public static int CurrentVersion => Migrations.Length;

    /// <summary>Opens a connection with the busy timeout and foreign keys on.</summary>
    public static SqliteConnection Connect(string path)
    {
        var builder = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = false,
            DefaultTimeout = BusySeconds,
        };
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            connection.Open();
            Execute(connection, $"PRAGMA busy_timeout = {BusySeconds * 1000}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;");
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Switches the file to WAL and brings its schema to <see cref="CurrentVersion"/>, in one immediate
    /// transaction so that two processes opening a new workspace at once create it once.
    /// </summary>
    public static void Migrate(SqliteConnection connection, string path)
    {
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA journal_mode = WAL;";
            command.ExecuteScalar();
        }
        using SqliteTransaction transaction = connection.BeginTransaction(deferred: false);
        Execute(connection, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);", transaction);
        long version;
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            command.CommandText = "SELECT max(version) FROM schema_version;";
            object? value = command.ExecuteScalar();
            version = value is long v ? v : 0;
        }
        if (version > Migrations.Length)
        {
            throw new RegistryException($"{path}: the registry has schema version {version}, newer than the {Migrations.Length} this smith knows; use a newer smith or another --workspace.");
        }
        if (version == 0)
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT IN ('schema_version') AND name NOT LIKE 'sqlite_%';";
            if (command.ExecuteScalar() is > 0L)
                throw new RegistryException($"{path}: is an SQLite database but not a ModelSmith registry (it has other tables and no schema version); give another --workspace.");
        }
        if (version == Migrations.Length)
        {
            transaction.Commit();
            return;
        }
        for (long v = version; v < Migrations.Length; v++)
        {
            Execute(connection, Migrations[v], transaction);
        }
        Execute(connection, "DELETE FROM schema_version;", transaction);
        Execute(connection, $"INSERT INTO schema_version (version) VALUES ({Migrations.Length});", transaction);
        transaction.Commit();
    }

    public static void Execute(SqliteConnection connection, string sql, SqliteTransaction? transaction = null)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
