//! Promotion and rollback: the public name passes from one stream table to
//! another in one transaction.
//!
//! Order of work, the same for every swap: the refresh locks of every
//! stream table involved (the two swapped and the ones reading the leaving
//! one), ascending by id, so that none is mid-refresh; then the two storage
//! tables' ACCESS EXCLUSIVE locks, ascending by OID; then the renames and
//! catalog updates, which are catalog-only work. Readers of the public name
//! wait for that short window and then read the arriving table.

use super::converge::convergence;
use super::{green_name, pair, relation_exists, retired_name, retired_of};
use crate::catalog::{self, StreamTable};
use crate::cdc;
use crate::ddl::columns::snapshot_json;
use crate::dvm::analyze::analyze;
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::lifecycle::{check_owner, expanded_query};
use crate::refresh::{self, Initiator};
use crate::spi;
use pgtrickle_core::dag::topological_order;
use pgtrickle_core::quote::{ident, literal};
use std::collections::BTreeSet;

/// One row of `promote_all_green`.
pub struct Outcome {
    pub stream_table: String,
    pub green: String,
    pub action: &'static str,
    pub detail: String,
}

/// `arriving` takes the name of `leaving`, which is renamed `leaving_name`.
struct Swap<'a> {
    leaving: &'a StreamTable,
    arriving: &'a StreamTable,
    leaving_name: String,
}

/// Stream tables reading `st`, except `but`.
fn readers(st: &StreamTable, but: &StreamTable) -> Vec<StreamTable> {
    catalog::dependents(st.pgt_id)
        .into_iter()
        .filter(|&id| id != but.pgt_id)
        .filter_map(catalog::load)
        .collect()
}

/// Every stream table whose query names `relid`.
fn naming(relids: &[u32]) -> Vec<StreamTable> {
    let list = relids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    spi::as_role(spi::superuser(), || {
        spi::query(&format!(
            "SELECT DISTINCT pgt_id::text FROM pgtrickle.pgt_dependencies WHERE source_relid IN ({list}) ORDER BY 1"
        ))
    })
    .into_iter()
    .filter_map(|r| r[0].as_deref().and_then(|v| v.parse().ok()))
    .filter_map(catalog::load)
    .collect()
}

/// Takes the refresh locks of `ids`, ascending, waiting for running refreshes.
fn lock_refreshes(ids: impl IntoIterator<Item = i64>) {
    for id in ids.into_iter().collect::<BTreeSet<_>>() {
        refresh::lock(id, true);
    }
}

/// Refuses when a reader of `leaving` that would read `arriving` afterwards
/// uses a column that `arriving` lacks or types differently.
fn check_compatible(
    leaving: &StreamTable,
    arriving: &StreamTable,
    moving_readers: &[&StreamTable],
) -> PgtResult<()> {
    check_row_security(leaving, arriving)?;
    let arriving_readers = catalog::dependents(arriving.pgt_id);
    for reader in moving_readers {
        if arriving_readers.contains(&reader.pgt_id) {
            return Err(PgtError::new(
                ErrorKind::ObjectState,
                format!(
                    "stream table {} reads both {} and {}",
                    reader.display_name(),
                    leaving.display_name(),
                    arriving.display_name()
                ),
            )
            .with_detail("After the swap both of its references would name the same table.")
            .with_hint(format!(
                "Drop {} or change it to read only one of them first.",
                reader.display_name()
            )));
        }
    }
    for reader in moving_readers {
        let missing = spi::as_role(spi::superuser(), || {
            spi::query(&format!(
                "SELECT u.col || ' (' || coalesce(pg_catalog.format_type(b.atttypid, b.atttypmod), '?') || ')' || \
                        CASE WHEN g.attname IS NULL THEN ' is missing' \
                             ELSE ' is ' || pg_catalog.format_type(g.atttypid, g.atttypmod) END \
                   FROM pgtrickle.pgt_dependencies d, unnest(d.columns_used) u(col) \
                   LEFT JOIN pg_catalog.pg_attribute b ON b.attrelid = {l} AND b.attname = u.col AND NOT b.attisdropped \
                   LEFT JOIN pg_catalog.pg_attribute g ON g.attrelid = {a} AND g.attname = u.col AND NOT g.attisdropped \
                  WHERE d.pgt_id = {r} AND d.source_relid = {l} \
                    AND (g.attname IS NULL OR (g.atttypid, g.atttypmod) IS DISTINCT FROM (b.atttypid, b.atttypmod)) \
                  ORDER BY 1",
                l = leaving.relid.to_u32(),
                a = arriving.relid.to_u32(),
                r = reader.pgt_id
            ))
        });
        let problems: Vec<String> = missing.into_iter().filter_map(|r| r[0].clone()).collect();
        if !problems.is_empty() {
            return Err(PgtError::new(
                ErrorKind::ObjectState,
                format!(
                    "stream table {} reads {} and would read {} instead, where column {}",
                    reader.display_name(),
                    leaving.display_name(),
                    arriving.display_name(),
                    problems.join(", ")
                ),
            )
            .with_detail("After the swap it would read the other table under the same name.")
            .with_hint(format!(
                "Give the new query the columns {} uses (cancel_green, then create_green again), \
                 or redeploy {0} too, with a green in the same pipeline group.",
                reader.display_name()
            )));
        }
    }
    Ok(())
}

/// Refuses when `leaving` protects its rows with row-level security that
/// `arriving` lacks: readers of the public name would see every row.
fn check_row_security(leaving: &StreamTable, arriving: &StreamTable) -> PgtResult<()> {
    let missing = spi::query(&format!(
        "SELECT 'row level security' FROM pg_catalog.pg_class b, pg_catalog.pg_class g \
          WHERE b.oid = {l} AND g.oid = {a} AND ((b.relrowsecurity AND NOT g.relrowsecurity) \
                OR (b.relforcerowsecurity AND NOT g.relforcerowsecurity)) \
         UNION ALL \
         SELECT 'policy ' || pg_catalog.quote_ident(p.polname) FROM pg_catalog.pg_policy p \
          WHERE p.polrelid = {l} \
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy q WHERE q.polrelid = {a} AND q.polname = p.polname)",
        l = leaving.relid.to_u32(),
        a = arriving.relid.to_u32()
    ));
    let missing: Vec<String> = missing.into_iter().filter_map(|r| r[0].clone()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PgtError::new(
        ErrorKind::ObjectState,
        format!(
            "{} protects its rows with {} that {} lacks",
            leaving.display_name(),
            missing.join(", "),
            arriving.display_name()
        ),
    )
    .with_detail("After the swap, readers of the name would see rows the policies hide now.")
    .with_hint(format!(
        "Set up the same row-level security on {} first (ALTER TABLE ... ENABLE ROW LEVEL SECURITY, CREATE POLICY ...).",
        arriving.display_name()
    )))
}

/// Carries the privileges granted on `from` (on the table and on its
/// columns) over to `to`, so that the roles reading the public name keep
/// reading it.
fn copy_grants(from: &StreamTable, to: &StreamTable, to_name: &str) {
    let column_grants = spi::query(&format!(
        "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, \
                a.is_grantable::text, pg_catalog.quote_ident(att.attname) \
           FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a \
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
          WHERE att.attrelid = {} AND att.attnum > 0 AND NOT att.attisdropped \
            AND EXISTS (SELECT FROM pg_catalog.pg_attribute t WHERE t.attrelid = {} AND t.attname = att.attname AND NOT t.attisdropped)",
        from.relid.to_u32(),
        to.relid.to_u32()
    ));
    for g in column_grants {
        let (Some(privilege), Some(grantee), Some(grantable), Some(column)) =
            (&g[0], &g[1], &g[2], &g[3])
        else {
            continue;
        };
        spi::execute(&format!(
            "GRANT {privilege} ({column}) ON {to_name} TO {grantee}{}",
            if grantable == "true" {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    let grants = spi::query(&format!(
        "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, \
                a.is_grantable::text \
           FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a \
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
          WHERE c.oid = {} AND a.grantee <> (SELECT relowner FROM pg_catalog.pg_class WHERE oid = {})",
        from.relid.to_u32(),
        to.relid.to_u32()
    ));
    for g in grants {
        let (Some(privilege), Some(grantee), Some(grantable)) = (&g[0], &g[1], &g[2]) else {
            continue;
        };
        spi::execute(&format!(
            "GRANT {privilege} ON {to_name} TO {grantee}{}",
            if grantable == "true" {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
}

/// Runs one swap; the caller holds the refresh locks. Readers of the
/// leaving table follow the name to the arriving one (and refresh in full
/// once, since its contents differ), except `staying`, which keep reading
/// the leaving one under its new name. Returns how long the storage
/// tables were locked, in milliseconds.
fn execute(swap: &Swap, staying: &BTreeSet<i64>) -> PgtResult<f64> {
    let (leaving, arriving) = (swap.leaving, swap.arriving);
    let moving: Vec<StreamTable> = readers(leaving, arriving)
        .into_iter()
        .filter(|r| !staying.contains(&r.pgt_id))
        .collect();
    // Queries that name the arriving table, or the leaving one and stay
    // with it, analysed before the renames: their trees refer to tables by
    // OID, so printed afterwards they carry the new names. The moving
    // readers' queries keep naming the public name, now the arriving table.
    let renamed: Vec<(i64, crate::dvm::analyze::Analysis)> =
        naming(&[leaving.relid.to_u32(), arriving.relid.to_u32()])
            .into_iter()
            .filter(|st| !moving.iter().any(|m| m.pgt_id == st.pgt_id))
            .map(|st| analyze(&st.defining_query).map(|a| (st.pgt_id, a)))
            .collect::<PgtResult<_>>()?;
    let mut relids = [leaving.relid.to_u32(), arriving.relid.to_u32()];
    relids.sort();
    let held_ms = spi::as_role(spi::superuser(), || -> PgtResult<f64> {
        for relid in relids {
            spi::execute(&format!(
                "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
                if relid == leaving.relid.to_u32() {
                    leaving.qualified_name()
                } else {
                    arriving.qualified_name()
                }
            ));
        }
        let locked_at =
            spi::query_value("SELECT pg_catalog.clock_timestamp()::text").expect("clock");
        crate::ddl::as_own_ddl(|| {
            spi::execute(&format!(
                "ALTER TABLE {} RENAME TO {}",
                leaving.qualified_name(),
                ident(&swap.leaving_name)
            ));
            spi::execute(&format!(
                "ALTER TABLE {} RENAME TO {}",
                arriving.qualified_name(),
                ident(&leaving.name)
            ));
        });
        // One row at a time: the (schema, name) key is checked per row.
        for (pgt_id, name) in [
            (leaving.pgt_id, &swap.leaving_name),
            (arriving.pgt_id, &leaving.name),
        ] {
            spi::execute(&format!(
                "UPDATE pgtrickle.pgt_stream_tables SET pgt_name = {}, updated_at = pg_catalog.now() \
                  WHERE pgt_id = {pgt_id}",
                literal(name)
            ));
        }
        for (pgt_id, analysis) in &renamed {
            catalog::set_query(*pgt_id, &expanded_query(analysis), analysis.query);
        }
        // The moving readers' text names the public name, which is now the
        // arriving table: their analysed form must say so too.
        for reader in &moving {
            let analysis = analyze(&reader.defining_query)?;
            catalog::set_query(reader.pgt_id, &reader.defining_query, analysis.query);
        }
        let snapshot = snapshot_json(arriving.relid);
        for reader in &moving {
            let tracked = catalog::tracked_sources(reader.pgt_id).contains(&leaving.relid);
            spi::execute(&format!(
                "UPDATE pgtrickle.pgt_dependencies SET source_relid = {}, column_snapshot = {}::jsonb, \
                        schema_fingerprint = pgtrickle.pg_trickle_hash({})::text \
                  WHERE pgt_id = {} AND source_relid = {}",
                arriving.relid.to_u32(),
                literal(&snapshot),
                literal(&snapshot),
                reader.pgt_id,
                leaving.relid.to_u32()
            ));
            if tracked {
                cdc::untrack(leaving.relid, reader.pgt_id);
                cdc::track(arriving.relid, reader.pgt_id, reader.owner());
            }
            spi::execute(&format!(
                "UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true WHERE pgt_id = {}",
                reader.pgt_id
            ));
        }
        copy_grants(
            leaving,
            arriving,
            &pgtrickle_core::quote::qualified(&leaving.schema, &leaving.name),
        );
        Ok(spi::query_value(&format!(
            "SELECT (extract(epoch FROM pg_catalog.clock_timestamp() - {}::timestamptz) * 1000)::float8::text",
            literal(&locked_at)
        ))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
    })?;
    Ok(held_ms)
}

fn announce(event: &str, public: &StreamTable, detail: serde_json::Value) {
    crate::ddl::wal::lifecycle(event, &public.schema, &public.name, detail.clone());
    let payload = serde_json::json!({
        "event": event,
        "schema": public.schema,
        "name": public.name,
        "detail": detail,
    });
    spi::execute(&format!(
        "SELECT pg_catalog.pg_notify('pg_trickle_alert', {})",
        literal(&payload.to_string())
    ));
}

fn link(sets: &str, pgt_id: i64) {
    spi::as_role(spi::superuser(), || {
        spi::execute(&format!(
            "UPDATE pgtrickle.pgt_stream_tables SET {sets} WHERE pgt_id = {pgt_id}"
        ))
    });
}

fn require_free(schema: &str, name: &str, what: &str, public: &str) -> PgtResult<()> {
    if relation_exists(schema, name) {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!("{schema}.{name} already exists, and {what} needs that name"),
        )
        .with_hint(format!(
            "Drop it first (SELECT pgtrickle.drop_retired({}) if it is a retired stream table).",
            literal(public)
        )));
    }
    Ok(())
}

/// Why `green` may not replace `blue` now; None when it may.
fn not_ready(
    blue: &StreamTable,
    green: &StreamTable,
    force: bool,
    max_lag: Option<&str>,
    moving_readers: &[&StreamTable],
) -> Option<PgtError> {
    if let Err(e) = require_free(
        &blue.schema,
        &retired_name(blue),
        "promotion",
        &blue.display_name(),
    ) {
        return Some(e);
    }
    if !force {
        let c = convergence(blue, green, max_lag);
        if !c.converged {
            return Some(
                PgtError::new(
                    ErrorKind::ObjectState,
                    format!(
                        "green {} has not converged with {}: {}",
                        green.display_name(),
                        blue.display_name(),
                        c.reason.unwrap_or_default()
                    ),
                )
                .with_hint(format!(
                    "Refresh it (SELECT pgtrickle.refresh_stream_table({})) or wait for its schedule, \
                     check with pgtrickle.green_status({}), or promote anyway with force => true.",
                    literal(&green.display_name()),
                    literal(&blue.display_name())
                )),
            );
        }
    }
    check_compatible(blue, green, moving_readers).err()
}

/// Promotes the green of `name` (the blue's or the green's name); returns
/// how long the storage tables were locked, in milliseconds.
pub fn promote(name: &str, force: bool, max_lag: Option<&str>) -> PgtResult<f64> {
    crate::restore::repair_if_restored()?;
    let (blue, green) = pair(name)?;
    check_owner(&blue)?;
    let moving = readers(&blue, &green);
    lock_refreshes(
        [blue.pgt_id, green.pgt_id]
            .into_iter()
            .chain(moving.iter().map(|r| r.pgt_id)),
    );
    let blue = catalog::load(blue.pgt_id).expect("locked");
    let green = catalog::load(green.pgt_id).expect("locked");
    still_paired(&blue, &green)?;
    let moving: Vec<&StreamTable> = moving.iter().collect();
    if let Some(e) = not_ready(&blue, &green, force, max_lag, &moving) {
        return Err(e);
    }
    promote_locked(&blue, &green, &BTreeSet::new())
}

/// What was read before the locks may have changed while waiting for them
/// (another promotion or rollback of the same pair).
fn still_paired(blue: &StreamTable, green: &StreamTable) -> PgtResult<()> {
    if green.green_of == Some(blue.pgt_id) && blue.retired_by.is_none() {
        return Ok(());
    }
    Err(PgtError::new(
        ErrorKind::ObjectState,
        format!(
            "{} is no longer the green of {}: another promotion, rollback or cancel changed them meanwhile",
            green.display_name(),
            blue.display_name()
        ),
    )
    .with_hint("Look at pgtrickle.pgt_status() and run the command again if it still applies."))
}

fn promote_locked(
    blue: &StreamTable,
    green: &StreamTable,
    staying: &BTreeSet<i64>,
) -> PgtResult<f64> {
    let retired = retired_name(blue);
    let held = execute(
        &Swap {
            leaving: blue,
            arriving: green,
            leaving_name: retired.clone(),
        },
        staying,
    )?;
    link(&format!("retired_by = {}", green.pgt_id), blue.pgt_id);
    link("green_of = NULL", green.pgt_id);
    // The retired table is kept as it is, not maintained: it consumes no
    // changes (buffers are cleaned without it) and rollback_green brings it
    // up to date with a full refresh first.
    cdc::untrack_all(blue.pgt_id);
    link("status = 'SUSPENDED', needs_reinit = true", blue.pgt_id);
    let public = catalog::load(green.pgt_id).expect("promoted");
    announce(
        "green_promoted",
        &public,
        serde_json::json!({ "retired": format!("{}.{retired}", blue.schema), "lock_ms": held }),
    );
    Ok(held)
}

/// Promotes every green (of `group`, or all), group by group: a group only
/// when each of its greens is ready, in dependency order. A green without a
/// group is a group of its own.
pub fn promote_all(group: Option<&str>) -> PgtResult<Vec<Outcome>> {
    crate::restore::repair_if_restored()?;
    let all = catalog::all();
    let ids: Vec<i64> = all.iter().map(|st| st.pgt_id).collect();
    let order = topological_order(&ids, &catalog::stream_table_edges()).unwrap_or(ids);
    let greens: Vec<StreamTable> = order
        .iter()
        .filter_map(|id| all.iter().find(|st| st.pgt_id == *id))
        .filter(|st| st.green_of.is_some())
        .filter(|st| group.is_none() || st.pipeline_group.as_deref() == group)
        .cloned()
        .collect();
    let mut partitions: Vec<Vec<StreamTable>> = Vec::new();
    for green in greens {
        match partitions
            .iter_mut()
            .find(|p| green.pipeline_group.is_some() && p[0].pipeline_group == green.pipeline_group)
        {
            Some(p) => p.push(green),
            None => partitions.push(vec![green]),
        }
    }
    let mut outcomes = Vec::new();
    for members in partitions {
        outcomes.extend(promote_partition(&members)?);
    }
    Ok(outcomes)
}

/// Every pair of a group skipped because of `who`'s reason `why`.
fn skipped(pairs: &[(StreamTable, StreamTable)], who: &str, why: &str) -> Vec<Outcome> {
    pairs
        .iter()
        .map(|(blue, green)| Outcome {
            stream_table: blue.display_name(),
            green: green.display_name(),
            action: "skipped",
            detail: if green.display_name() == who {
                why.to_string()
            } else {
                format!("{who} of the same pipeline group is not ready: {why}")
            },
        })
        .collect()
}

fn promote_partition(members: &[StreamTable]) -> PgtResult<Vec<Outcome>> {
    let pairs: Vec<(StreamTable, StreamTable)> = members
        .iter()
        .map(|g| pair(&g.qualified_name()))
        .collect::<PgtResult<_>>()?;
    for (blue, green) in &pairs {
        if let Err(e) = check_owner(blue) {
            return Ok(skipped(&pairs, &green.display_name(), &e.message));
        }
    }
    // Blues of the group keep reading each other once retired.
    let staying: BTreeSet<i64> = pairs.iter().map(|(b, _)| b.pgt_id).collect();
    let mut ids = Vec::new();
    for (blue, green) in &pairs {
        ids.extend([blue.pgt_id, green.pgt_id]);
        ids.extend(readers(blue, green).iter().map(|r| r.pgt_id));
    }
    lock_refreshes(ids);
    let pairs: Vec<(StreamTable, StreamTable)> = pairs
        .iter()
        .map(|(b, g)| {
            (
                catalog::load(b.pgt_id).expect("locked"),
                catalog::load(g.pgt_id).expect("locked"),
            )
        })
        .collect();
    let mut blocked: Option<(String, String)> = None;
    for (blue, green) in &pairs {
        if let Err(e) = still_paired(blue, green) {
            blocked = Some((green.display_name(), e.message));
            break;
        }
        let moving_owned = readers(blue, green);
        let moving: Vec<&StreamTable> = moving_owned
            .iter()
            .filter(|r| !staying.contains(&r.pgt_id))
            .collect();
        if let Some(e) = not_ready(blue, green, false, None, &moving) {
            blocked = Some((green.display_name(), e.message.clone()));
            break;
        }
    }
    if let Some((who, why)) = blocked {
        return Ok(skipped(&pairs, &who, &why));
    }
    let mut outcomes = Vec::new();
    for (blue, green) in &pairs {
        // Earlier swaps of the group may have renamed what this pair reads.
        let blue = catalog::load(blue.pgt_id).expect("locked");
        let green = catalog::load(green.pgt_id).expect("locked");
        let held = promote_locked(&blue, &green, &staying)?;
        outcomes.push(Outcome {
            stream_table: blue.display_name(),
            green: green.display_name(),
            action: "promoted",
            detail: format!(
                "{} retired as {}.{}; storage locked for {held:.1} ms",
                blue.display_name(),
                blue.schema,
                retired_name(&blue)
            ),
        });
    }
    Ok(outcomes)
}

/// Swaps the stream table `name` back for the retired one it replaced,
/// which is refreshed first; the replaced one becomes its green again.
pub fn rollback(name: &str) -> PgtResult<f64> {
    crate::restore::repair_if_restored()?;
    let current = catalog::find(name)?;
    check_owner(&current)?;
    let retired = retired_of(&current).ok_or_else(|| {
        PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "stream table {} has no retired predecessor to roll back to",
                current.display_name()
            ),
        )
        .with_hint(
            "Only a promoted green can be rolled back, until drop_retired drops what it replaced.",
        )
    })?;
    let as_green = green_name(&current);
    require_free(
        &current.schema,
        &as_green,
        "rollback",
        &current.display_name(),
    )?;
    let moving = readers(&current, &retired);
    lock_refreshes(
        [current.pgt_id, retired.pgt_id]
            .into_iter()
            .chain(moving.iter().map(|r| r.pgt_id)),
    );
    let current = catalog::load(current.pgt_id).expect("locked");
    let retired = catalog::load(retired.pgt_id).expect("locked");
    if retired.retired_by != Some(current.pgt_id) {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "{} was rolled back or dropped meanwhile",
                retired.display_name()
            ),
        )
        .with_hint(
            "Look at pgtrickle.pgt_status() and run the command again if it still applies.",
        ));
    }
    // Kept as it was at promotion: it consumes changes again from now on
    // and is brought up to date with a full refresh.
    if retired.refresh_mode != "FULL" {
        let owner = retired.owner();
        for source in analyze(&retired.defining_query)?.base_tables() {
            cdc::track(source, retired.pgt_id, owner);
        }
    }
    link(
        "status = 'ACTIVE', needs_reinit = true, consecutive_errors = 0, last_error = NULL",
        retired.pgt_id,
    );
    let retired = catalog::load(retired.pgt_id).expect("locked");
    refresh::refresh_locked(&retired, Initiator::Manual)?;
    let retired = catalog::load(retired.pgt_id).expect("locked");
    let moving: Vec<&StreamTable> = moving.iter().collect();
    check_compatible(&current, &retired, &moving)?;
    let held = execute(
        &Swap {
            leaving: &current,
            arriving: &retired,
            leaving_name: as_green,
        },
        &BTreeSet::new(),
    )?;
    link("retired_by = NULL", retired.pgt_id);
    link(&format!("green_of = {}", retired.pgt_id), current.pgt_id);
    let public = catalog::load(retired.pgt_id).expect("rolled back");
    let green = catalog::load(current.pgt_id).expect("rolled back");
    announce(
        "green_rolled_back",
        &public,
        serde_json::json!({ "green": green.display_name(), "lock_ms": held }),
    );
    Ok(held)
}
