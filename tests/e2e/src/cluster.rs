//! A throwaway PostgreSQL cluster owned by one test.

use crate::pg_config::PgInstall;
use postgres::{Client, NoTls};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

pub struct Cluster {
    pub install: PgInstall,
    pub port: u16,
    root: PathBuf,
}

impl Cluster {
    /// initdb + start, with pg_trickle preloaded.
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// Like `start`, with extra `postgresql.conf` lines.
    pub fn start_with(extra_conf: &[&str]) -> Cluster {
        let install = PgInstall::from_env();
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("pgt-e2e-{}-{}", std::process::id(), id));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sock")).expect("create cluster dir");
        chown_to_postgres(&root);
        let port = free_port();
        let cluster = Cluster {
            install,
            port,
            root,
        };
        cluster.as_postgres(
            &cluster.install.bin("initdb"),
            &[
                "-D",
                cluster.datadir().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_trickle'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nwal_level = logical\nmax_wal_senders = 4\n\
             max_replication_slots = 8\nmax_worker_processes = 16\nlog_min_messages = warning\n",
            cluster.root.join("sock").display()
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = cluster.datadir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        cluster.pg_ctl_start();
        cluster
    }

    pub fn datadir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    pub fn connect(&self) -> Client {
        self.connect_to("postgres")
    }

    pub fn connect_to(&self, dbname: &str) -> Client {
        self.connect_as(dbname, "postgres")
    }

    pub fn connect_as(&self, dbname: &str, user: &str) -> Client {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} dbname={dbname}",
            self.port
        );
        Client::connect(&conn, NoTls).unwrap_or_else(|e| panic!("connect {conn}: {e}"))
    }

    /// Appends `name = value` to postgresql.conf (the last setting wins);
    /// takes effect at the next restart or reload.
    pub fn set_conf(&self, name: &str, value: &str) {
        let path = self.datadir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str(&format!("\n{name} = {value}\n"));
        std::fs::write(&path, text).expect("write postgresql.conf");
    }

    /// Clean shutdown and start.
    pub fn restart(&self) {
        self.pg_ctl_stop("fast");
        self.pg_ctl_start();
    }

    /// Immediate shutdown (a crash: no checkpoint, recovery on next start).
    pub fn crash(&self) {
        self.pg_ctl_stop("immediate");
    }

    /// Start after `crash`.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    fn pg_ctl_start(&self) {
        let log = self.root.join("server.log");
        self.as_postgres(
            &self.install.bin("pg_ctl"),
            &[
                "-D",
                self.datadir().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Client::connect(&self.connection_string("postgres"), NoTls).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not accept connections:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pg_ctl_stop(&self, mode: &str) {
        self.as_postgres(
            &self.install.bin("pg_ctl"),
            &[
                "-D",
                self.datadir().to_str().unwrap(),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }

    fn as_postgres(&self, program: &Path, args: &[&str]) {
        let output = postgres_user_command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {:?} failed:\n{}{}\n{}",
            program.display(),
            args,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = postgres_user_command(
            &self.install.bin("pg_ctl"),
            &[
                "-D",
                self.datadir().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// initdb and postgres refuse root: run them as the `postgres` OS user.
fn postgres_user_command(program: &Path, args: &[&str]) -> Command {
    let mut cmd = if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program).args(args);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    };
    // pgrx adds a Rust backtrace to every error's DETAIL when this is set.
    cmd.env_remove("RUST_BACKTRACE");
    cmd
}

fn chown_to_postgres(dir: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", dir.display());
    }
}

/// Ports handed out so far in this process, counted from a start that
/// depends on the process id.
static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A port nobody listens on, below the kernel's range of ephemeral ports
/// (32768 and up on Linux): a port taken from that range could be given to
/// the local end of one of the tests' own client connections between the
/// choice and the server's start, which then fails with "Address already
/// in use". Each port is handed out once per process; one bound by another
/// process is skipped.
fn free_port() -> u16 {
    const FIRST: usize = 15000;
    const COUNT: usize = 17000;
    let start = (std::process::id() as usize * 97) % COUNT;
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(n < COUNT, "no free port left below 32000");
        let port = (FIRST + (start + n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
