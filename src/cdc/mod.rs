//! Trigger-based change capture.
//!
//! One change buffer per source table, shared by every stream table that
//! reads it: `<change_buffer_schema>.changes_<oid>` holds a row per inserted
//! (`I`), deleted (`D`) or updated (`U`) row, stamped with the writing
//! transaction's `xid8`, and a marker row for TRUNCATE. An insert or delete
//! fills the source's column names; an update fills them with the new
//! values and the `old_column` names with the old ones. Statement-level
//! AFTER triggers with transition tables fill it: `capture` copies a
//! statement's rows straight into the buffer, linear in the rows written;
//! TRUNCATE writes its marker through a small PL/pgSQL function.

mod capture;

use crate::config;
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use pgtrickle_core::buffer::{old_column, value_column, OWN_COLUMNS};
use pgtrickle_core::quote::{ident, literal, qualified};
use std::ffi::CString;

/// Names of the objects capturing changes of one source table.
pub struct CdcObjects {
    pub schema: String,
    pub buffer: String,
    pub function: String,
    pub truncate_function: String,
    pub triggers: [String; 4],
}

impl CdcObjects {
    pub fn for_source(source: Oid, schema: &str) -> CdcObjects {
        let oid = source.to_u32();
        CdcObjects {
            schema: schema.to_string(),
            buffer: format!("changes_{oid}"),
            function: format!("pg_trickle_cdc_fn_{oid}"),
            truncate_function: format!("pg_trickle_cdc_truncate_fn_{oid}"),
            triggers: [
                format!("pg_trickle_cdc_ins_{oid}"),
                format!("pg_trickle_cdc_upd_{oid}"),
                format!("pg_trickle_cdc_del_{oid}"),
                format!("pg_trickle_cdc_truncate_{oid}"),
            ],
        }
    }

    /// The buffer of an existing tracked source (wherever it was created):
    /// in the configured schema, else in the default one. Looked up in the
    /// system caches, since every refresh asks.
    pub fn existing(source: Oid) -> Option<CdcObjects> {
        let buffer = format!("changes_{}", source.to_u32());
        let configured = config::change_buffer_schema();
        let found = [configured.as_str(), "pgtrickle_changes"]
            .into_iter()
            .find(|schema| {
                table_oid(schema, &buffer).is_some_and(|relid| unsafe {
                    pg_sys::get_rel_relkind(relid) == pg_sys::RELKIND_RELATION as std::ffi::c_char
                })
            })
            .map(|schema| CdcObjects::for_source(source, schema));
        found
    }

    /// The buffer's OID.
    pub fn relid(&self) -> Option<Oid> {
        table_oid(&self.schema, &self.buffer)
    }

    /// Whether the buffer has a column for the old value of every column
    /// of `source`, so that updates may be captured as `U` rows (buffers
    /// made by older versions lack them until `migrate()`).
    pub fn holds_old_values(&self, source: Oid) -> bool {
        let Some(relid) = self.relid() else {
            return false;
        };
        // SAFETY: both relations are only read here, under AccessShareLock
        // that the refresh holds until commit anyway.
        let names = |relid: Oid| -> Vec<String> {
            let rel = unsafe {
                pgrx::PgRelation::with_lock(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
            };
            let names: Vec<String> = rel
                .tuple_desc()
                .iter()
                .filter(|a| !a.is_dropped())
                .map(|a| a.name().to_string())
                .collect();
            names
        };
        let buffer: std::collections::HashSet<String> = names(relid).into_iter().collect();
        names(source)
            .iter()
            .all(|n| buffer.contains(&old_column(n)))
    }

    pub fn buffer_name(&self) -> String {
        qualified(&self.schema, &self.buffer)
    }
}

/// The OID of relation `name` in `schema`, from the system caches.
fn table_oid(schema: &str, name: &str) -> Option<Oid> {
    let schema = CString::new(schema).ok()?;
    let name = CString::new(name).ok()?;
    let relid = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

fn source_name(source: Oid) -> String {
    spi::query_value(&format!(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = {}",
        source.to_u32()
    ))
    .expect("source table exists")
}

/// (name, type) of the live columns of a table.
fn columns(source: Oid) -> Vec<(String, String)> {
    spi::query(&format!(
        "SELECT attname, pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
         WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        source.to_u32()
    ))
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

/// Adds the columns for old values of updated rows that the buffer lacks
/// (buffers made before updates were captured as one row); returns whether
/// it added any.
fn ensure_old_columns(source: Oid, objects: &CdcObjects) -> bool {
    let buffer = objects.buffer_name();
    let missing: Vec<String> = columns(source)
        .iter()
        .filter(|(n, _)| !buffer_has_column(&buffer, &old_column(n)))
        .map(|(n, t)| format!("ADD COLUMN {} {t}", ident(&old_column(n))))
        .collect();
    if !missing.is_empty()
        && old_values_fit(source, buffer_attributes(&buffer) + missing.len() as i64)
    {
        spi::execute(&format!("ALTER TABLE {buffer} {}", missing.join(", ")));
        return true;
    }
    false
}

/// Whether a buffer with `buffer_columns` attributes can hold the old value
/// of every column of `source`: within PostgreSQL's 1,600 columns, and with
/// a `U` row (both images) fitting a heap page once its variable-length
/// values are moved out of line. Sources too wide for that keep capturing
/// an update as a delete and an insert.
fn old_values_fit(source: Oid, buffer_columns: i64) -> bool {
    const MAX_COLUMNS: i64 = 1600; // MaxHeapAttributeNumber
    const ROW_BYTES: i64 = 7800; // below MaxHeapTupleSize, for headers and alignment
    let width = spi::query_value(&format!(
        "SELECT coalesce(sum(CASE WHEN attlen > 0 THEN attlen ELSE 18 END), 0)::text \
           FROM pg_catalog.pg_attribute WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped",
        source.to_u32()
    ))
    .and_then(|w| w.parse::<i64>().ok())
    .unwrap_or(i64::MAX / 4);
    buffer_columns <= MAX_COLUMNS && 2 * width + 32 + buffer_columns / 8 <= ROW_BYTES
}

/// Attributes of a buffer, dropped ones included (they count against the
/// column limit).
fn buffer_attributes(buffer: &str) -> i64 {
    spi::query_value(&format!(
        "SELECT count(*)::text FROM pg_catalog.pg_attribute WHERE attrelid = {}::regclass AND attnum > 0",
        literal(buffer)
    ))
    .and_then(|n| n.parse().ok())
    .unwrap_or(0)
}

/// The type (`format_type`) of the buffer's column `name`, if it has one.
fn buffer_column_type(buffer: &str, name: &str) -> Option<String> {
    spi::query_value(&format!(
        "SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
          WHERE attrelid = {}::regclass AND attname = {} AND NOT attisdropped",
        literal(buffer),
        literal(name)
    ))
}

fn buffer_has_column(buffer: &str, name: &str) -> bool {
    buffer_column_type(buffer, name).is_some()
}

/// Creates the buffer and triggers of `source` if they do not exist, and
/// adds `pgt_id` to its consumers. Runs as the bootstrap superuser.
pub fn track(source: Oid, pgt_id: i64, consumer_role: Oid) {
    spi::as_role(spi::superuser(), || {
        let existing = CdcObjects::existing(source);
        let objects = match existing {
            Some(objects) => objects,
            None => create_capture(source),
        };
        spi::execute(&format!(
            "INSERT INTO pgtrickle.pgt_change_tracking (source_relid, slot_name, tracked_by_pgt_ids) \
             VALUES ({oid}, 'pgtrickle_{oid}', ARRAY[{pgt_id}]::bigint[]) \
             ON CONFLICT (source_relid) DO UPDATE SET tracked_by_pgt_ids = \
               (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(pgt_change_tracking.tracked_by_pgt_ids || {pgt_id}::bigint) x)",
            oid = source.to_u32()
        ));
        // The owner of the stream table reads the buffer during refreshes.
        spi::execute(&format!(
            "GRANT USAGE ON SCHEMA {} TO {role}; GRANT SELECT ON {} TO {role}",
            ident(&objects.schema),
            objects.buffer_name(),
            role = role_name(consumer_role)
        ));
        // The new consumer may join, filter or group on columns whose
        // updates the capture should split.
        ensure_triggers(source, &objects);
    });
}

/// The columns (attnums) whose change makes the capture split an update of
/// `source` into a `D` and an `I` row, and the transaction that chose them
/// (the UPDATE trigger's third argument); from the relation cache, under
/// the caller's lock on `source`.
pub fn split_columns_in_force(source: Oid) -> Option<(Vec<i16>, u64)> {
    let name = CdcObjects::for_source(source, "").triggers[1].clone();
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(source);
        if rel.is_null() {
            return None;
        }
        let mut found = None;
        let desc = (*rel).trigdesc;
        if !desc.is_null() {
            for i in 0..(*desc).numtriggers as usize {
                let trigger = &*(*desc).triggers.add(i);
                if trigger.tgnargs == 3
                    && std::ffi::CStr::from_ptr(trigger.tgname).to_bytes() == name.as_bytes()
                {
                    let arg = std::ffi::CStr::from_ptr(*trigger.tgargs.add(2)).to_string_lossy();
                    found = pgtrickle_core::buffer::parse_split_columns_arg(&arg);
                }
            }
        }
        pg_sys::RelationClose(rel);
        found
    }
}

/// The columns of `source` that some consumer's differential refresh
/// joins, filters or groups on where it pairs updates (see
/// `dvm::split_columns`). A consumer whose query no longer analyses adds
/// nothing: its refreshes then read moved updates as before.
fn wanted_split_columns(source: Oid) -> Vec<i16> {
    let queries = spi::query(&format!(
        "SELECT s.defining_query FROM pgtrickle.pgt_stream_tables s \
           JOIN pgtrickle.pgt_change_tracking ct ON s.pgt_id = ANY (ct.tracked_by_pgt_ids) \
          WHERE ct.source_relid = {} ORDER BY s.pgt_id",
        source.to_u32()
    ));
    let mut columns = std::collections::BTreeSet::new();
    for query in queries.into_iter().filter_map(|r| r[0].clone()) {
        let found = spi::in_subtransaction(|| {
            let Ok(analysis) = crate::dvm::analyze::analyze(&query) else {
                return Vec::new();
            };
            let plan = crate::refresh::plan_for(&analysis);
            match crate::refresh::pairable_outputs(&plan) {
                Some(outputs) => crate::dvm::split_columns(&analysis, outputs, source),
                None => Vec::new(),
            }
        });
        columns.extend(found.unwrap_or_default());
    }
    columns.into_iter().collect()
}

fn role_name(role: Oid) -> String {
    spi::query_value(&format!(
        "SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles WHERE oid = {}",
        role.to_u32()
    ))
    .expect("role exists")
}

fn create_capture(source: Oid) -> CdcObjects {
    let objects = CdcObjects::for_source(source, &config::change_buffer_schema());
    let schema = ident(&objects.schema);
    if spi::query_value(&format!(
        "SELECT 1::text FROM pg_catalog.pg_namespace WHERE nspname = {}",
        literal(&objects.schema)
    ))
    .is_none()
    {
        spi::execute(&format!(
            "CREATE SCHEMA {schema}; REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"
        ));
    }
    let source_columns = columns(source);
    let pairs = old_values_fit(source, 4 + 2 * source_columns.len() as i64);
    refuse_colliding_columns(source, &source_columns);
    let defs: Vec<String> = source_columns
        .iter()
        .map(|(n, t)| {
            if pairs {
                format!(
                    ", {} {t}, {} {t}",
                    ident(&value_column(n)),
                    ident(&old_column(n))
                )
            } else {
                format!(", {} {t}", ident(&value_column(n)))
            }
        })
        .collect();
    spi::execute(&format!(
        "CREATE TABLE {buffer} (
             change_id bigserial,
             xid pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
             action \"char\" NOT NULL,
             captured_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(){defs}
         );
         COMMENT ON TABLE {buffer} IS {comment}",
        buffer = objects.buffer_name(),
        defs = defs.concat(),
        comment = literal(&format!(
            "pg_trickle change buffer of {}",
            source_name(source)
        )),
    ));
    ensure_truncate_index(&objects);
    ensure_functions(source, &objects);
    ensure_triggers(source, &objects);
    objects
}

/// A partial index over the TRUNCATE markers of a buffer: refreshes ask
/// whether the window holds one, and without it that question reads the
/// whole buffer. It stays empty (and costs writers nothing) until a
/// TRUNCATE. Returns whether it had to be created.
fn ensure_truncate_index(objects: &CdcObjects) -> bool {
    let name = format!("{}_truncates", objects.buffer);
    let exists = spi::query_value(&format!(
        "SELECT pg_catalog.to_regclass({})::text",
        literal(&qualified(&objects.schema, &name))
    ))
    .is_some();
    if !exists {
        spi::execute(&format!(
            "CREATE INDEX {} ON {} (change_id) WHERE action = 'T'",
            ident(&name),
            objects.buffer_name()
        ));
    }
    !exists
}

/// Whether this database's SQL has the C capture function; a 0.1.0
/// catalog before ALTER EXTENSION UPDATE does not, and gets 0.1.0's
/// PL/pgSQL row capture until `migrate()` runs after the update.
fn c_capture_installed() -> bool {
    spi::query_value("SELECT pg_catalog.to_regprocedure('pgtrickle.pg_trickle_capture()')::text")
        .is_some()
}

/// Source columns the buffer also has, quoted, in the source's order: what
/// the PL/pgSQL row capture copies.
/// The source columns the buffer has a value column for, in attribute
/// order: (source column, buffer column), both quoted.
fn captured_columns(source: Oid, objects: &CdcObjects) -> Vec<(String, String)> {
    let buffer = objects.buffer_name();
    columns(source)
        .into_iter()
        .filter(|(n, _)| buffer_has_column(&buffer, &value_column(n)))
        .map(|(n, _)| (ident(&n), ident(&value_column(&n))))
        .collect()
}

/// Refuses a source two of whose columns would need the same buffer
/// column: one named `__pgt_old_<c>` or `__pgt_new_<c>` next to a column
/// `<c>`.
fn refuse_colliding_columns(source: Oid, source_columns: &[(String, String)]) {
    let mut taken: std::collections::HashMap<String, String> = OWN_COLUMNS
        .iter()
        .map(|c| (c.to_string(), "the change buffer itself".to_string()))
        .collect();
    for (n, _) in source_columns {
        for column in [value_column(n), old_column(n)] {
            if let Some(other) = taken.insert(column.clone(), format!("column \"{n}\"")) {
                crate::error::PgtError::invalid(format!(
                    "column \"{n}\" of table {} needs the change buffer column \"{column}\", \
                     which {other} needs too",
                    source_name(source)
                ))
                .with_detail("Names starting with __pgt_ are pg_trickle's internal columns.")
                .with_hint("Rename the column.")
                .raise();
            }
        }
    }
}

/// (function, body) of the PL/pgSQL capture functions: the TRUNCATE
/// marker always, the row capture only without the C function.
fn function_bodies(source: Oid, objects: &CdcObjects, c_rows: bool) -> Vec<(String, String)> {
    let buffer = objects.buffer_name();
    let mut bodies = vec![(
        qualified(&objects.schema, &objects.truncate_function),
        format!(
            "
BEGIN
    INSERT INTO {buffer} (action) VALUES ('T');
    RETURN NULL;
END
"
        ),
    )];
    if !c_rows {
        let captured = captured_columns(source, objects);
        let cols: String = captured.iter().map(|(c, _)| format!(", {c}")).collect();
        let into: String = captured.iter().map(|(_, b)| format!(", {b}")).collect();
        bodies.push((
            qualified(&objects.schema, &objects.function),
            format!(
                "
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {buffer} (action{into}) SELECT 'I'{cols} FROM __pgt_new;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO {buffer} (action{into})
        SELECT 'D'{cols} FROM __pgt_old UNION ALL SELECT 'I'{cols} FROM __pgt_new;
    ELSE
        INSERT INTO {buffer} (action{into}) SELECT 'D'{cols} FROM __pgt_old;
    END IF;
    RETURN NULL;
END
"
            ),
        ));
    }
    bodies
}

/// Creates or replaces the capture functions whose body differs from this
/// version's; returns the functions it wrote.
fn ensure_functions(source: Oid, objects: &CdcObjects) -> Vec<String> {
    let mut written = Vec::new();
    for (function, body) in function_bodies(source, objects, c_capture_installed()) {
        let current = spi::query_value(&format!(
            "SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = pg_catalog.to_regprocedure({})",
            literal(&format!("{function}()"))
        ));
        if current.as_deref() == Some(body.as_str()) {
            continue;
        }
        spi::execute(&format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
             SET search_path = pg_catalog, pg_temp AS {}; \
             REVOKE ALL ON FUNCTION {function}() FROM PUBLIC",
            literal(&body)
        ));
        written.push(function);
    }
    written
}

/// Creates the capture triggers that are missing, and replaces those that
/// call another function than this version's (0.1.0 captured rows with a
/// PL/pgSQL function per source, which then goes); returns the triggers
/// written.
fn ensure_triggers(source: Oid, objects: &CdcObjects) -> Vec<String> {
    let src = source_name(source);
    let c_rows = c_capture_installed();
    let (rows, rows_function) = if c_rows {
        (
            format!(
                "pgtrickle.pg_trickle_capture({}, {})",
                literal(&objects.schema),
                literal(&objects.buffer)
            ),
            "pgtrickle.pg_trickle_capture()".to_string(),
        )
    } else {
        let f = qualified(&objects.schema, &objects.function);
        (format!("{f}()"), format!("{f}()"))
    };
    let truncate_function = qualified(&objects.schema, &objects.truncate_function);
    let definitions = [
        (format!("AFTER INSERT ON {src} REFERENCING NEW TABLE AS __pgt_new FOR EACH STATEMENT EXECUTE FUNCTION {rows}"), rows_function.clone()),
        (format!("AFTER UPDATE ON {src} REFERENCING OLD TABLE AS __pgt_old NEW TABLE AS __pgt_new FOR EACH STATEMENT EXECUTE FUNCTION {rows}"), rows_function.clone()),
        (format!("AFTER DELETE ON {src} REFERENCING OLD TABLE AS __pgt_old FOR EACH STATEMENT EXECUTE FUNCTION {rows}"), rows_function.clone()),
        (format!("AFTER TRUNCATE ON {src} FOR EACH STATEMENT EXECUTE FUNCTION {truncate_function}()"), format!("{truncate_function}()")),
    ];
    // Updates changing these columns are split (third argument of the
    // UPDATE trigger). The list only grows while the capture exists: a
    // refresh counts on it for every change since the transaction that
    // wrote it, which a shorter list would break.
    let split_on: Vec<i16> = if c_rows {
        let current = split_columns_in_force(source)
            .map(|(c, _)| c)
            .unwrap_or_default();
        let mut all: std::collections::BTreeSet<i16> = current.into_iter().collect();
        all.extend(wanted_split_columns(source));
        all.into_iter().collect()
    } else {
        Vec::new()
    };
    let mut written = Vec::new();
    for (k, (name, (definition, function))) in objects.triggers.iter().zip(definitions).enumerate()
    {
        let splits = k == 1 && !split_on.is_empty();
        let nargs = match (c_rows && function == rows_function, splits) {
            (false, _) => 0,
            (true, false) => 2,
            (true, true) => 3,
        };
        let current = spi::query(&format!(
            "SELECT (t.tgfoid = pg_catalog.to_regprocedure({}) AND t.tgnargs = {nargs})::text, \
                    pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), E'\\\\000', 3) \
               FROM pg_catalog.pg_trigger t WHERE t.tgrelid = {} AND t.tgname = {}",
            literal(&function),
            source.to_u32(),
            literal(name)
        ));
        let same_split = |arg: Option<&str>| {
            !splits
                || arg
                    .and_then(pgtrickle_core::buffer::parse_split_columns_arg)
                    .is_some_and(|(columns, _)| columns == split_on)
        };
        if let Some(row) = current.first() {
            if row[0].as_deref() == Some("true") && same_split(row[1].as_deref()) {
                continue;
            }
        }
        let definition = if splits {
            // The transaction writing the list: the refresh trusts it for
            // changes after it (this takes a lock writers hold off).
            let since = spi::query_value("SELECT pg_catalog.pg_current_xact_id()::text")
                .and_then(|x| x.parse::<u64>().ok())
                .expect("a transaction id");
            let call = rows.strip_suffix(')').expect("a call");
            let head = definition.strip_suffix(&rows).expect("ends with the call");
            format!(
                "{head}{call}, {})",
                literal(&pgtrickle_core::buffer::split_columns_arg(&split_on, since))
            )
        } else {
            definition
        };
        // OR REPLACE: its lock (SHARE ROW EXCLUSIVE, like CREATE) lets
        // refreshes reading the source go on, where DROP TRIGGER's ACCESS
        // EXCLUSIVE would wait for them, and deadlock with one that waits
        // for this transaction (a restore's repair, say).
        spi::execute(&format!(
            "CREATE OR REPLACE TRIGGER {} {definition}",
            ident(name)
        ));
        written.push(name.clone());
    }
    // The PL/pgSQL row capture of 0.1.0, if this source had one.
    let legacy = format!("{}()", qualified(&objects.schema, &objects.function));
    if c_rows
        && spi::query_value(&format!(
            "SELECT pg_catalog.to_regprocedure({})::text",
            literal(&legacy)
        ))
        .is_some()
    {
        spi::execute(&format!("DROP FUNCTION {legacy}"));
    }
    written
}

/// Brings the capture objects of every tracked source to this version's
/// shape: missing buffers, functions and triggers are created, functions
/// with another body replaced. Returns (object, action) for each object, so
/// that running it twice reports nothing to do the second time.
pub fn migrate_all() -> Vec<(String, String)> {
    spi::as_role(spi::superuser(), || {
        let sources: Vec<Oid> = spi::query(
            "SELECT t.source_relid::bigint::text FROM pgtrickle.pgt_change_tracking t \
               JOIN pg_catalog.pg_class c ON c.oid = t.source_relid ORDER BY 1",
        )
        .into_iter()
        .filter_map(|r| {
            r[0].as_ref()
                .and_then(|v| v.parse::<u32>().ok())
                .map(Oid::from)
        })
        .collect();
        let mut report = Vec::new();
        for source in sources {
            let before = report.len();
            let objects = match CdcObjects::existing(source) {
                Some(objects) => objects,
                None => {
                    let objects = create_capture(source);
                    report.push((objects.buffer_name(), "created".to_string()));
                    objects
                }
            };
            if ensure_old_columns(source, &objects) {
                report.push((
                    format!(
                        "columns for old values of updated rows in {}",
                        objects.buffer_name()
                    ),
                    "created".to_string(),
                ));
            }
            if ensure_truncate_index(&objects) {
                report.push((
                    format!("index of TRUNCATE markers in {}", objects.buffer_name()),
                    "created".to_string(),
                ));
            }
            for function in ensure_functions(source, &objects) {
                report.push((format!("{function}()"), "replaced".to_string()));
            }
            for trigger in ensure_triggers(source, &objects) {
                report.push((
                    format!("trigger {trigger} on {}", source_name(source)),
                    "created".to_string(),
                ));
            }
            if report.len() == before {
                report.push((objects.buffer_name(), "unchanged".to_string()));
            }
        }
        report
    })
}

/// Removes `pgt_id` from the consumers of every source; drops the capture
/// objects of sources no stream table consumes any more.
pub fn untrack_all(pgt_id: i64) {
    for source in crate::catalog::tracked_sources(pgt_id) {
        untrack(source, pgt_id);
    }
}

/// Removes `pgt_id` from the consumers of `source`; drops its capture
/// objects when no stream table consumes it any more.
pub fn untrack(source: Oid, pgt_id: i64) {
    spi::as_role(spi::superuser(), || {
        let remaining = spi::query_value(&format!(
            "UPDATE pgtrickle.pgt_change_tracking SET tracked_by_pgt_ids = array_remove(tracked_by_pgt_ids, {pgt_id}::bigint) \
             WHERE source_relid = {oid} RETURNING coalesce(cardinality(tracked_by_pgt_ids), 0)::text",
            oid = source.to_u32()
        ));
        if remaining.as_deref() == Some("0") {
            drop_capture(source);
        }
    });
}

fn drop_capture(source: Oid) {
    let oid = source.to_u32();
    if let Some(objects) = CdcObjects::existing(source) {
        let table_exists = spi::query_value(&format!(
            "SELECT 1::text FROM pg_catalog.pg_class WHERE oid = {oid}"
        ))
        .is_some();
        if table_exists {
            let src = source_name(source);
            for trigger in &objects.triggers {
                spi::execute(&format!(
                    "DROP TRIGGER IF EXISTS {} ON {src}",
                    ident(trigger)
                ));
            }
        }
        // Whichever of the functions exist (0.1.0 had a row function too).
        let functions = spi::query(&format!(
            "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p \
              WHERE p.pronamespace = {}::regnamespace AND p.proname IN ({}, {})",
            literal(&ident(&objects.schema)),
            literal(&objects.function),
            literal(&objects.truncate_function)
        ));
        for f in functions
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            spi::execute(&format!("DROP FUNCTION {f}"));
        }
        spi::execute(&format!("DROP TABLE IF EXISTS {}", objects.buffer_name()));
    }
    spi::execute(&format!(
        "DELETE FROM pgtrickle.pgt_change_tracking WHERE source_relid = {oid}"
    ));
}

/// Drops the capture of `source` whatever consumes it (used when the
/// source itself, a stream table's storage, goes away).
pub fn drop_capture_of(source: Oid) {
    spi::as_role(spi::superuser(), || {
        if spi::query_value(&format!(
            "SELECT 1::text FROM pgtrickle.pgt_change_tracking WHERE source_relid = {}",
            source.to_u32()
        ))
        .is_some()
        {
            drop_capture(source);
        }
    });
}

/// Brings the buffer of `source` in line with column changes of the source
/// (new columns added, renames followed, retyped columns retyped — their
/// pending values are not needed: every consumer refreshes in full or
/// stops), then rewrites the capture functions for the columns both have.
pub fn follow_column_changes(source: Oid, changes: &[crate::ddl::ColumnChange]) {
    use crate::ddl::ColumnChange;
    let Some(objects) = CdcObjects::existing(source) else {
        return;
    };
    let buffer = objects.buffer_name();
    let has = |name: &str| buffer_has_column(&buffer, name);
    let renamed_to = |name: &str| {
        changes.iter().find_map(|c| match c {
            ColumnChange::Renamed { from, to } if from == name => Some(to.clone()),
            _ => None,
        })
    };
    // Whether the buffer keeps old values: every source column it has also
    // has its old-value column.
    let keeps_old_values = columns(source)
        .iter()
        .filter(|(n, _)| has(&value_column(n)))
        .all(|(n, _)| has(&old_column(n)));
    // Each source column has two buffer columns: its value, and its old
    // value in updates.
    let pair = |name: &str| [value_column(name), old_column(name)];
    for change in changes {
        match change {
            ColumnChange::Added { name, type_sql } => {
                match buffer_column_type(&buffer, &value_column(name)) {
                    None => {
                        spi::execute(&format!(
                            "ALTER TABLE {buffer} ADD COLUMN {} {type_sql}",
                            ident(&value_column(name))
                        ));
                    }
                    // The buffer columns of a dropped column of that name:
                    // their values were the dropped column's, which no
                    // consumer reads any more.
                    Some(was) if &was != type_sql => {
                        for column in pair(name) {
                            if has(&column) {
                                spi::execute(&format!(
                                    "ALTER TABLE {buffer} ALTER COLUMN {} TYPE {type_sql} USING NULL",
                                    ident(&column)
                                ));
                            }
                        }
                    }
                    Some(_) => {}
                }
                // Its old value too, if the buffer keeps old values (else
                // updates go on being captured as a delete and an insert).
                let old = old_column(name);
                if !has(&old)
                    && keeps_old_values
                    && old_values_fit(source, buffer_attributes(&buffer) + 1)
                {
                    spi::execute(&format!(
                        "ALTER TABLE {buffer} ADD COLUMN {} {type_sql}",
                        ident(&old)
                    ));
                }
            }
            ColumnChange::Renamed { from, to } => {
                for (from, to) in pair(from).into_iter().zip(pair(to)) {
                    if has(&from) && !has(&to) {
                        spi::execute(&format!(
                            "ALTER TABLE {buffer} RENAME COLUMN {} TO {}",
                            ident(&from),
                            ident(&to)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    for change in changes {
        if let ColumnChange::Retyped { name, to, .. } = change {
            let name = renamed_to(name).unwrap_or_else(|| name.clone());
            for column in pair(&name) {
                if has(&column) {
                    spi::execute(&format!(
                        "ALTER TABLE {buffer} ALTER COLUMN {col} TYPE {to} USING NULL",
                        col = ident(&column)
                    ));
                }
            }
        }
    }
    ensure_functions(source, &objects);
}
