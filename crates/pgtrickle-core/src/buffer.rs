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
}
