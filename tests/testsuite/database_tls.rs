//! TLS to PostgreSQL against a real server that refuses plaintext TCP: certificates are made
//! here (a CA, a server certificate for 127.0.0.1, one for another host name), and each
//! `sslmode` connects or is refused as libpq's would be. One request goes through the whole
//! server to show the rows land over TLS.

use crate::common;

use common::postgres::Postgres;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sentiment_server::metrics::Metrics;
use sentiment_server::predlog::PredictionLog;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sentiment-server test CA");
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        Self { dir, ca }
    }

    /// The CA's certificate as a file, for `sslrootcert`.
    fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca.pem()).expect("ca.pem");
        path
    }

    /// A server certificate (with the CA after it) and its key, PEM, for these names.
    fn server(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("server certificate");
        (cert.pem() + &self.ca.pem(), key.serialize_pem())
    }
}

fn config(pg: &Postgres, query: &str) -> sentiment_server::Config {
    let mut config = common::config_for(common::minilm());
    config.database_url = Some(format!("{}?{query}", pg.url()));
    config.database_password_file = Some(pg.password_file());
    config
}

/// Whether the prediction log's writer connects within `wait`.
async fn connects(pg: &Postgres, query: &str, wait: Duration) -> bool {
    let metrics = Arc::new(Metrics::new());
    let log = PredictionLog::start(&config(pg, query), metrics.clone())
        .expect("start-up")
        .expect("a prediction log");
    let deadline = Instant::now() + wait;
    let connected = loop {
        if metrics.prediction_log_connected.get() == 1 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    log.close(Duration::from_secs(1)).await;
    connected
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sslmode_connects_or_is_refused_as_libpq_would() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let (cert, key) = pki.server(&["localhost", "127.0.0.1"]);
    let pg = Postgres::start_tls_only(&cert, &key);
    let other = Pki::new();
    let other_ca = other.ca_file();
    let ca = ca.display();
    let other_ca = other_ca.display();
    // Refusals wait long enough for several attempts; successes come within a second here.
    let refused = Duration::from_secs(3);
    let ok = Duration::from_secs(20);

    for (query, expected) in [
        (format!("sslmode=verify-full&sslrootcert={ca}"), true),
        (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        ("sslmode=require".to_string(), true),
        ("sslmode=prefer".to_string(), true),
        // The server takes no plaintext.
        ("sslmode=disable".to_string(), false),
        // A chain to a root the client does not trust.
        (format!("sslmode=verify-full&sslrootcert={other_ca}"), false),
        (format!("sslmode=verify-ca&sslrootcert={other_ca}"), false),
        // As in libpq, `require` with a root certificate checks the chain.
        (format!("sslmode=require&sslrootcert={other_ca}"), false),
        // A private CA is in no public store.
        ("sslmode=verify-full".to_string(), false),
    ] {
        let wait = if expected { ok } else { refused };
        assert_eq!(connects(&pg, &query, wait).await, expected, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_refuses_a_certificate_for_another_host_that_verify_ca_accepts() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let (cert, key) = pki.server(&["db.example.internal"]);
    let pg = Postgres::start_tls_only(&cert, &key);
    let ca = ca.display();
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    assert!(!connects(&pg, &full, Duration::from_secs(3)).await);
    let chain_only = format!("sslmode=verify-ca&sslrootcert={ca}");
    assert!(connects(&pg, &chain_only, Duration::from_secs(20)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn predictions_land_over_verified_tls() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let (cert, key) = pki.server(&["127.0.0.1"]);
    let pg = Postgres::start_tls_only(&cert, &key);
    let query = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let server = common::TestServer::start(config(&pg, &query)).await;
    let response = server
        .client
        .post(server.url("/predict"))
        .json(&serde_json::json!({"inputs": ["a gorgeous film", "a dull film"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let rows = pg
        .wait_rows("SELECT label FROM predictions ORDER BY input_index", 2)
        .await;
    let labels: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(labels, ["POSITIVE", "NEGATIVE"]);
}

#[tokio::test]
async fn a_bad_sslmode_or_root_certificate_stops_start_up() {
    for (query, expected) in [
        // Named, never echoed: a value may be a secret put in the wrong place.
        ("sslmode=verify", "unknown `sslmode` (disable, prefer"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
    ] {
        let mut config = common::config_for(common::minilm());
        config.database_url = Some(format!("postgres://u@127.0.0.1/db?{query}"));
        let error = PredictionLog::start(&config, Arc::new(Metrics::new()))
            .err()
            .expect("start-up must fail");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("--database-url"), "{message}");
    }
}
