//! explain_st: how a stream table is maintained.

use crate::catalog;
use crate::dvm::analyze::analyze;
use crate::error::{OrRaise, PgtResult};
use crate::lifecycle::check_owner;
use crate::refresh;
use crate::spi;
use pgrx::prelude::*;

fn explain_impl(name: &str) -> PgtResult<Vec<(String, String)>> {
    let st = catalog::find(name)?;
    check_owner(&st)?;
    let analysis = analyze(&st.defining_query)?;
    let plan = refresh::plan_for(&analysis);
    let mut rows = vec![
        ("stream_table".to_string(), st.display_name()),
        ("defining_query".to_string(), st.defining_query.clone()),
        ("refresh_mode".to_string(), st.refresh_mode.clone()),
        ("maintenance".to_string(), plan.describe()),
    ];
    let why = match (&analysis.differential, st.refresh_mode.as_str()) {
        (_, "FULL") => "FULL: recomputed on every refresh, as requested".to_string(),
        (Ok(_), "AUTO") => "AUTO: differential; FULL when the change ratio exceeds pg_trickle.differential_max_change_ratio or a source is truncated".to_string(),
        (Ok(_), _) => "DIFFERENTIAL: only the changes since the last refresh are applied".to_string(),
        (Err(u), mode) => format!("{mode}: FULL, because DIFFERENTIAL does not support {}", u.construct),
    };
    rows.push(("mode_chosen".to_string(), why));
    let internal: Vec<String> = plan
        .internal_columns()
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    rows.push(("internal_columns".to_string(), internal.join(", ")));
    if let Ok((_, blocks)) = &analysis.differential {
        for (b, block) in blocks.iter().enumerate() {
            let tables: Vec<String> = block
                .relations()
                .iter()
                .map(|r| {
                    spi::query_value(&format!("SELECT {}::regclass::text", r.relid.to_u32()))
                        .unwrap_or_default()
                })
                .collect();
            rows.push((
                format!("operator_tree[{b}]"),
                format!("join of [{}] -> project", tables.join(", ")),
            ));
        }
        for (key, sql) in refresh::explain_delta_sql(&st, &plan, &analysis)? {
            rows.push((key, sql));
        }
    }
    for source in catalog::tracked_sources(st.pgt_id) {
        let info = spi::query_value(&format!(
            "SELECT {oid}::regclass::text || ': ' || \
               (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = {oid} AND tgname LIKE 'pg_trickle_cdc_%')::text \
               || ' capture triggers'",
            oid = source.to_u32()
        ))
        .unwrap_or_default();
        rows.push(("source_cdc".to_string(), info));
    }
    Ok(rows)
}

/// Explains how a stream table is maintained: query, mode and why, operator
/// tree, the generated delta SQL, sources and their change capture.
#[pg_extern(schema = "pgtrickle")]
fn explain_st(
    name: &str,
) -> TableIterator<'static, (name!(property, String), name!(value, String))> {
    TableIterator::new(explain_impl(name).or_raise())
}
