//! The correctness oracle of PRODUCT.md §4 under random DML.
//!
//! * [`RandomDml`] owns a seeded generator over a set of source tables with
//!   small value domains (so groups collide, empty out and come back), runs
//!   random inserts / updates / deletes / upserts / rolled-back transactions /
//!   TRUNCATEs against them, and keeps a replayable SQL log of everything it
//!   did (DDL, stream table creation, DML, refreshes).
//! * [`check_matches_query`] / [`assert_matches_query`] compare a stream
//!   table's user-visible columns (every column not starting with `__pgt_`,
//!   in attnum order) with a fresh evaluation of its defining query, as a
//!   multiset: `EXCEPT ALL` both ways must be empty.
//!
//! Seeds: `PGT_PROPTEST_SEED` (decimal, `0x` hex, or `random`) picks the base
//! seed, default [`DEFAULT_SEED`]; each test mixes its own name into it.
//! `PGT_PROPTEST_CASES` sets the number of rounds of every test.

use postgres::{Client, Error as PgError};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The base seed used when `PGT_PROPTEST_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x5EED_7121_C4E5;

/// The base seed of this run (same for every test of the binary).
pub fn base_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("PGT_PROPTEST_SEED") {
        Ok(s) if s.trim().eq_ignore_ascii_case("random") => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            let seed = Rng::new(nanos ^ u64::from(std::process::id())).next_u64() >> 16;
            eprintln!("oracle: PGT_PROPTEST_SEED=random picked seed {seed:#x}");
            seed
        }
        Ok(s) => parse_u64(s.trim()).unwrap_or_else(|| {
            panic!("PGT_PROPTEST_SEED={s:?} is not a number (decimal, 0x hex, or `random`)")
        }),
        Err(_) => DEFAULT_SEED,
    })
}

/// Rounds per test: `PGT_PROPTEST_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    match std::env::var("PGT_PROPTEST_CASES") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PGT_PROPTEST_CASES={s:?} is not a number")),
        Err(_) => default,
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// SplitMix64: tiny, deterministic, good enough to pick DML.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi);
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value domain of a source column.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `int PRIMARY KEY`, values `1..=max`.
    Pk { max: i64 },
    /// `int`, values `lo..=hi`.
    Int { lo: i64, hi: i64 },
    /// `numeric(12,2)`, whole part `lo..=hi`, a few fractions, and NaN.
    Num { lo: i64, hi: i64 },
    /// `text`, one of `choices` (may include `''`).
    Text { choices: Vec<&'static str> },
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
}

/// A source table the generator writes to.
#[derive(Clone, Debug)]
pub struct TableSpec {
    pub name: String,
    pub cols: Vec<Column>,
    /// Inserts turn into deletes above this many rows.
    pub max_rows: i64,
    /// Rows inserted by `RandomDml::setup`.
    pub initial_rows: i64,
}

impl TableSpec {
    pub fn new(name: &str) -> TableSpec {
        TableSpec {
            name: name.to_string(),
            cols: Vec::new(),
            max_rows: 60,
            initial_rows: 20,
        }
    }

    fn push(mut self, name: &str, kind: Kind, nullable: bool) -> TableSpec {
        self.cols.push(Column {
            name: name.to_string(),
            kind,
            nullable,
        });
        self
    }

    /// `name int PRIMARY KEY` with values `1..=max`.
    pub fn pk(self, name: &str, max: i64) -> TableSpec {
        assert!(self.pk_col().is_none(), "one primary key column per table");
        self.push(name, Kind::Pk { max }, false)
    }

    /// Nullable `int` in `lo..=hi`.
    pub fn int(self, name: &str, lo: i64, hi: i64) -> TableSpec {
        self.push(name, Kind::Int { lo, hi }, true)
    }

    /// Nullable `numeric(12,2)` with whole part in `lo..=hi`.
    pub fn num(self, name: &str, lo: i64, hi: i64) -> TableSpec {
        self.push(name, Kind::Num { lo, hi }, true)
    }

    /// Nullable `text`, one of `choices`.
    pub fn text(self, name: &str, choices: &[&'static str]) -> TableSpec {
        self.push(
            name,
            Kind::Text {
                choices: choices.to_vec(),
            },
            true,
        )
    }

    /// Makes the last column `NOT NULL`.
    pub fn not_null(mut self) -> TableSpec {
        self.cols.last_mut().expect("a column").nullable = false;
        self
    }

    pub fn max_rows(mut self, n: i64) -> TableSpec {
        self.max_rows = n;
        self
    }

    pub fn initial_rows(mut self, n: i64) -> TableSpec {
        self.initial_rows = n;
        self
    }

    pub fn pk_col(&self) -> Option<&Column> {
        self.cols.iter().find(|c| matches!(c.kind, Kind::Pk { .. }))
    }

    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .cols
            .iter()
            .map(|c| {
                let ty = match c.kind {
                    Kind::Pk { .. } => "int PRIMARY KEY",
                    Kind::Int { .. } => "int",
                    Kind::Num { .. } => "numeric(12,2)",
                    Kind::Text { .. } => "text",
                };
                let nn = if c.nullable || matches!(c.kind, Kind::Pk { .. }) {
                    ""
                } else {
                    " NOT NULL"
                };
                format!("{} {ty}{nn}", c.name)
            })
            .collect();
        format!("CREATE TABLE {} ({})", self.name, cols.join(", "))
    }

    fn col_list(&self) -> String {
        self.cols
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn non_pk(&self) -> Vec<&Column> {
        self.cols
            .iter()
            .filter(|c| !matches!(c.kind, Kind::Pk { .. }))
            .collect()
    }
}

fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn fmt_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// A non-NULL literal from the column's domain.
fn value_literal(rng: &mut Rng, col: &Column) -> String {
    match &col.kind {
        Kind::Pk { max } => rng.range(1, *max).to_string(),
        Kind::Int { lo, hi } => rng.range(*lo, *hi).to_string(),
        // NaN now and then: sums must let it go again.
        Kind::Num { .. } if rng.pct(3) => "'NaN'".to_string(),
        Kind::Num { lo, hi } => {
            let whole = rng.range(*lo, *hi);
            let frac = *rng.pick(&[0, 0, 0, 25, 50, 5, 99]);
            fmt_cents(whole * 100 + if whole < 0 { -frac } else { frac })
        }
        Kind::Text { choices } => quote_lit(rng.pick_str(choices)),
    }
}

/// A literal from the column's domain, NULL now and then where allowed.
fn literal(rng: &mut Rng, col: &Column) -> String {
    if col.nullable && rng.pct(12) {
        "NULL".to_string()
    } else {
        value_literal(rng, col)
    }
}

/// A stream table under test.
#[derive(Clone, Debug)]
pub struct StreamTable {
    pub name: String,
    pub query: String,
    /// The mode it was created with (AUTO when DIFFERENTIAL was refused).
    pub mode: String,
    /// The mode the test asked for.
    pub requested_mode: String,
}

/// Seeded random DML over a set of source tables, with the stream tables
/// under test and a replayable log.
pub struct RandomDml {
    pub test: String,
    pub base_seed: u64,
    pub rng: Rng,
    pub tables: Vec<TableSpec>,
    pub sts: Vec<StreamTable>,
    /// Everything executed so far, as SQL (comments mark rounds and results).
    pub log: Vec<String>,
    /// What each `log` entry is, for shrinking.
    kinds: Vec<EntryKind>,
    /// Whether each `log` entry failed when it ran (a replay tolerates that).
    failed: Vec<bool>,
    /// Notes printed at the end (e.g. DIFFERENTIAL refused, AUTO used).
    pub notes: Vec<String>,
    pub round_no: usize,
    /// Port of the cluster, to replay and shrink a failure in a scratch
    /// database of the same cluster.
    port: Option<u16>,
}

/// What a log entry is.
#[derive(Clone, Debug, PartialEq)]
enum EntryKind {
    /// Not executed on replay.
    Comment,
    /// Source DDL and settings: always replayed.
    Fixed,
    /// DML, refreshes, transaction control: the shrinker may drop it.
    Stmt,
    /// Creation of this stream table (droppable too).
    CreateSt(String),
}

/// The failure a shrunk replay has to reproduce.
#[derive(Clone, Debug)]
pub enum Target {
    /// After refreshing every stream table, this one differs from its query.
    Mismatch { st: String, query: String },
    /// This statement fails with this SQLSTATE.
    Error { sql: String, code: String },
}

impl RandomDml {
    pub fn new(test: &str, tables: Vec<TableSpec>) -> RandomDml {
        let base_seed = base_seed();
        let mut mix = Rng::new(base_seed ^ fnv1a(test));
        let rng = Rng::new(mix.next_u64());
        eprintln!("oracle: {test}: seed {base_seed:#x}");
        RandomDml {
            test: test.to_string(),
            base_seed,
            rng,
            tables,
            sts: Vec::new(),
            log: vec![format!(
                "-- pg_trickle oracle test {test}, PGT_PROPTEST_SEED={base_seed:#x}"
            )],
            kinds: vec![EntryKind::Comment],
            failed: vec![false],
            notes: Vec::new(),
            round_no: 0,
            port: None,
        }
    }

    /// Lets a failure be shrunk by replaying it in scratch databases of
    /// `cluster`.
    pub fn attach(&mut self, cluster: &crate::Cluster) {
        self.port = Some(cluster.port);
    }

    fn push(&mut self, kind: EntryKind, text: String) {
        self.log.push(text);
        self.kinds.push(kind);
        self.failed.push(false);
    }

    // ----- execution and logging -------------------------------------------

    /// Runs `sql`, logging it; errors are returned (and logged).
    pub fn try_exec(&mut self, client: &mut Client, sql: &str) -> Result<(), PgError> {
        let upper = sql.trim_start().to_ascii_uppercase();
        let kind = if upper.starts_with("CREATE")
            || upper.starts_with("SET ")
            || upper.starts_with("ANALYZE")
        {
            EntryKind::Fixed
        } else {
            EntryKind::Stmt
        };
        self.try_exec_as(client, sql, kind)
    }

    fn try_exec_as(
        &mut self,
        client: &mut Client,
        sql: &str,
        kind: EntryKind,
    ) -> Result<(), PgError> {
        self.push(kind, format!("{sql};"));
        match client.batch_execute(sql) {
            Ok(()) => Ok(()),
            Err(e) => {
                *self.failed.last_mut().expect("just pushed") = true;
                self.push(
                    EntryKind::Comment,
                    format!("-- ^ ERROR: {}", error_text(&e)),
                );
                Err(e)
            }
        }
    }

    /// Runs `sql`, logging it; any error fails the test with the full report.
    pub fn exec(&mut self, client: &mut Client, sql: &str) {
        if let Err(e) = self.try_exec(client, sql) {
            self.fail_error(&format!("statement failed: {sql}"), sql, &e);
        }
    }

    pub fn comment(&mut self, text: &str) {
        self.push(EntryKind::Comment, format!("-- {text}"));
    }

    fn fail_error(&self, what: &str, sql: &str, e: &PgError) -> ! {
        let target = e.as_db_error().map(|db| Target::Error {
            sql: format!("{sql};"),
            code: db.code().code().to_string(),
        });
        let server_hint = if target.is_none() {
            "\n(not an SQL error: the connection broke, maybe the backend crashed; the server log of a \
             failed test is kept in its cluster directory, pgt-e2e-<pid>-<n>/server.log under the temp dir)"
        } else {
            ""
        };
        self.fail_with(
            &format!("{what}\nerror: {}{server_hint}", error_text(e)),
            target,
        )
    }

    /// Panics with `what`, the seed, how to reproduce, and the SQL log
    /// (also written to a file under the temp dir).
    pub fn fail(&self, what: &str) -> ! {
        self.fail_with(what, None)
    }

    /// [`RandomDml::fail`], first shrinking the log to a small replay that
    /// still reproduces `target` (when attached to a cluster).
    pub fn fail_with(&self, what: &str, target: Option<Target>) -> ! {
        let mut msg = String::new();
        let _ = writeln!(
            msg,
            "\n=== pg_trickle oracle failure in test `{}` (round {}) ===",
            self.test, self.round_no
        );
        let _ = writeln!(msg, "{what}");
        let _ = writeln!(msg, "\nseed: {:#x}", self.base_seed);
        let _ = writeln!(
            msg,
            "reproduce: PGT_PROPTEST_SEED={:#x} PGT_PROPTEST_CASES={} cargo test -p pgtrickle-e2e --test oracle -- --exact {}",
            self.base_seed,
            cases(0).max(self.round_no),
            self.test
        );
        let path =
            std::env::temp_dir().join(format!("pgt-oracle-{}-{:x}.sql", self.test, self.base_seed));
        let script = self.log.join("\n") + "\n";
        if std::fs::write(&path, &script).is_ok() {
            let _ = writeln!(msg, "SQL log written to {}", path.display());
        }
        let shrunk = match (target, self.port) {
            (Some(target), Some(port)) if shrink_budget() > 0 => Some(self.shrink(port, &target)),
            _ => None,
        };
        match shrunk {
            Some(Ok(script)) => {
                let _ = writeln!(
                    msg,
                    "\n--- minimized replay (run in a fresh database with pg_trickle; the failure \
                     shows after refreshing every stream table it creates) ---\n{script}--- end of minimized replay ---"
                );
                let _ = writeln!(
                    msg,
                    "(full SQL log of {} lines in the file above)",
                    self.log.len()
                );
            }
            other => {
                if let Some(Err(why)) = other {
                    let _ = writeln!(msg, "(not minimized: {why})");
                }
                let _ = writeln!(
                    msg,
                    "\n--- SQL log ({} lines) ---\n{script}--- end of SQL log ---",
                    self.log.len()
                );
            }
        }
        panic!("{msg}");
    }

    // ----- sources ---------------------------------------------------------

    /// Creates the source tables and fills them with random rows.
    pub fn setup(&mut self, client: &mut Client) {
        for i in 0..self.tables.len() {
            let sql = self.tables[i].create_sql();
            self.exec(client, &sql);
        }
        for i in 0..self.tables.len() {
            let t = self.tables[i].clone();
            // One row per statement, so that a failure can be shrunk row by
            // row; PK tables get distinct keys.
            let rows = self.random_rows(&t, t.initial_rows as usize);
            for row in rows {
                let sql = format!("INSERT INTO {} ({}) VALUES {row}", t.name, t.col_list());
                self.exec(client, &sql);
            }
        }
    }

    /// `n` value tuples; on PK tables with distinct keys (fewer if the key
    /// domain is smaller than `n`).
    fn random_rows(&mut self, t: &TableSpec, n: usize) -> Vec<String> {
        let mut rows = Vec::new();
        let mut keys: Vec<i64> = Vec::new();
        for _ in 0..n {
            let mut vals = Vec::new();
            for c in &t.cols {
                match c.kind {
                    Kind::Pk { max } => {
                        let mut tries = 0;
                        let mut k = self.rng.range(1, max);
                        while keys.contains(&k) && tries < 20 {
                            k = self.rng.range(1, max);
                            tries += 1;
                        }
                        if keys.contains(&k) {
                            break;
                        }
                        keys.push(k);
                        vals.push(k.to_string());
                    }
                    _ => vals.push(literal(&mut self.rng, c)),
                }
            }
            if vals.len() == t.cols.len() {
                rows.push(format!("({})", vals.join(", ")));
            }
        }
        rows
    }

    fn row_count(&self, client: &mut Client, table: &str) -> i64 {
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap_or_else(|e| self.fail(&format!("counting rows of {table}: {}", error_text(&e))))
            .get(0)
    }

    fn pick_table(&mut self) -> TableSpec {
        let i = self.rng.below(self.tables.len() as u64) as usize;
        self.tables[i].clone()
    }

    /// A predicate over `t` of moderate selectivity.
    fn predicate(&mut self, t: &TableSpec) -> String {
        self.predicate_with(t, false)
    }

    /// `narrow`: no ranges, no OR, no `true` (for DELETE, so that tables do
    /// not drain too fast).
    fn predicate_with(&mut self, t: &TableSpec, narrow: bool) -> String {
        let pk = t.pk_col().cloned();
        let non_pk: Vec<Column> = t.non_pk().into_iter().cloned().collect();
        let r = self.rng.below(100);
        if let Some(pk) = &pk {
            let Kind::Pk { max } = pk.kind else {
                unreachable!()
            };
            if r < 35 {
                return format!("{} = {}", pk.name, self.rng.range(1, max));
            }
            if r < 45 {
                let a = self.rng.range(1, max);
                return format!("{} BETWEEN {a} AND {}", pk.name, a + self.rng.range(1, 4));
            }
            if r < 52 {
                let m = self.rng.range(3, 6);
                return format!("{} % {m} = {}", pk.name, self.rng.range(0, m - 1));
            }
        }
        if (r >= 98 && !narrow) || non_pk.is_empty() {
            return "true".to_string();
        }
        let c = self.rng.pick(&non_pk).clone();
        let p = self.rng.below(100);
        let single = if p < 15 && c.nullable {
            format!("{} IS NULL", c.name)
        } else if p < 30 && !narrow && !matches!(c.kind, Kind::Text { .. }) {
            let op = *self.rng.pick(&["<", ">", "<=", ">="]);
            format!("{} {op} {}", c.name, value_literal(&mut self.rng, &c))
        } else {
            format!("{} = {}", c.name, value_literal(&mut self.rng, &c))
        };
        if self.rng.pct(if narrow { 35 } else { 20 }) {
            let d = self.rng.pick(&non_pk).clone();
            let conj = if narrow {
                "AND"
            } else {
                *self.rng.pick(&["AND", "OR"])
            };
            format!(
                "({single} {conj} {} = {})",
                d.name,
                value_literal(&mut self.rng, &d)
            )
        } else {
            single
        }
    }

    /// An expression for `SET col = ...`.
    fn set_expr(&mut self, c: &Column) -> String {
        if self.rng.pct(55) {
            return literal(&mut self.rng, c);
        }
        match &c.kind {
            Kind::Int { lo, hi } => match self.rng.below(3) {
                0 => format!("CASE WHEN {0} >= {hi} THEN {lo} ELSE {0} + 1 END", c.name),
                1 if c.nullable => format!("NULLIF({}, {})", c.name, self.rng.range(*lo, *hi)),
                _ => format!("coalesce({}, {})", c.name, self.rng.range(*lo, *hi)),
            },
            Kind::Num { .. } => match self.rng.below(3) {
                0 => format!("{} + 1.25", c.name),
                1 => format!("-{}", c.name),
                _ => format!("{} - 0.5", c.name),
            },
            Kind::Text { choices } => match self.rng.below(3) {
                0 => format!("upper({})", c.name),
                1 => format!("lower({})", c.name),
                _ => format!(
                    "coalesce({}, {})",
                    c.name,
                    quote_lit(self.rng.pick_str(choices))
                ),
            },
            Kind::Pk { .. } => unreachable!(),
        }
    }

    fn insert_sql(&mut self, client: &mut Client, t: &TableSpec) -> String {
        let count = self.row_count(client, &t.name);
        if count >= t.max_rows {
            return self.delete_sql(t);
        }
        let n = if count < t.max_rows / 3 {
            self.rng.range(3, 10)
        } else if self.rng.pct(10) {
            self.rng.range(5, 10)
        } else {
            self.rng.range(1, 4)
        } as usize;
        match t.pk_col().cloned() {
            Some(pk) => {
                let rows = self.random_rows(t, n);
                let tail = if self.rng.pct(30) && !t.non_pk().is_empty() {
                    let non_pk: Vec<Column> = t.non_pk().into_iter().cloned().collect();
                    let mut sets = vec![self.rng.pick(&non_pk).name.clone()];
                    if self.rng.pct(40) {
                        let other = self.rng.pick(&non_pk).name.clone();
                        if !sets.contains(&other) {
                            sets.push(other);
                        }
                    }
                    let sets: Vec<String> =
                        sets.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
                    format!(
                        "ON CONFLICT ({}) DO UPDATE SET {}",
                        pk.name,
                        sets.join(", ")
                    )
                } else {
                    format!("ON CONFLICT ({}) DO NOTHING", pk.name)
                };
                format!(
                    "INSERT INTO {} ({}) VALUES {} {tail}",
                    t.name,
                    t.col_list(),
                    rows.join(", ")
                )
            }
            None => {
                if count > 0 && self.rng.pct(15) {
                    // Exact copies of existing rows.
                    let pred = self.predicate(t);
                    return format!(
                        "INSERT INTO {0} SELECT * FROM {0} WHERE {pred} LIMIT {1}",
                        t.name,
                        self.rng.range(1, 3)
                    );
                }
                let mut rows = self.random_rows(t, n);
                if self.rng.pct(30) {
                    // Exact duplicate rows in one statement.
                    let dup = self.rng.pick(&rows).clone();
                    rows.push(dup);
                }
                format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    t.name,
                    t.col_list(),
                    rows.join(", ")
                )
            }
        }
    }

    fn update_sql(&mut self, t: &TableSpec) -> String {
        let non_pk: Vec<Column> = t.non_pk().into_iter().cloned().collect();
        if let Some(pk) = t.pk_col().cloned() {
            if self.rng.pct(15) || non_pk.is_empty() {
                // Move a row to another key (and maybe change it too).
                let Kind::Pk { max } = pk.kind else {
                    unreachable!()
                };
                let from = self.rng.range(1, max);
                let to = self.rng.range(1, max);
                let extra = if !non_pk.is_empty() && self.rng.pct(40) {
                    let c = self.rng.pick(&non_pk).clone();
                    format!(", {} = {}", c.name, self.set_expr(&c))
                } else {
                    String::new()
                };
                return format!(
                    "UPDATE {0} SET {1} = {to}{extra} WHERE {1} = {from} AND NOT EXISTS (SELECT 1 FROM {0} x WHERE x.{1} = {to})",
                    t.name, pk.name
                );
            }
        }
        let mut cols = vec![self.rng.pick(&non_pk).clone()];
        if self.rng.pct(35) {
            let other = self.rng.pick(&non_pk).clone();
            if other.name != cols[0].name {
                cols.push(other);
            }
        }
        let sets: Vec<String> = cols
            .iter()
            .map(|c| format!("{} = {}", c.name, self.set_expr(c)))
            .collect();
        let pred = self.predicate(t);
        format!("UPDATE {} SET {} WHERE {pred}", t.name, sets.join(", "))
    }

    fn delete_sql(&mut self, t: &TableSpec) -> String {
        let pred = if self.rng.pct(1) {
            "true".to_string()
        } else {
            self.predicate_with(t, true)
        };
        if t.pk_col().is_none() && self.rng.pct(50) {
            // Delete one of several identical rows.
            format!(
                "DELETE FROM {0} WHERE ctid IN (SELECT ctid FROM {0} WHERE {pred} LIMIT 1)",
                t.name
            )
        } else {
            format!("DELETE FROM {} WHERE {pred}", t.name)
        }
    }

    /// One random DML statement on table `t`.
    pub fn statement_on(&mut self, client: &mut Client, t: &TableSpec) -> String {
        let r = self.rng.below(100);
        if r < 4 {
            self.bulk_sql(client, t)
        } else if r < 42 {
            self.insert_sql(client, t)
        } else if r < 77 {
            self.update_sql(t)
        } else {
            self.delete_sql(t)
        }
    }

    /// A set-based statement over `generate_series`: many rows at once (an
    /// upsert over a slice of the key domain, or 10–30 new rows).
    fn bulk_sql(&mut self, client: &mut Client, t: &TableSpec) -> String {
        let exprs: Vec<String> = t.cols.iter().map(|c| self.series_expr(c)).collect();
        match t.pk_col().cloned() {
            Some(pk) => {
                let Kind::Pk { max } = pk.kind else {
                    unreachable!()
                };
                let m = self.rng.range(1, 3);
                let r = self.rng.range(0, m - 1);
                let non_pk: Vec<Column> = t.non_pk().into_iter().cloned().collect();
                let tail = if non_pk.is_empty() || self.rng.pct(30) {
                    format!("ON CONFLICT ({}) DO NOTHING", pk.name)
                } else {
                    let c = self.rng.pick(&non_pk).name.clone();
                    format!("ON CONFLICT ({}) DO UPDATE SET {c} = EXCLUDED.{c}", pk.name)
                };
                format!(
                    "INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {max}) g WHERE g % {m} = {r} {tail}",
                    t.name,
                    t.col_list(),
                    exprs.join(", ")
                )
            }
            None => {
                if self.row_count(client, &t.name) + 30 > t.max_rows * 2 {
                    return self.delete_sql(t);
                }
                let n = self.rng.range(10, 30);
                format!(
                    "INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {n}) g",
                    t.name,
                    t.col_list(),
                    exprs.join(", ")
                )
            }
        }
    }

    /// An expression of `g` (a generate_series value) in the column's domain.
    fn series_expr(&mut self, c: &Column) -> String {
        let k = self.rng.range(1, 7);
        let off = self.rng.range(0, 10);
        let value = match &c.kind {
            Kind::Pk { .. } => return "g".to_string(),
            Kind::Int { lo, hi } => format!("{lo} + (g * {k} + {off}) % {}", hi - lo + 1),
            Kind::Num { lo, hi } => format!(
                "({lo} + (g * {k} + {off}) % {})::numeric + 0.25",
                hi - lo + 1
            ),
            Kind::Text { choices } => {
                let arr: Vec<String> = choices.iter().map(|s| quote_lit(s)).collect();
                format!(
                    "(ARRAY[{}])[1 + (g * {k} + {off}) % {}]",
                    arr.join(", "),
                    choices.len()
                )
            }
        };
        if c.nullable && self.rng.pct(50) {
            format!(
                "CASE WHEN g % {} = 0 THEN NULL ELSE {value} END",
                self.rng.range(3, 7)
            )
        } else {
            value
        }
    }

    /// One random DML statement on a random table.
    pub fn random_statement(&mut self, client: &mut Client) -> String {
        let t = self.pick_table();
        self.statement_on(client, &t)
    }

    /// Several statements on one key of a PK table (delete + reinsert,
    /// update twice, insert then delete...): exercises netting of changes.
    fn focused_statements(&mut self, t: &TableSpec) -> Vec<String> {
        let pk = t.pk_col().cloned().expect("PK table");
        let Kind::Pk { max } = pk.kind else {
            unreachable!()
        };
        let k = self.rng.range(1, max);
        let non_pk: Vec<Column> = t.non_pk().into_iter().cloned().collect();
        let mut out = Vec::new();
        for _ in 0..self.rng.range(2, 4) {
            match self.rng.below(4) {
                0 => out.push(format!("DELETE FROM {} WHERE {} = {k}", t.name, pk.name)),
                1 => {
                    let vals: Vec<String> = t
                        .cols
                        .iter()
                        .map(|c| {
                            if c.name == pk.name {
                                k.to_string()
                            } else {
                                literal(&mut self.rng, c)
                            }
                        })
                        .collect();
                    let sets: Vec<String> = non_pk
                        .iter()
                        .map(|c| format!("{0} = EXCLUDED.{0}", c.name))
                        .collect();
                    let tail = if sets.is_empty() {
                        format!("ON CONFLICT ({}) DO NOTHING", pk.name)
                    } else {
                        format!(
                            "ON CONFLICT ({}) DO UPDATE SET {}",
                            pk.name,
                            sets.join(", ")
                        )
                    };
                    out.push(format!(
                        "INSERT INTO {} ({}) VALUES ({}) {tail}",
                        t.name,
                        t.col_list(),
                        vals.join(", ")
                    ));
                }
                2 if !non_pk.is_empty() => {
                    let c = self.rng.pick(&non_pk).clone();
                    let e = self.set_expr(&c);
                    out.push(format!(
                        "UPDATE {} SET {} = {e} WHERE {} = {k}",
                        t.name, c.name, pk.name
                    ));
                }
                _ => {
                    let to = self.rng.range(1, max);
                    out.push(format!(
                        "UPDATE {0} SET {1} = {to} WHERE {1} = {k} AND NOT EXISTS (SELECT 1 FROM {0} x WHERE x.{1} = {to})",
                        t.name, pk.name
                    ));
                }
            }
        }
        out
    }

    fn run_txn(&mut self, client: &mut Client, stmts: &[String], commit: bool) {
        self.exec(client, "BEGIN");
        for s in stmts {
            self.exec(client, s);
        }
        self.exec(client, if commit { "COMMIT" } else { "ROLLBACK" });
    }

    fn random_statements(&mut self, client: &mut Client, lo: i64, hi: i64) -> Vec<String> {
        (0..self.rng.range(lo, hi))
            .map(|_| self.random_statement(client))
            .collect()
    }

    /// One batch of random DML: single statements, committed and rolled-back
    /// transactions, now and then a TRUNCATE.
    pub fn random_dml(&mut self, client: &mut Client) {
        for _ in 0..self.rng.range(1, 5) {
            let r = self.rng.below(100);
            if r < 58 {
                let s = self.random_statement(client);
                self.exec(client, &s);
            } else if r < 78 {
                let t = self.pick_table();
                let mut stmts = if t.pk_col().is_some() && self.rng.pct(40) {
                    self.focused_statements(&t)
                } else {
                    self.random_statements(client, 2, 5)
                };
                if self.rng.pct(30) {
                    // Part of the transaction is undone by a savepoint.
                    let from = self.rng.below(stmts.len() as u64) as usize;
                    let to = from + 1 + self.rng.below((stmts.len() - from) as u64) as usize;
                    stmts.insert(to, "ROLLBACK TO SAVEPOINT sp".to_string());
                    stmts.insert(from, "SAVEPOINT sp".to_string());
                }
                self.run_txn(client, &stmts, true);
            } else if r < 97 {
                let mut stmts = self.random_statements(client, 1, 4);
                if self.rng.pct(15) {
                    let t = self.pick_table();
                    stmts.insert(0, format!("TRUNCATE {}", t.name));
                }
                self.run_txn(client, &stmts, false);
            } else {
                let t = self.pick_table();
                if self.rng.pct(50) {
                    self.exec(client, &format!("TRUNCATE {}", t.name));
                } else {
                    // TRUNCATE and refill in one transaction.
                    let mut stmts = vec![format!("TRUNCATE {}", t.name)];
                    let n = self.rng.range(2, 8) as usize;
                    let rows = self.random_rows(&t, n);
                    stmts.push(format!(
                        "INSERT INTO {} ({}) VALUES {}",
                        t.name,
                        t.col_list(),
                        rows.join(", ")
                    ));
                    self.run_txn(client, &stmts, true);
                }
            }
        }
    }

    // ----- stream tables ---------------------------------------------------

    /// `create_stream_table(name, query, NULL, mode)`. When `mode` is
    /// DIFFERENTIAL and the engine refuses with 0A000 (unsupported), notes it
    /// and creates the stream table in AUTO mode instead. Checks the oracle
    /// right after creation.
    pub fn create_st(&mut self, client: &mut Client, name: &str, query: &str, mode: &str) {
        if simulated() {
            // Harness self-check: a plain table standing in for the engine.
            let sql = format!(
                "CREATE TABLE {name} AS SELECT 0::bigint AS __pgt_row_id, q.*, 1::bigint AS __pgt_count FROM ({query}) q"
            );
            if let Err(e) = self.try_exec_as(client, &sql, EntryKind::CreateSt(name.to_string())) {
                self.fail_error("creating the simulated stream table failed", &sql, &e);
            }
            let st = StreamTable {
                name: name.to_string(),
                query: query.to_string(),
                mode: "SIMULATED".to_string(),
                requested_mode: mode.to_string(),
            };
            self.sts.push(st.clone());
            self.check_st(client, &st, "right after creation");
            return;
        }
        let sql = create_sql(name, query, mode);
        let actual = match self.try_exec_as(client, &sql, EntryKind::CreateSt(name.to_string())) {
            Ok(()) => mode.to_string(),
            Err(e)
                if mode == "DIFFERENTIAL"
                    && e.as_db_error().is_some_and(|d| d.code().code() == "0A000") =>
            {
                let note = format!(
                    "NOTE {}: DIFFERENTIAL refused for {name} ({query}): {}; checking AUTO instead",
                    self.test,
                    error_text(&e)
                );
                eprintln!("oracle: {note}");
                self.notes.push(note);
                let sql = create_sql(name, query, "AUTO");
                if let Err(e) =
                    self.try_exec_as(client, &sql, EntryKind::CreateSt(name.to_string()))
                {
                    self.fail_error(
                        &format!("create_stream_table in AUTO mode failed after DIFFERENTIAL was refused\nquery: {query}"),
                        &sql,
                        &e,
                    );
                }
                "AUTO".to_string()
            }
            Err(e) => self.fail_error(
                &format!("create_stream_table({name}, mode {mode}) failed\nquery: {query}"),
                &sql,
                &e,
            ),
        };
        let st = StreamTable {
            name: name.to_string(),
            query: query.to_string(),
            mode: actual,
            requested_mode: mode.to_string(),
        };
        self.sts.push(st.clone());
        self.check_st(client, &st, "right after create_stream_table");
    }

    pub fn refresh(&mut self, client: &mut Client, name: &str) {
        let sql = if simulated() {
            let query = self
                .sts
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.query.clone())
                .unwrap_or_default();
            format!(
                "DELETE FROM {name}; INSERT INTO {name} SELECT 0, q.*, 1 FROM ({query}) q{}",
                simulated_bug()
            )
        } else {
            format!("SELECT pgtrickle.refresh_stream_table('{name}')")
        };
        if let Err(e) = self.try_exec(client, &sql) {
            let query = self
                .sts
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.query.clone())
                .unwrap_or_default();
            self.fail_error(
                &format!("refresh_stream_table({name}) failed\nquery: {query}"),
                &sql,
                &e,
            );
        }
    }

    /// Refreshes every stream table, in creation (= dependency) order.
    pub fn refresh_all(&mut self, client: &mut Client) {
        let names: Vec<String> = self.sts.iter().map(|s| s.name.clone()).collect();
        for n in names {
            self.refresh(client, &n);
        }
    }

    fn check_st(&self, client: &mut Client, st: &StreamTable, when: &str) {
        if let Err(diff) = check_matches_query(client, &st.name, &st.query) {
            self.fail_with(
                &format!(
                    "stream table `{}` (mode {}, requested {}) differs from its query {when}\nquery: {}\n{diff}",
                    st.name, st.mode, st.requested_mode, st.query
                ),
                Some(Target::Mismatch { st: st.name.clone(), query: st.query.clone() }),
            );
        }
    }

    /// The oracle for one stream table, with the full report on failure.
    pub fn check(&self, client: &mut Client, name: &str) {
        let st = self
            .sts
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("unknown stream table {name}"))
            .clone();
        self.check_st(client, &st, &format!("after round {}", self.round_no));
    }

    pub fn check_all(&self, client: &mut Client) {
        for st in &self.sts {
            self.check_st(client, st, &format!("after round {}", self.round_no));
        }
    }

    pub fn refresh_and_check_all(&mut self, client: &mut Client) {
        self.refresh_all(client);
        self.check_all(client);
    }

    /// Starts the next round in the log.
    pub fn next_round(&mut self, client: &mut Client) {
        self.round_no += 1;
        let n = self.round_no;
        let sizes: Vec<String> = self
            .tables
            .iter()
            .map(|t| format!("{}={}", t.name, self.row_count(client, &t.name)))
            .collect();
        self.comment(&format!(
            "---- round {n} (source rows: {})",
            sizes.join(", ")
        ));
    }

    /// `cases` rounds of: 0–3 batches of random DML, refresh of every
    /// stream table, oracle on every stream table (sometimes a second
    /// refresh without changes, which must not change anything).
    pub fn run_rounds(&mut self, client: &mut Client, cases: usize) {
        for _ in 0..cases {
            self.next_round(client);
            let batches = match self.rng.below(10) {
                0 => 0,
                1..=6 => 1,
                7 | 8 => 2,
                _ => 3,
            };
            for _ in 0..batches {
                self.random_dml(client);
            }
            self.refresh_and_check_all(client);
            if self.rng.pct(10) {
                self.comment("refresh again without changes");
                self.refresh_and_check_all(client);
            }
        }
    }

    /// Drops every stream table (dependents first) and prints the notes.
    pub fn finish(&mut self, client: &mut Client) {
        if !simulated() {
            // Which path the refreshes took (informational).
            let actions = client.query(
                "SELECT s.pgt_name || ': ' || string_agg(h.action || ' ' || h.n, ', ' ORDER BY h.action)
                   FROM pgtrickle.pgt_stream_tables s
                   JOIN (SELECT pgt_id, action, count(*) AS n FROM pgtrickle.pgt_refresh_history
                          GROUP BY pgt_id, action) h USING (pgt_id)
                  GROUP BY s.pgt_name ORDER BY s.pgt_name",
                &[],
            );
            if let Ok(rows) = actions {
                let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                eprintln!(
                    "oracle: {}: refresh actions: {}",
                    self.test,
                    lines.join("; ")
                );
            }
        }
        let names: Vec<String> = self.sts.iter().rev().map(|s| s.name.clone()).collect();
        for n in names {
            let sql = if simulated() {
                format!("DROP TABLE {n}")
            } else {
                format!("SELECT pgtrickle.drop_stream_table('{n}')")
            };
            self.exec(client, &sql);
        }
        if std::env::var("PGT_ORACLE_KEEP_LOG").is_ok_and(|v| v == "1") {
            let path = std::env::temp_dir()
                .join(format!("pgt-oracle-{}-{:x}.sql", self.test, self.base_seed));
            let _ = std::fs::write(&path, self.log.join("\n") + "\n");
            eprintln!(
                "oracle: {}: SQL log written to {}",
                self.test,
                path.display()
            );
        }
        let sizes: Vec<String> = self
            .tables
            .iter()
            .map(|t| format!("{}={}", t.name, self.row_count(client, &t.name)))
            .collect();
        eprintln!(
            "oracle: {}: {} rounds, {} stream tables ({} in AUTO after DIFFERENTIAL was refused), seed {:#x}: \
             exact (final source rows: {})",
            self.test,
            self.round_no,
            self.sts.len(),
            self.notes.len(),
            self.base_seed,
            sizes.join(", ")
        );
    }
}

/// Seconds the shrinker may spend on a failure: `PGT_PROPTEST_SHRINK_SECS`,
/// default 90; 0 turns shrinking off.
pub fn shrink_budget() -> u64 {
    std::env::var("PGT_PROPTEST_SHRINK_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(90)
}

impl RandomDml {
    /// Delta debugging over the log: drops DML / refresh / create entries
    /// as long as a replay in a scratch database still reproduces `target`.
    /// Returns the minimized script.
    fn shrink(&self, port: u16, target: &Target) -> Result<String, String> {
        let start = std::time::Instant::now();
        let budget = std::time::Duration::from_secs(shrink_budget());
        let entries: Vec<(usize, &str)> = self
            .log
            .iter()
            .enumerate()
            .filter(|(i, _)| self.kinds[*i] != EntryKind::Comment)
            .map(|(i, l)| (i, l.as_str()))
            .collect();
        let fixed: Vec<usize> = entries
            .iter()
            .filter(|(i, _)| self.kinds[*i] == EntryKind::Fixed)
            .map(|(i, _)| *i)
            .collect();
        let mut keep: Vec<usize> = entries
            .iter()
            .filter(|(i, _)| self.kinds[*i] != EntryKind::Fixed)
            .map(|(i, _)| *i)
            .collect();
        let mut attempts = 0usize;
        let mut test = |keep: &[usize]| -> Result<bool, String> {
            attempts += 1;
            let mut lines: Vec<usize> = fixed.iter().chain(keep.iter()).copied().collect();
            lines.sort_unstable();
            self.replay(port, &lines, target, attempts)
        };
        match test(&keep) {
            Ok(true) => {}
            Ok(false) => {
                return Err("a single-session replay of the log does not reproduce it".to_string())
            }
            Err(e) => return Err(e),
        }
        let mut chunk = keep.len().div_ceil(2).max(1);
        'outer: loop {
            let mut removed = false;
            let mut i = 0;
            while i < keep.len() {
                if start.elapsed() > budget {
                    break 'outer;
                }
                let end = (i + chunk).min(keep.len());
                let candidate: Vec<usize> = keep[..i]
                    .iter()
                    .chain(keep[end..].iter())
                    .copied()
                    .collect();
                if test(&candidate).unwrap_or(false) {
                    keep = candidate;
                    removed = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 && !removed {
                break;
            }
            if !removed {
                chunk = chunk.div_ceil(2);
            } else {
                chunk = chunk.min(keep.len().div_ceil(2)).max(1);
            }
        }
        let mut lines: Vec<usize> = fixed.iter().chain(keep.iter()).copied().collect();
        lines.sort_unstable();
        let mut script = String::new();
        let _ = writeln!(
            script,
            "-- {} of {} statements kept after {attempts} replays in {:.0?}{}",
            lines.len(),
            entries.len(),
            start.elapsed(),
            if start.elapsed() > budget {
                " (time budget reached, not minimal)"
            } else {
                ""
            }
        );
        for i in &lines {
            let _ = writeln!(script, "{}", self.log[*i]);
        }
        if let Target::Mismatch { st, query } = target {
            for i in &lines {
                if let EntryKind::CreateSt(name) = &self.kinds[*i] {
                    let _ = writeln!(script, "SELECT pgtrickle.refresh_stream_table('{name}');");
                }
            }
            let _ = writeln!(
                script,
                "-- now {st} differs from its query: compare (SELECT <user-visible columns> FROM {st}) \
                 EXCEPT ALL ({}) both ways",
                query.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        Ok(script)
    }

    /// Runs the log entries `lines` in a new database; true when `target`
    /// shows.
    fn replay(
        &self,
        port: u16,
        lines: &[usize],
        target: &Target,
        attempt: usize,
    ) -> Result<bool, String> {
        let conn = |db: &str| {
            Client::connect(
                &format!("host=127.0.0.1 port={port} user=postgres dbname={db}"),
                postgres::NoTls,
            )
            .map_err(|e| format!("connecting to {db}: {e}"))
        };
        let db = format!("pgt_shrink_{}", attempt % 2);
        let mut admin = conn("postgres")?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db}"),
        ] {
            admin
                .batch_execute(&sql)
                .map_err(|e| format!("creating the scratch database: {}", error_text(&e)))?;
        }
        let result = (|| -> Result<bool, String> {
            let mut c = conn(&db)?;
            c.batch_execute("CREATE EXTENSION pg_trickle")
                .map_err(|e| {
                    format!(
                        "CREATE EXTENSION in the scratch database: {}",
                        error_text(&e)
                    )
                })?;
            let mut sts: Vec<String> = Vec::new();
            for &i in lines {
                let sql = &self.log[i];
                if let Err(e) = c.batch_execute(sql) {
                    let code = e
                        .as_db_error()
                        .map(|d| d.code().code().to_string())
                        .unwrap_or_default();
                    if matches!(target, Target::Error { sql: s, code: k } if s == sql && *k == code)
                    {
                        return Ok(true);
                    }
                    if self.failed[i] && !matches!(target, Target::Error { sql: s, .. } if s == sql)
                    {
                        // It failed in the original run too (e.g. DIFFERENTIAL refused).
                        continue;
                    }
                    return Ok(false);
                }
                if let EntryKind::CreateSt(name) = &self.kinds[i] {
                    sts.push(name.clone());
                }
            }
            let Target::Mismatch { st, query } = target else {
                return Ok(false);
            };
            if !sts.contains(st) {
                return Ok(false);
            }
            for name in &sts {
                let sql = if simulated() {
                    let q = &self
                        .sts
                        .iter()
                        .find(|s| &s.name == name)
                        .expect("known stream table")
                        .query;
                    format!(
                        "DELETE FROM {name}; INSERT INTO {name} SELECT 0, q.*, 1 FROM ({q}) q{}",
                        simulated_bug()
                    )
                } else {
                    format!("SELECT pgtrickle.refresh_stream_table('{name}')")
                };
                if c.batch_execute(&sql).is_err() {
                    return Ok(false);
                }
            }
            Ok(check_matches_query(&mut c, st, query).is_err())
        })();
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        result
    }
}

/// `PGT_ORACLE_SIMULATE=1`: stream tables are plain tables refreshed by
/// DELETE + INSERT of the query. Only to check the harness itself (the
/// generated SQL, the oracle, the timing) without the engine.
pub fn simulated() -> bool {
    std::env::var("PGT_ORACLE_SIMULATE").is_ok_and(|v| v == "1")
}

/// `PGT_ORACLE_SIMULATE_BUG=1` (with `PGT_ORACLE_SIMULATE=1`): simulated
/// refreshes lose rows whose first column is NULL, to see the oracle and the
/// shrinker at work.
fn simulated_bug() -> &'static str {
    if std::env::var("PGT_ORACLE_SIMULATE_BUG").is_ok_and(|v| v == "1") {
        " WHERE q::text NOT LIKE '(,%'"
    } else {
        ""
    }
}

fn create_sql(name: &str, query: &str, mode: &str) -> String {
    assert!(!query.contains("$pgtq$"));
    format!("SELECT pgtrickle.create_stream_table('{name}', $pgtq${query}$pgtq$, NULL, '{mode}')")
}

/// SQLSTATE, message, detail and hint of an error, on one line each.
pub fn error_text(e: &PgError) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                let _ = write!(s, "\n  DETAIL: {d}");
            }
            if let Some(h) = db.hint() {
                let _ = write!(s, "\n  HINT: {h}");
            }
            if let Some(w) = db.where_() {
                let _ = write!(s, "\n  WHERE: {w}");
            }
            s
        }
        None => e.to_string(),
    }
}

/// Quoted names of the user-visible columns of `st` (not `__pgt_*`), in
/// attnum order.
pub fn user_columns(client: &mut Client, st: &str) -> Result<Vec<(String, String)>, String> {
    let rows = client
        .query(
            "SELECT attname::text, quote_ident(attname) FROM pg_attribute
              WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
                AND attname NOT LIKE '\\_\\_pgt\\_%'
              ORDER BY attnum",
            &[&st],
        )
        .map_err(|e| format!("reading the columns of {st}: {}", error_text(&e)))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The oracle: `Ok` when the user-visible columns of `st` equal, as a
/// multiset, a fresh evaluation of `query`; else a report of both
/// differences (and of column-name mismatches).
pub fn check_matches_query(client: &mut Client, st: &str, query: &str) -> Result<(), String> {
    let cols = user_columns(client, st)?;
    if cols.is_empty() {
        return Err(format!("{st} has no user-visible columns"));
    }
    let want: Vec<String> = client
        .prepare(query)
        .map_err(|e| format!("preparing the defining query: {}", error_text(&e)))?
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let have: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
    if have != want {
        return Err(format!(
            "user-visible columns of {st} are {have:?}, the query's are {want:?}"
        ));
    }
    let list = cols
        .iter()
        .map(|(_, q)| q.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let st_sel = format!("SELECT {list} FROM {st}");
    let q_sel = format!("SELECT * FROM ({query}) AS __oracle_q");
    let sql = format!(
        "SELECT 'extra', d::text FROM ({st_sel} EXCEPT ALL {q_sel}) d
         UNION ALL
         SELECT 'missing', d::text FROM ({q_sel} EXCEPT ALL {st_sel}) d"
    );
    let rows = client.query(&sql, &[]).map_err(|e| {
        format!(
            "running the oracle query: {}\noracle SQL: {sql}",
            error_text(&e)
        )
    })?;
    if rows.is_empty() {
        return Ok(());
    }
    let extra: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(0) == "extra")
        .map(|r| r.get(1))
        .collect();
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(0) == "missing")
        .map(|r| r.get(1))
        .collect();
    let count = |sql: &str, client: &mut Client| -> String {
        client
            .query_one(sql, &[])
            .map(|r| r.get::<_, i64>(0).to_string())
            .unwrap_or_else(|e| error_text(&e))
    };
    let st_rows = count(&format!("SELECT count(*) FROM {st}"), client);
    let q_rows = count(&format!("SELECT count(*) FROM ({query}) q"), client);
    let show = |v: &[String]| -> String {
        let mut s: Vec<String> = v.iter().take(60).map(|r| format!("    {r}")).collect();
        if v.len() > 60 {
            s.push(format!("    ... and {} more", v.len() - 60));
        }
        s.join("\n")
    };
    let mut msg =
        format!("stream table has {st_rows} rows, the query returns {q_rows} (columns {have:?})\n");
    let _ = writeln!(
        msg,
        "rows in the stream table but not in the query result ({}):\n{}",
        extra.len(),
        show(&extra)
    );
    let _ = writeln!(
        msg,
        "rows in the query result but not in the stream table ({}):\n{}",
        missing.len(),
        show(&missing)
    );
    Err(msg)
}

/// [`check_matches_query`], panicking with the differences.
pub fn assert_matches_query(client: &mut Client, st: &str, query: &str) {
    if let Err(diff) = check_matches_query(client, st, query) {
        panic!("stream table {st} differs from its query\nquery: {query}\n{diff}");
    }
}
