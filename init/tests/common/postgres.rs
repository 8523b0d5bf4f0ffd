//! A throwaway PostgreSQL cluster for one test: Debian's server binaries,
//! `initdb` into a temporary directory, `postgres` listening on a free
//! loopback port, run as an unprivileged user (`nobody` when the tests run
//! as root, since PostgreSQL refuses to run as root). Stopped and removed
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct Postgres {
    child: Child,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

/// Where Debian puts the server binaries (`/usr/lib/postgresql/N/bin`),
/// the newest first; `SPORE_TEST_PG_BIN` overrides.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SPORE_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): scripts/setup installs Debian's postgresql")
    })
}

/// The command, run as `nobody` when we are root.
fn unprivileged(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Hands `paths` to the user the server runs as (`nobody` under root).
fn give_to_server_user(paths: &[&Path]) {
    if nix::unistd::geteuid().is_root() {
        let status = Command::new("chown")
            .arg("nobody:nogroup")
            .args(paths)
            .status()
            .unwrap();
        assert!(status.success(), "chown {paths:?} failed");
    }
}

impl Postgres {
    /// initdb, then start the server and wait until it takes connections.
    pub fn start() -> Postgres {
        Self::start_with(None)
    }

    /// [`Postgres::start`], serving TLS too with this certificate and key.
    pub fn start_with_tls(cert: &Path, key: &Path) -> Postgres {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("spore-pg")
            .tempdir()
            .unwrap();
        give_to_server_user(&[dir.path()]);
        let data = dir.path().join("data");
        let out = unprivileged(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "spore", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let mut tls_args = Vec::new();
        if let Some((cert, key)) = tls {
            // The key must belong to the server's user and be 0600.
            let (cert_copy, key_copy) =
                (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::copy(cert, &cert_copy).unwrap();
            std::fs::copy(key, &key_copy).unwrap();
            std::fs::set_permissions(
                &key_copy,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            give_to_server_user(&[&cert_copy, &key_copy]);
            tls_args = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert_copy.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key_copy.display()),
            ];
        }
        let child = unprivileged(&bin.join("postgres"))
            .args(&tls_args)
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let cluster = Postgres {
            child,
            dir,
            bin,
            port,
        };
        let started = Instant::now();
        while !cluster.ready() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not start: {}",
                cluster.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The postmaster's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL a beacon is given.
    pub fn url(&self) -> String {
        format!("postgres://spore@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL through psql; its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "spore",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
    }
}
