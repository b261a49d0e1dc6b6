//! Which type changes of a used column are safe widenings: every value of
//! the old type is a value of the new one, unchanged. The list is data;
//! anything not in it is treated as lossy or unknown.

/// (from, to) base types, as `format_type` prints them without a type
/// modifier, whose values carry over unchanged.
const WIDER_BASE_TYPES: &[(&str, &str)] = &[
    ("smallint", "integer"),
    ("smallint", "bigint"),
    ("integer", "bigint"),
    ("smallint", "numeric"),
    ("integer", "numeric"),
    ("bigint", "numeric"),
    ("real", "double precision"),
    ("character varying", "text"),
    ("date", "timestamp without time zone"),
    ("date", "timestamp with time zone"),
    ("timestamp without time zone", "timestamp with time zone"),
];

/// Digits needed by the largest value of each integer type, for
/// integer → numeric(p, s) with p - s integer digits.
const INTEGER_DIGITS: &[(&str, u32)] = &[("smallint", 5), ("integer", 10), ("bigint", 19)];

/// A type as printed by `format_type`: base name and modifiers, e.g.
/// `numeric(10,2)` → ("numeric", [10, 2]), `timestamp(3) with time zone`
/// → ("timestamp with time zone", [3]).
fn split(type_sql: &str) -> (String, Vec<u32>) {
    match (type_sql.find('('), type_sql.find(')')) {
        (Some(open), Some(close)) if close > open => {
            let mods = type_sql[open + 1..close]
                .split(',')
                .filter_map(|m| m.trim().parse().ok())
                .collect();
            let base = format!("{}{}", &type_sql[..open], &type_sql[close + 1..]);
            (base.trim().to_string(), mods)
        }
        _ => (type_sql.trim().to_string(), Vec::new()),
    }
}

/// Whether changing a column from `from` to `to` keeps every value as it is.
pub fn is_safe_widening(from: &str, to: &str) -> bool {
    let ((from_base, from_mods), (to_base, to_mods)) = (split(from), split(to));
    if from_base == to_base {
        return match from_base.as_str() {
            // Longer, or unlimited.
            "character varying" => {
                to_mods.is_empty() || (!from_mods.is_empty() && to_mods[0] >= from_mods[0])
            }
            // Same scale, at least as many integer digits; or unconstrained.
            "numeric" => {
                to_mods.is_empty()
                    || (from_mods.len() == 2
                        && to_mods.len() == 2
                        && to_mods[1] == from_mods[1]
                        && to_mods[0] >= from_mods[0])
            }
            // Fractional seconds: at least as many (6 when unspecified).
            "timestamp without time zone" | "timestamp with time zone" => {
                to_mods.first().copied().unwrap_or(6) >= from_mods.first().copied().unwrap_or(6)
            }
            _ => false,
        };
    }
    if !WIDER_BASE_TYPES.contains(&(from_base.as_str(), to_base.as_str())) {
        return false;
    }
    match to_base.as_str() {
        "numeric" if !to_mods.is_empty() => {
            let digits = INTEGER_DIGITS
                .iter()
                .find(|(t, _)| *t == from_base)
                .map(|(_, d)| *d);
            matches!((digits, to_mods.as_slice()), (Some(d), [p, s]) if p.saturating_sub(*s) >= d)
        }
        "timestamp without time zone" | "timestamp with time zone" if from_base != "date" => {
            to_mods.first().copied().unwrap_or(6) >= from_mods.first().copied().unwrap_or(6)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe_widening;

    #[test]
    fn the_documented_widenings_are_safe() {
        for (from, to) in [
            ("smallint", "integer"),
            ("smallint", "bigint"),
            ("integer", "bigint"),
            ("integer", "numeric"),
            ("bigint", "numeric(19,0)"),
            ("integer", "numeric(12,0)"),
            ("integer", "numeric(12,2)"),
            ("character varying(10)", "character varying(20)"),
            ("character varying(10)", "character varying"),
            ("character varying(10)", "text"),
            ("numeric(10,2)", "numeric(12,2)"),
            ("numeric(10,2)", "numeric"),
            ("real", "double precision"),
            ("date", "timestamp without time zone"),
            ("date", "timestamp with time zone"),
            ("timestamp without time zone", "timestamp with time zone"),
            (
                "timestamp(3) without time zone",
                "timestamp without time zone",
            ),
        ] {
            assert!(is_safe_widening(from, to), "{from} -> {to}");
        }
    }

    #[test]
    fn narrowing_lossy_and_unknown_changes_are_not() {
        for (from, to) in [
            ("bigint", "integer"),
            ("integer", "smallint"),
            ("integer", "text"),
            ("text", "character varying(10)"),
            ("character varying(20)", "character varying(10)"),
            ("numeric(10,2)", "numeric(12,3)"),
            ("numeric(10,2)", "numeric(8,2)"),
            ("numeric", "numeric(10,2)"),
            ("integer", "numeric(5,0)"),
            ("integer", "numeric(11,2)"),
            ("double precision", "real"),
            ("integer", "double precision"),
            ("timestamp with time zone", "timestamp without time zone"),
            ("timestamp without time zone", "date"),
            (
                "timestamp without time zone",
                "timestamp(0) without time zone",
            ),
            ("text", "jsonb"),
            ("integer", "integer[]"),
        ] {
            assert!(!is_safe_widening(from, to), "{from} -> {to}");
        }
    }
}
