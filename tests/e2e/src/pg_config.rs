//! Finding the PostgreSQL installation the tests run against.

use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone)]
pub struct PgInstall {
    pub bindir: PathBuf,
    pub major: u32,
}

impl PgInstall {
    /// The installation chosen by the environment (see the crate docs).
    pub fn from_env() -> PgInstall {
        let pg_config = match std::env::var("PGT_PG_CONFIG") {
            Ok(path) => PathBuf::from(path),
            Err(_) => {
                let version = std::env::var("PGT_PG_VERSION").unwrap_or_else(|_| "18".into());
                pgrx_config_entry(&format!("pg{version}")).unwrap_or_else(|| {
                    panic!("no pg{version} in cargo-pgrx's config.toml; run scripts/setup.sh")
                })
            }
        };
        let bindir = run_pg_config(&pg_config, "--bindir");
        let version = run_pg_config(&pg_config, "--version");
        let major = version
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot read a major version from {version:?}"));
        PgInstall {
            bindir: PathBuf::from(bindir),
            major,
        }
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

fn run_pg_config(pg_config: &PathBuf, flag: &str) -> String {
    let out = Command::new(pg_config)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", pg_config.display()));
    assert!(
        out.status.success(),
        "{} {flag} failed",
        pg_config.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `pgNN = "/path/to/pg_config"` from `$PGRX_HOME/config.toml`.
fn pgrx_config_entry(key: &str) -> Option<PathBuf> {
    let home = std::env::var("PGRX_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pgrx"));
    let text = std::fs::read_to_string(home.join("config.toml")).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| PathBuf::from(v.trim().trim_matches('"')))
    })
}
