//! `pg_trickle_dump`: exports the stream tables of a database as a SQL
//! script that recreates them (see docs/DUMP_RESTORE.md).

use clap::{ArgAction, Parser};
use pgtrickle_cli::{dependency_order, render_script, DumpHeader, ScriptOptions, StreamTableDef};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes (2, bad arguments, is clap's own).
const EXIT_FAILURE: u8 = 1;
const EXIT_NOT_INSTALLED: u8 = 3;

const LONG_ABOUT: &str = "\
Exports the stream tables of a database as a replayable SQL script: one
pgtrickle.create_stream_table(...) call per stream table, in dependency order
(upstream first), with the original query, schedule and refresh mode, then
alter_stream_table(...) calls restoring SUSPENDED statuses (ERROR is restored
as SUSPENDED). The script runs in one transaction; replay it with
  psql -v ON_ERROR_STOP=1 -d TARGET -f dump.sql
in a database that has CREATE EXTENSION pg_trickle and the source tables.

Only definitions are dumped: replay repopulates the stream tables from their
sources. The role running pg_trickle_dump must be able to read the pg_trickle
catalog (pgtrickle.pgt_stream_tables, pgtrickle.pgt_dependencies), which is
closed to PUBLIC: in practice a superuser.

Connection: --dbname takes a database name, a conninfo string
('host=... dbname=...') or a URI (postgresql://...), like pg_dump. Whatever it
leaves out comes from --host/--port/--username, then PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD, then localhost, 5432, $USER (database: the user name).

Exit codes: 0 success; 1 connection or query failure (including permission
denied on the catalog); 2 bad arguments; 3 pg_trickle is not installed in the
database.";

#[derive(Parser, Debug)]
#[command(
    name = "pg_trickle_dump",
    version,
    about = "Export pg_trickle stream tables as replayable SQL (run as a superuser)",
    long_about = LONG_ABOUT,
    disable_help_flag = true
)]
struct Args {
    /// Database name, conninfo string or postgresql:// URI to dump.
    #[arg(short = 'd', long = "dbname", value_name = "DBNAME|CONNINFO")]
    dbname: Option<String>,

    /// Server host or socket directory (default: PGHOST, else localhost).
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    host: Option<String>,

    /// Server port (default: PGPORT, else 5432).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    port: Option<u16>,

    /// User name (default: PGUSER, else $USER). Must be able to read the
    /// pg_trickle catalog: a superuser.
    #[arg(short = 'U', long = "username", value_name = "USER")]
    username: Option<String>,

    /// Write the script to FILE (default: standard output). The file is
    /// written only when the dump succeeded.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Dump the expanded, schema-qualified defining queries instead of the
    /// original ones: replay then does not depend on search_path.
    #[arg(long)]
    expanded: bool,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("pg_trickle_dump: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn looks_like_conninfo(s: &str) -> bool {
    s.contains('=') || s.starts_with("postgresql://") || s.starts_with("postgres://")
}

/// The connection settings: --dbname conninfo, then flags, then PG*
/// variables, then defaults.
fn connection_config(args: &Args) -> Result<Config, Failure> {
    let mut cfg = match args.dbname.as_deref() {
        Some(d) if looks_like_conninfo(d) => d
            .parse::<Config>()
            .map_err(|e| fail(EXIT_FAILURE, format!("invalid connection string: {e}")))?,
        Some(d) => {
            let mut c = Config::new();
            c.dbname(d);
            c
        }
        None => Config::new(),
    };
    if cfg.get_hosts().is_empty() {
        let host = args
            .host
            .clone()
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(|| "localhost".into());
        for h in host.split(',') {
            cfg.host(h);
        }
    }
    if cfg.get_ports().is_empty() {
        let port = match args.port {
            Some(p) => p,
            None => match env("PGPORT") {
                Some(p) => p
                    .parse()
                    .map_err(|_| fail(EXIT_FAILURE, format!("invalid PGPORT {p:?}")))?,
                None => 5432,
            },
        };
        cfg.port(port);
    }
    if cfg.get_user().is_none() {
        let user = args
            .username
            .clone()
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .ok_or_else(|| fail(EXIT_FAILURE, "no user name: use --username or set PGUSER"))?;
        cfg.user(&user);
    }
    if cfg.get_dbname().is_none() {
        let db =
            env("PGDATABASE").unwrap_or_else(|| cfg.get_user().unwrap_or_default().to_string());
        cfg.dbname(&db);
    }
    if cfg.get_password().is_none() {
        if let Some(pw) = env("PGPASSWORD") {
            cfg.password(pw);
        }
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("pg_trickle_dump");
    }
    Ok(cfg)
}

/// `"db" on host:port as user` (no password).
fn describe(cfg: &Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = cfg.get_ports().iter().map(|p| p.to_string()).collect();
    format!(
        "\"{}\" on {}:{} as {}",
        cfg.get_dbname().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        cfg.get_user().unwrap_or("")
    )
}

fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nHINT: {h}"));
            }
            s
        }
        None => e.to_string(),
    }
}

fn query_failure(what: &str, e: &postgres::Error) -> Failure {
    if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return fail(
            EXIT_FAILURE,
            format!(
                "permission denied while {what}: {}\n\
                 pg_trickle_dump must run as a role that can read the pg_trickle catalog \
                 (pgtrickle.pgt_stream_tables, pgtrickle.pgt_dependencies), in practice a superuser; \
                 use --username or PGUSER.",
                error_text(e)
            ),
        );
    }
    fail(EXIT_FAILURE, format!("{what}: {}", error_text(e)))
}

fn run(args: &Args) -> Result<(), Failure> {
    let cfg = connection_config(args)?;
    let source = describe(&cfg);
    let mut client = cfg.connect(NoTls).map_err(|e| {
        fail(
            EXIT_FAILURE,
            format!("could not connect to {source}: {}", error_text(&e)),
        )
    })?;
    let (header, sts, edges) = read_catalog(&mut client, source)?;
    let order = dependency_order(&sts, &edges).map_err(|cycle| {
        fail(
            EXIT_FAILURE,
            format!(
                "the catalog has a dependency cycle between stream tables: {}",
                cycle.join(", ")
            ),
        )
    })?;
    let script = render_script(
        &header,
        &order,
        ScriptOptions {
            expanded: args.expanded,
        },
    );
    match &args.file {
        Some(path) => std::fs::write(path, script).map_err(|e| {
            fail(
                EXIT_FAILURE,
                format!("could not write {}: {e}", path.display()),
            )
        })?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(script.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| fail(EXIT_FAILURE, format!("could not write the script: {e}")))?;
        }
    }
    Ok(())
}

type Catalog = (DumpHeader, Vec<StreamTableDef>, Vec<(i64, i64)>);

fn read_catalog(client: &mut Client, source: String) -> Result<Catalog, Failure> {
    let ext = client
        .query_opt(
            "SELECT extversion::text FROM pg_catalog.pg_extension \
             WHERE extname = 'pg_trickle'",
            &[],
        )
        .map_err(|e| query_failure("checking for the pg_trickle extension", &e))?;
    let Some(ext) = ext else {
        let db: String = client
            .query_one("SELECT current_database()::text", &[])
            .map(|r| r.get(0))
            .unwrap_or_default();
        return Err(fail(
            EXIT_NOT_INSTALLED,
            format!(
                "the pg_trickle extension is not installed in database \"{db}\" ({source}): \
                 there are no stream tables to dump. Check the database name."
            ),
        ));
    };
    let extension_version: String = ext.get(0);

    // One snapshot for everything, so stream tables and edges agree.
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| query_failure("starting a transaction", &e))?;
    let info = tx
        .query_one(
            "SELECT pgtrickle.version()::text, \
                    pg_catalog.current_setting('server_version'), \
                    pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .map_err(|e| query_failure("reading pgtrickle.version()", &e))?;
    let rows = tx
        .query(
            "SELECT s.pgt_id, s.pgt_schema, s.pgt_name, s.defining_query, s.original_query, \
                    s.schedule, s.refresh_mode, s.status, s.is_populated, \
                    pg_catalog.pg_get_userbyid(c.relowner)::text, s.last_error \
               FROM pgtrickle.pgt_stream_tables s \
               LEFT JOIN pg_catalog.pg_class c ON c.oid = s.pgt_relid \
              ORDER BY s.pgt_id",
            &[],
        )
        .map_err(|e| query_failure("reading pgtrickle.pgt_stream_tables", &e))?;
    let sts = rows
        .iter()
        .map(|r| StreamTableDef {
            pgt_id: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            defining_query: r.get(3),
            original_query: r.get(4),
            schedule: r.get(5),
            refresh_mode: r.get(6),
            status: r.get(7),
            is_populated: r.get(8),
            owner: r.get(9),
            last_error: r.get(10),
        })
        .collect();
    let edges = tx
        .query(
            "SELECT d.pgt_id, s.pgt_id FROM pgtrickle.pgt_dependencies d \
               JOIN pgtrickle.pgt_stream_tables s ON s.pgt_relid = d.source_relid",
            &[],
        )
        .map_err(|e| query_failure("reading pgtrickle.pgt_dependencies", &e))?
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .collect();
    tx.commit()
        .map_err(|e| query_failure("ending the transaction", &e))?;
    let header = DumpHeader {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        source,
        dumped_at: info.get(2),
        pgtrickle_version: info.get(0),
        extension_version,
        server_version: info.get(1),
    };
    Ok((header, sts, edges))
}
