//! Creating a green: a stream table of its own, built as the blue's owner,
//! populated by a full refresh and then maintained like any other.

use super::{green_name, green_of, relation_exists, retired_name, retired_of};
use crate::catalog::{self, StreamTable};
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::lifecycle::{self, check_owner, CreateRequest};
use crate::refresh::{self, Initiator};
use crate::spi;
use pgtrickle_core::quote::{literal, qualified};

pub struct GreenRequest<'a> {
    pub name: &'a str,
    pub query: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub refresh_mode: Option<&'a str>,
    pub pipeline_group: Option<&'a str>,
}

/// Creates the green of the stream table `req.name` and returns its name.
pub fn create_green(req: GreenRequest) -> PgtResult<String> {
    crate::restore::repair_if_restored()?;
    let blue = catalog::find(req.name)?;
    check_owner(&blue)?;
    check_can_have_green(&blue)?;
    let green = green_name(&blue);
    if relation_exists(&blue.schema, &green) {
        return Err(PgtError::new(
            ErrorKind::DuplicateObject,
            format!("relation \"{}.{green}\" already exists", blue.schema),
        )
        .with_hint("The green of a stream table takes that name; rename or drop the relation."));
    }
    let query = req.query.unwrap_or(&blue.defining_query);
    let schedule = req.schedule.or(blue.schedule.as_deref());
    let mode = req.refresh_mode.unwrap_or(&blue.refresh_mode);
    let green_qualified = qualified(&blue.schema, &green);
    // Built as the blue's owner: the green reads its sources as the blue
    // does, and after promotion the public name keeps its owner.
    let green = spi::as_role(blue.owner(), || -> PgtResult<StreamTable> {
        lifecycle::create(CreateRequest {
            name: &green_qualified,
            query,
            schedule,
            refresh_mode: mode,
            initialize: false,
        })?;
        catalog::find(&green_qualified)
    })?;
    if let Some(read) = reads_downstream_of(&green, &blue) {
        return Err(PgtError::invalid(format!(
            "the green of {} cannot read {}",
            blue.display_name(),
            read.display_name()
        ))
        .with_detail(if read.pgt_id == blue.pgt_id {
            "After promotion it would read its own storage.".to_string()
        } else {
            format!(
                "{} reads {} (directly or through other stream tables): after promotion the green would read itself.",
                read.display_name(),
                blue.display_name()
            )
        })
        .with_hint("Read the sources of the blue instead."));
    }
    spi::as_role(spi::superuser(), || {
        spi::execute(&format!(
            "UPDATE pgtrickle.pgt_stream_tables SET green_of = {}, pipeline_group = {} WHERE pgt_id = {}",
            blue.pgt_id,
            req.pipeline_group
                .map(literal)
                .unwrap_or_else(|| "NULL".into()),
            green.pgt_id
        ));
    });
    copy_indexes(&blue, &green);
    crate::ddl::wal::lifecycle(
        "green_created",
        &blue.schema,
        &blue.name,
        serde_json::json!({ "green": green.display_name(), "pipeline_group": req.pipeline_group }),
    );
    refresh::lock(green.pgt_id, true);
    let green = catalog::load(green.pgt_id).expect("green exists");
    refresh::refresh_locked(&green, Initiator::Initial)?;
    Ok(green.display_name())
}

fn check_can_have_green(blue: &StreamTable) -> PgtResult<()> {
    if blue.green_of.is_some() {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!("stream table {} is itself a green", blue.display_name()),
        )
        .with_hint("Promote or cancel it first."));
    }
    if let Some(current) = blue.retired_by.and_then(catalog::load) {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "stream table {} is retired (replaced by {})",
                blue.display_name(),
                current.display_name()
            ),
        )
        .with_hint("Create the green of the stream table that replaced it."));
    }
    if let Some(green) = green_of(blue) {
        return Err(PgtError::new(
            ErrorKind::DuplicateObject,
            format!(
                "stream table {} already has a green, {}",
                blue.display_name(),
                green.display_name()
            ),
        )
        .with_hint(format!(
            "Promote it (pgtrickle.promote_green) or cancel it: SELECT pgtrickle.cancel_green({}).",
            literal(&blue.display_name())
        )));
    }
    if retired_of(blue).is_some() || relation_exists(&blue.schema, &retired_name(blue)) {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "{}.{} still exists from an earlier promotion",
                blue.schema,
                retired_name(blue)
            ),
        )
        .with_detail("A promotion renames the blue to that name.")
        .with_hint(format!(
            "Drop it first: SELECT pgtrickle.drop_retired({}).",
            literal(&blue.display_name())
        )));
    }
    Ok(())
}

/// The stream table, `blue` or one that reads it directly or through
/// others, that `green` reads, if any.
fn reads_downstream_of(green: &StreamTable, blue: &StreamTable) -> Option<StreamTable> {
    let edges = catalog::stream_table_edges();
    let mut downstream = vec![blue.pgt_id];
    let mut i = 0;
    while i < downstream.len() {
        let upstream = downstream[i];
        for &(reader, source) in &edges {
            if source == upstream && reader != green.pgt_id && !downstream.contains(&reader) {
                downstream.push(reader);
            }
        }
        i += 1;
    }
    edges
        .iter()
        .find(|(reader, source)| *reader == green.pgt_id && downstream.contains(source))
        .and_then(|(_, source)| catalog::load(*source))
}

/// Creates on the green the indexes users made on the blue (readers rely
/// on them after promotion), when the green has every column they cover.
/// pg_trickle's own indexes, on `__pgt_` columns, exist already.
fn copy_indexes(blue: &StreamTable, green: &StreamTable) {
    let rows = spi::query(&format!(
        "SELECT pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.quote_ident(c.relname), \
                (SELECT coalesce(bool_and(ga.attname IS NOT NULL), true)::text \
                   FROM pg_catalog.pg_depend d \
                   JOIN pg_catalog.pg_attribute ba ON ba.attrelid = d.refobjid AND ba.attnum = d.refobjsubid \
                   LEFT JOIN pg_catalog.pg_attribute ga ON ga.attrelid = {g} AND ga.attname = ba.attname \
                        AND ga.atttypid = ba.atttypid AND NOT ga.attisdropped \
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.indexrelid \
                    AND d.refobjid = {b} AND d.refobjsubid > 0) \
           FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
          WHERE i.indrelid = {b} ORDER BY i.indexrelid",
        b = blue.relid.to_u32(),
        g = green.relid.to_u32()
    ));
    for row in rows {
        let (Some(def), Some(index_name), Some(covered)) = (&row[0], &row[1], &row[2]) else {
            continue;
        };
        if def.contains("__pgt_") {
            continue;
        }
        match (covered.as_str(), index_on(def, index_name, &green.qualified_name())) {
            ("true", Some(statement)) => {
                spi::as_role(blue.owner(), || spi::execute(&statement));
            }
            _ => pgrx::notice!(
                "pg_trickle: index {index_name} of {} is not copied to the green, which lacks its columns",
                blue.display_name()
            ),
        }
    }
}

/// `def` (pg_get_indexdef of the index `index_name`) as an unnamed index on
/// `table`: everything from its USING clause on is kept.
fn index_on(def: &str, index_name: &str, table: &str) -> Option<String> {
    let unique = def.starts_with("CREATE UNIQUE INDEX ");
    let head = format!(
        "CREATE {}INDEX {index_name} ON ",
        if unique { "UNIQUE " } else { "" }
    );
    let rest = def.strip_prefix(&head)?;
    let using = rest.find(" USING ")?;
    Some(format!(
        "CREATE {}INDEX ON {table}{}",
        if unique { "UNIQUE " } else { "" },
        &rest[using..]
    ))
}
