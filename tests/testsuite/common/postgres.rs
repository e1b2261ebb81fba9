//! A throwaway PostgreSQL server for tests: Debian's server binaries, a fresh cluster in a
//! temporary directory, password authentication on a loopback port, stopped when dropped.
//! It can be stopped and started again on the same port to play a database outage.
#![allow(dead_code)]

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

pub const PASSWORD: &str = "s3cret-test-password";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
    tls_only: bool,
}

impl Postgres {
    /// Creates a cluster (user `postgres`, password [`PASSWORD`]) and starts it.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster that takes TCP clients over TLS only, with this certificate chain and key
    /// (PEM); plaintext TCP connections are refused by pg_hba.conf. Assertions connect over
    /// the Unix socket.
    pub fn start_tls_only(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let bin = server_bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pwfile"), PASSWORD).expect("pwfile");
        if running_as_root() {
            // PostgreSQL refuses to run as root; the cluster belongs to the postgres user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let port = free_port();
        let mut pg = Self {
            dir,
            bin,
            port,
            running: false,
            tls_only: tls.is_some(),
        };
        let data = pg.data_dir();
        pg.run_as_owner(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--pwfile",
                &pg.path("pwfile"),
                "--no-sync",
            ],
        );
        if let Some((cert, key)) = tls {
            pg.enable_tls_only(cert, key);
        }
        pg.start_again();
        pg
    }

    fn enable_tls_only(&self, cert: &str, key: &str) {
        let data = std::path::Path::new(&self.data_dir()).to_path_buf();
        std::fs::write(data.join("server.crt"), cert).expect("server.crt");
        std::fs::write(data.join("server.key"), key).expect("server.key");
        // PostgreSQL refuses a key that others can read.
        std::fs::set_permissions(data.join("server.key"), Permissions::from_mode(0o600))
            .expect("chmod server.key");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .expect("write postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        if running_as_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data));
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn data_dir(&self) -> String {
        self.path("data")
    }

    /// `postgres://` URL without the password (it goes through a password file).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A file holding the password, as a Docker or Kubernetes secret would.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("pwfile")
    }

    pub fn stop(&mut self) {
        if self.running {
            self.run_as_owner(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
            );
            self.running = false;
        }
    }

    /// Crashes the server: every PostgreSQL process is killed without a clean shutdown
    /// (`pg_ctl -m immediate`), as an OOM kill or a node failure would; the next start recovers.
    pub fn kill(&mut self) {
        if self.running {
            self.run_as_owner(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
            );
            self.running = false;
        }
    }

    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run_as_owner(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &self.path("log"),
                "-w",
                "start",
            ],
        );
        self.running = true;
    }

    /// A client connection for assertions.
    /// The rows of `query` once it returns `n` of them (the prediction log writes in the
    /// background); fails after 20 s.
    pub async fn wait_rows(&self, query: &str, n: usize) -> Vec<tokio_postgres::Row> {
        let client = self.client().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let rows = client.query(query, &[]).await.unwrap_or_default();
            if rows.len() == n {
                return rows;
            }
            assert!(std::time::Instant::now() < deadline, "rows: {}", rows.len());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        // A TLS-only server takes plaintext on its Unix socket alone.
        let host = if self.tls_only {
            self.dir.path().display().to_string()
        } else {
            "127.0.0.1".to_string()
        };
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host={host} port={} user=postgres password={PASSWORD}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect to the test PostgreSQL");
        tokio::spawn(connection);
        client
    }

    fn run_as_owner(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.args(args);
        run(&mut command);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The server binaries of Debian's `postgresql` package (or `$PG_BIN`).
fn server_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|dir| dir.join("initdb").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "the prediction-log tests need a PostgreSQL server: apt-get install postgresql \
             (or set PG_BIN to the directory holding initdb and pg_ctl)"
        )
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
