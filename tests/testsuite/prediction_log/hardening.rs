//! Hardening: one client's input never costs another client's rows, and text hashes can be
//! keyed. Part of the `prediction_log` test binary (it shares its helpers).

use super::common::{self, postgres::Postgres, TestServer};
use super::{count_rows, logged_config, metric, predict, sha256, wait_for};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

/// Sends `body` to `url` with this `x-request-id`; the answer's status.
async fn post_with_id(client: reqwest::Client, url: String, id: String, body: Value) -> u16 {
    let response = client
        .post(url)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .expect("request");
    response.status().as_u16()
}

/// One client's input never costs another's rows: NUL in a text (stored with `full`), NUL in a
/// zero-shot candidate label (stored in every mode) and a 3,000-character request id, sent
/// among 40 ordinary requests at once, used to make PostgreSQL refuse whole batches.
#[tokio::test(flavor = "multi_thread")]
async fn poisoned_inputs_are_stored_sanitized_and_never_cost_other_rows() {
    let pg = Postgres::start();
    let mut config = logged_config(&pg);
    config.model_dir = Some(common::nli());
    config.prediction_log_text = sentiment_server::config::LogText::Full;
    let server = TestServer::start(config).await;
    // Incompressible, so that PostgreSQL cannot fit it in an index entry by compressing it.
    let long_id: String = (0..47).map(|i| sha256(&i.to_string())).collect();
    let long_id = long_id[..3_000].to_owned();
    let predict_url = server.url("/predict");
    let zero_shot_url = server.url("/zero-shot-classification");
    let mut requests = Vec::new();
    for i in 0..40 {
        let text = format!("ordinary review number {i}, a decent film");
        requests.push((
            predict_url.clone(),
            format!("normal-{i:02}"),
            json!({ "inputs": text }),
        ));
        // The three poisoned kinds, spread among the ordinary ones: NUL texts at 0, 13, 26
        // and 39, NUL labels at 4, 17 and 30, long ids at 8, 21 and 34.
        match i % 13 {
            0 => requests.push((
                predict_url.clone(),
                format!("poison-nul-{i}"),
                json!({"inputs": "nice\u{0}"}),
            )),
            4 => requests.push((
                zero_shot_url.clone(),
                format!("poison-label-{i}"),
                json!({"inputs": "The match went to extra time.",
                       "parameters": {"candidate_labels": ["spo\u{0}rts", "politics"]}}),
            )),
            8 => requests.push((
                predict_url.clone(),
                long_id.clone(),
                json!({"inputs": "a perfectly ordinary text"}),
            )),
            _ => {}
        }
    }
    let sent = requests.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (url, id, body) in requests {
        tasks.spawn(post_with_id(server.client.clone(), url, id, body));
    }
    while let Some(answer) = tasks.join_next().await {
        assert_eq!(answer.expect("task"), 200);
    }

    let dropped = async || metric(&server, "sentiment_prediction_log_dropped_rows_total").await;
    let mut settled = (0, 0.0);
    wait_for(
        "every row stored or counted",
        Duration::from_secs(30),
        async || {
            settled = (count_rows(&pg).await, dropped().await);
            settled.0 as f64 + settled.1 == sent as f64
        },
    )
    .await;
    let client = pg.client().await;
    let count =
        async |query: &str| -> i64 { client.query_one(query, &[]).await.expect("count").get(0) };
    assert_eq!(
        count("SELECT count(*) FROM predictions WHERE request_id LIKE 'normal-%'").await,
        40,
        "every ordinary row is stored"
    );
    // Sanitized, the poisoned rows are stored too: nothing dropped at all.
    assert_eq!(settled, (sent as i64, 0.0));
    let texts = client
        .query(
            "SELECT text, text_sha256 FROM predictions WHERE request_id LIKE 'poison-nul-%'",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(texts.len(), 4);
    for row in &texts {
        assert_eq!(
            row.get::<_, Option<String>>(0).as_deref(),
            Some("nice\u{FFFD}")
        );
        assert_eq!(
            row.get::<_, String>(1),
            sha256("nice\u{0}"),
            "hash of the text sent"
        );
    }
    let labels = client
        .query(
            "SELECT label, scores FROM predictions WHERE request_id LIKE 'poison-label-%'",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(labels.len(), 3);
    for row in &labels {
        let label: String = row.get(0);
        assert!(
            ["spo\u{FFFD}rts", "politics"].contains(&label.as_str()),
            "{label}"
        );
        let scores: Value = row.get(1);
        assert!(scores["spo\u{FFFD}rts"].is_number(), "{scores}");
        assert!(scores["politics"].is_number(), "{scores}");
    }
    // The long ids never reach the log: the HTTP layer replaced them with ids of its own (the
    // log would cut one to 128 characters all the same: src/predlog/sanitize.rs).
    assert_eq!(
        count("SELECT count(*) FROM predictions WHERE length(request_id) > 128").await,
        0
    );
    // A NUL text (1) four times; a candidate label as `label` and a `scores` key, or as a
    // `scores` key only (1 or 2), three times.
    let sanitized = metric(&server, "sentiment_prediction_log_sanitized_fields_total").await;
    assert!((7.0..=10.0).contains(&sanitized), "{sanitized}");
}

fn hmac_sha256(key: &[u8], text: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// With a key file, text hashes are HMAC-SHA256 keyed with its contents (less its trailing
/// newline), not a plain SHA-256 that short texts can be recovered from by guessing.
#[tokio::test(flavor = "multi_thread")]
async fn a_hash_key_file_makes_text_hashes_hmac_sha256() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let key_file = dir.path().join("hash-key");
    std::fs::write(&key_file, format!("{key}\n")).expect("key file");
    let mut config = logged_config(&pg);
    config.model_dir = Some(common::nli());
    config.prediction_log_hash_key_file = Some(key_file);
    let server = TestServer::start(config).await;
    let (text, pair) = ("yes", "A person agrees.");
    let (id, _) = predict(
        &server,
        json!({"inputs": [{"text": text, "text_pair": pair}]}),
    )
    .await;
    let rows = pg
        .wait_rows(
            "SELECT request_id, text, text_sha256, text_pair_sha256, text_hash_kind \
             FROM predictions",
            1,
        )
        .await;
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), id);
    assert_eq!(row.get::<_, Option<String>>(1), None, "hash mode");
    let stored: String = row.get(2);
    assert_eq!(stored, hmac_sha256(key.as_bytes(), text));
    assert_ne!(stored, sha256(text));
    assert_eq!(
        row.get::<_, Option<String>>(3),
        Some(hmac_sha256(key.as_bytes(), pair))
    );
    assert_eq!(row.get::<_, String>(4), "hmac-sha256");
}
