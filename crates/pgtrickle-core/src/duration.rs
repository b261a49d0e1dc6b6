//! Durations such as `30s`, `5m`, `1h30m`, `2d`, `1w`.
//!
//! A duration is one or more `<integer><unit>` parts, each unit at most once;
//! units are `s`, `m`, `h`, `d` and `w`. Whitespace between parts is allowed.

use std::fmt;

/// Why a duration could not be parsed. `Display` names the problem; `hint()`
/// says how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    MissingNumber { at: String },
    MissingUnit { number: String },
    UnknownUnit { unit: String },
    RepeatedUnit { unit: char },
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "duration is empty"),
            DurationError::MissingNumber { at } => {
                write!(f, "expected a number before \"{at}\"")
            }
            DurationError::MissingUnit { number } => {
                write!(f, "number {number} has no unit")
            }
            DurationError::UnknownUnit { unit } => write!(f, "unknown unit \"{unit}\""),
            DurationError::RepeatedUnit { unit } => {
                write!(f, "unit \"{unit}\" appears more than once")
            }
            DurationError::Overflow => write!(f, "duration is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

impl DurationError {
    pub fn hint(&self) -> &'static str {
        "Write a duration as integers with units s, m, h, d or w, for example '30s', '5m', '1h30m', '2d' or '1w'."
    }
}

fn unit_seconds(unit: char) -> Option<i64> {
    match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3_600),
        'd' => Some(86_400),
        'w' => Some(604_800),
        _ => None,
    }
}

/// Seconds in `input`.
pub fn parse_duration_seconds(input: &str) -> Result<i64, DurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut chars = text.char_indices().peekable();
    let mut total: i64 = 0;
    let mut seen = String::new();
    while let Some(&(start, ch)) = chars.peek() {
        if ch.is_whitespace() {
            chars.next();
            continue;
        }
        if !ch.is_ascii_digit() {
            return Err(DurationError::MissingNumber {
                at: text[start..].to_string(),
            });
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let number = &text[start..end];
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let unit = match chars.next() {
            Some((_, c)) if c.is_alphabetic() => c,
            _ => {
                return Err(DurationError::MissingUnit {
                    number: number.to_string(),
                })
            }
        };
        if let Some(&(i, c)) = chars.peek() {
            if c.is_alphabetic() {
                let rest: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_alphabetic())
                    .collect();
                return Err(DurationError::UnknownUnit {
                    unit: format!("{unit}{rest}"),
                });
            }
        }
        let factor = unit_seconds(unit).ok_or(DurationError::UnknownUnit {
            unit: unit.to_string(),
        })?;
        if seen.contains(unit) {
            return Err(DurationError::RepeatedUnit { unit });
        }
        seen.push(unit);
        let value: i64 = number.parse().map_err(|_| DurationError::Overflow)?;
        let part = value.checked_mul(factor).ok_or(DurationError::Overflow)?;
        total = total.checked_add(part).ok_or(DurationError::Overflow)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_forms() {
        assert_eq!(parse_duration_seconds("30s"), Ok(30));
        assert_eq!(parse_duration_seconds("5m"), Ok(300));
        assert_eq!(parse_duration_seconds("1h30m"), Ok(5_400));
        assert_eq!(parse_duration_seconds("2d"), Ok(172_800));
        assert_eq!(parse_duration_seconds("1w"), Ok(604_800));
        assert_eq!(parse_duration_seconds(" 1h 30m "), Ok(5_400));
        assert_eq!(parse_duration_seconds("5 m"), Ok(300));
        assert_eq!(parse_duration_seconds("0s"), Ok(0));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert_eq!(parse_duration_seconds(""), Err(DurationError::Empty));
        assert_eq!(parse_duration_seconds("  "), Err(DurationError::Empty));
        assert_eq!(
            parse_duration_seconds("90"),
            Err(DurationError::MissingUnit {
                number: "90".into()
            })
        );
        assert_eq!(
            parse_duration_seconds("5x"),
            Err(DurationError::UnknownUnit { unit: "x".into() })
        );
        assert_eq!(
            parse_duration_seconds("5min"),
            Err(DurationError::UnknownUnit { unit: "min".into() })
        );
        assert_eq!(
            parse_duration_seconds("5 minutes"),
            Err(DurationError::UnknownUnit {
                unit: "minutes".into()
            })
        );
        assert_eq!(
            parse_duration_seconds("m"),
            Err(DurationError::MissingNumber { at: "m".into() })
        );
        assert_eq!(
            parse_duration_seconds("-5s"),
            Err(DurationError::MissingNumber { at: "-5s".into() })
        );
        assert_eq!(
            parse_duration_seconds("1h1h"),
            Err(DurationError::RepeatedUnit { unit: 'h' })
        );
        assert_eq!(
            parse_duration_seconds("99999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration_seconds("9223372036854775807w"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn errors_read_well() {
        let err = parse_duration_seconds("5min").unwrap_err();
        assert_eq!(err.to_string(), "unknown unit \"min\"");
        assert!(err.hint().contains("1h30m"));
    }
}
