//! Names of change-buffer columns.
//!
//! A buffer has its own columns (`change_id`, `xid`, `action`,
//! `captured_at`) and, for each column of its source, a column named by
//! [`value_column`] (the row image of an insert or delete, the new image of
//! an update) and one named by [`old_column`] (the old image of an update,
//! when the update is captured as one row).

const OLD_PREFIX: &str = "__pgt_old_";

/// The buffer's own columns.
pub const OWN_COLUMNS: [&str; 4] = ["change_id", "xid", "action", "captured_at"];

/// The buffer column holding the value of source column `name`: the same
/// name, or `__pgt_new_<name>` for a source column named like one of the
/// buffer's own columns (buffers made before 0.2.0 never had one).
pub fn value_column(name: &str) -> String {
    if OWN_COLUMNS.contains(&name) {
        format!("__pgt_new_{name}")
    } else {
        name.to_string()
    }
}

/// The buffer column holding the old value of source column `name`:
/// `__pgt_old_<name>`, or, where that would exceed PostgreSQL's identifier
/// length, a prefix of it and a hash of the whole name (so that two long
/// names sharing a prefix still get distinct columns).
pub fn old_column(name: &str) -> String {
    let plain = format!("{OLD_PREFIX}{name}");
    if plain.len() <= 63 {
        return plain;
    }
    let hash = format!("_{:016x}", crate::hash::hash_text(name) as u64);
    crate::quote::suffixed(&plain, &hash)
}

/// The capture trigger's argument naming the source columns (by attnum)
/// whose change makes an update a `D` row and an `I` row rather than one
/// `U` row, and the transaction (`xid8`) that chose them: a refresh may
/// count on the split only for changes made after that transaction
/// committed. Written as `2,5@748`.
pub fn split_columns_arg(attnums: &[i16], since_xid: u64) -> String {
    let list: Vec<String> = attnums.iter().map(|a| a.to_string()).collect();
    format!("{}@{since_xid}", list.join(","))
}

/// The attnums and transaction of a `split_columns_arg`, or `None` if it
/// is not one.
pub fn parse_split_columns_arg(arg: &str) -> Option<(Vec<i16>, u64)> {
    let (list, xid) = arg.split_once('@')?;
    let attnums = if list.is_empty() {
        Vec::new()
    } else {
        list.split(',')
            .map(|a| a.parse().ok().filter(|&a: &i16| a > 0))
            .collect::<Option<Vec<i16>>>()?
    };
    Some((attnums, xid.parse().ok()?))
}

/// Whether transaction `xid` had committed (or aborted) when the
/// snapshot `snapshot` (`pg_snapshot` text, `xmin:xmax:xip,...`) was
/// taken: below `xmin`, or below `xmax` and not listed as running. `None`
/// for text that is not a snapshot.
pub fn finished_before(snapshot: &str, xid: u64) -> Option<bool> {
    let mut parts = snapshot.splitn(3, ':');
    let xmin: u64 = parts.next()?.parse().ok()?;
    let xmax: u64 = parts.next()?.parse().ok()?;
    let xip = parts.next()?;
    if xid < xmin {
        return Some(true);
    }
    if xid >= xmax {
        return Some(false);
    }
    for running in xip.split(',').filter(|x| !x.is_empty()) {
        if running.parse::<u64>().ok()? == xid {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_columns_named_like_the_buffers_own_get_a_prefix() {
        assert_eq!(value_column("amount"), "amount");
        assert_eq!(value_column("action"), "__pgt_new_action");
        assert_eq!(value_column("xid"), "__pgt_new_xid");
        assert_eq!(old_column("action"), "__pgt_old_action");
    }

    #[test]
    fn short_names_get_a_prefix() {
        assert_eq!(old_column("amount"), "__pgt_old_amount");
        assert_eq!(old_column("Mixed Case"), "__pgt_old_Mixed Case");
    }

    #[test]
    fn long_names_fit_and_stay_distinct() {
        let a = format!("{}_a", "x".repeat(60));
        let b = format!("{}_b", "x".repeat(60));
        assert!(old_column(&a).len() <= 63);
        assert_ne!(old_column(&a), old_column(&b));
        assert_eq!(old_column(&a), old_column(&a));
        // A name of multi-byte characters is cut at a character boundary.
        let c = "é".repeat(31);
        assert!(old_column(&c).len() <= 63);
        assert!(old_column(&c).starts_with("__pgt_old_é"));
    }

    #[test]
    fn split_columns_arg_round_trips() {
        assert_eq!(split_columns_arg(&[2, 5], 748), "2,5@748");
        assert_eq!(parse_split_columns_arg("2,5@748"), Some((vec![2, 5], 748)));
        assert_eq!(parse_split_columns_arg("@9"), Some((vec![], 9)));
        assert_eq!(parse_split_columns_arg("2,x@9"), None);
        assert_eq!(parse_split_columns_arg("0@9"), None);
        assert_eq!(parse_split_columns_arg("2,5"), None);
    }

    #[test]
    fn finished_before_reads_a_snapshot() {
        let snap = "100:110:102,105";
        assert_eq!(finished_before(snap, 99), Some(true));
        assert_eq!(finished_before(snap, 100), Some(true));
        assert_eq!(finished_before(snap, 102), Some(false));
        assert_eq!(finished_before(snap, 104), Some(true));
        assert_eq!(finished_before(snap, 110), Some(false));
        assert_eq!(finished_before("5:5:", 4), Some(true));
        assert_eq!(finished_before("5:5:", 5), Some(false));
        assert_eq!(finished_before("nonsense", 5), None);
    }
}
