//! Refresh schedules: a duration (`30s`, `1h30m`) or a cron expression
//! (`*/5 * * * *`, `@hourly`), parsed by the `croner` crate.

use crate::duration::parse_duration_seconds;
use chrono::{DateTime, Duration, Utc};
use croner::Cron;

#[derive(Debug, Clone)]
pub enum Schedule {
    Every { seconds: i64 },
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub message: String,
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn looks_like_cron(text: &str) -> bool {
    text.starts_with('@') || text.split_whitespace().count() >= 5
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if looks_like_cron(text) {
            let cron = Cron::new(text).parse().map_err(|e| ScheduleError {
                message: format!("invalid cron expression \"{text}\": {e}"),
            })?;
            return Ok(Schedule::Cron(Box::new(cron)));
        }
        match parse_duration_seconds(text) {
            Ok(0) => Err(ScheduleError {
                message: format!("schedule \"{text}\" is zero; use NULL for manual refresh only"),
            }),
            Ok(seconds) => Ok(Schedule::Every { seconds }),
            Err(e) => Err(ScheduleError {
                message: format!(
                    "invalid schedule \"{text}\": {e}; expected a duration or a cron expression"
                ),
            }),
        }
    }

    /// The shortest interval between two refreshes, for the minimum check.
    pub fn min_interval_seconds(&self) -> i64 {
        match self {
            Schedule::Every { seconds } => *seconds,
            Schedule::Cron(cron) => {
                let start = Utc::now();
                let mut times = cron.clone().iter_after(start).take(3);
                match (times.next(), times.next()) {
                    (Some(a), Some(b)) => (b - a).num_seconds(),
                    _ => i64::MAX,
                }
            }
        }
    }

    /// When a stream table last refreshed at `last` (or created at `last`
    /// if never refreshed) is next due.
    pub fn next_due(&self, last: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every { seconds } => last + Duration::seconds(*seconds),
            Schedule::Cron(cron) => cron
                .find_next_occurrence(&last, false)
                .unwrap_or(last + Duration::days(3650)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations_and_cron_expressions_parse() {
        assert!(matches!(
            Schedule::parse("30s"),
            Ok(Schedule::Every { seconds: 30 })
        ));
        assert!(matches!(
            Schedule::parse("1h 30m"),
            Ok(Schedule::Every { seconds: 5400 })
        ));
        assert!(matches!(
            Schedule::parse("*/5 * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(Schedule::parse("@hourly"), Ok(Schedule::Cron(_))));
    }

    #[test]
    fn bad_schedules_say_why() {
        let e = Schedule::parse("5 minutes").unwrap_err();
        assert!(e.message.contains("unknown unit \"minutes\""), "{e}");
        let e = Schedule::parse("61 * * * *").unwrap_err();
        assert!(e.message.starts_with("invalid cron expression"), "{e}");
        assert!(Schedule::parse("0s").is_err());
    }

    #[test]
    fn next_due_follows_the_schedule() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 2, 0).unwrap();
        let every = Schedule::parse("90s").unwrap();
        assert_eq!(every.next_due(t), t + Duration::seconds(90));
        let cron = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            cron.next_due(t),
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 5, 0).unwrap()
        );
        assert_eq!(cron.min_interval_seconds(), 300);
    }
}
