//! The one place where identifiers and literals become SQL text.
//!
//! Identifiers are always double-quoted: that is never wrong, needs no
//! keyword list, and keeps generated SQL independent of the server version.

/// `name` as a quoted SQL identifier: `"name"`, with `"` doubled.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// `schema.name`, both parts quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `value` as a SQL string literal. Backslashes switch the literal to the
/// `E''` form so it means the same whatever `standard_conforming_strings` is.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for ch in value.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(ch),
        }
    }
    out.push('\'');
    out
}

/// `base` followed by `suffix`, `base` shortened on a character boundary
/// so that the result fits PostgreSQL's 63-byte identifiers (longer names
/// would be truncated silently, losing the suffix).
pub fn suffixed(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len());
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &base[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(ident("orders"), "\"orders\"");
        assert_eq!(ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("select"), "\"select\"");
        assert_eq!(qualified("s", "t\""), "\"s\".\"t\"\"\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
        assert_eq!(literal(""), "''");
    }

    #[test]
    fn suffixed_names_fit_identifiers() {
        assert_eq!(super::suffixed("sales", "__pgt_green"), "sales__pgt_green");
        let long = "é".repeat(40); // 80 bytes
        let name = super::suffixed(&long, "__pgt_retired");
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("__pgt_retired"));
        assert!(name.starts_with("éé"));
    }
}
