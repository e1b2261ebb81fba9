//! Prediction log against a real PostgreSQL server: rows land with the right content, the
//! schema migrates once, and a database outage never fails /predict nor loses a row silently.

use crate::common;
mod hardening;
mod token_rows;

use common::postgres::Postgres;
use common::TestServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

fn logged_config(pg: &Postgres) -> sentiment_server::config::Config {
    let mut config = common::config_for(common::minilm());
    config.database_url = Some(pg.url());
    config.database_password_file = Some(pg.password_file());
    config
}

async fn predict(server: &TestServer, body: Value) -> (String, Value) {
    let response = server
        .client
        .post(server.url("/predict"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{body}");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    (id, response.json().await.expect("json"))
}

async fn count_rows(pg: &Postgres) -> i64 {
    let client = pg.client().await;
    client
        .query_one("SELECT count(*) FROM predictions", &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(0)
}

/// The value of one un-labelled metric in Prometheus text.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get_text("/metrics").await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_prediction_lands_in_postgres_with_its_request_model_and_scores() {
    let pg = Postgres::start();
    let server = TestServer::start(logged_config(&pg)).await;
    let info: Value = server.get_json("/info").await;
    let weights = info["weights_sha256"]
        .as_str()
        .expect("weights_sha256")
        .to_owned();

    let (one, _) = predict(
        &server,
        json!({"inputs": "a gripping, beautifully acted film"}),
    )
    .await;
    // Raw logits and top_k for the client; the log still keeps every label's probability.
    let (batch, _) = predict(
        &server,
        json!({"inputs": ["dull and lifeless", "a joy from start to finish"], "raw_scores": true, "top_k": 1}),
    )
    .await;
    wait_for("3 rows", Duration::from_secs(20), async || {
        count_rows(&pg).await == 3
    })
    .await;

    let client = pg.client().await;
    let rows = client
        .query(
            "SELECT request_id, input_index, model_sha256, text, text_sha256, label, score, scores, \
             latency_ms, created_at > now() - interval '5 minutes', model_name, model_version \
             FROM predictions ORDER BY created_at, input_index",
            &[],
        )
        .await
        .expect("query");
    let expected = [
        (&one, 0, "a gripping, beautifully acted film", "POSITIVE"),
        (&batch, 0, "dull and lifeless", "NEGATIVE"),
        (&batch, 1, "a joy from start to finish", "POSITIVE"),
    ];
    for (row, (id, index, text, label)) in rows.iter().zip(expected) {
        assert_eq!(row.get::<_, String>(0), *id);
        assert_eq!(row.get::<_, i32>(1), index);
        assert_eq!(row.get::<_, String>(2), weights);
        assert_eq!(
            row.get::<_, Option<String>>(3),
            None,
            "hash mode must not store the text"
        );
        assert_eq!(row.get::<_, String>(4), sha256(text));
        assert_eq!(row.get::<_, String>(5), label);
        let score: f32 = row.get(6);
        let scores: Value = row.get(7);
        let probabilities: Vec<f64> = ["NEGATIVE", "POSITIVE"]
            .iter()
            .map(|l| scores[l].as_f64().expect("score per label"))
            .collect();
        assert!(
            (probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4,
            "{scores}"
        );
        assert!((scores[label].as_f64().unwrap() - score as f64).abs() < 1e-6);
        assert!(score > 0.5);
        assert!(row.get::<_, f32>(8) > 0.0);
        assert!(row.get::<_, bool>(9));
        // The model as routes name it: --model-dir's directory, version 1.
        assert_eq!(
            row.get::<_, Option<String>>(10).as_deref(),
            Some("minilm-sst2")
        );
        assert_eq!(row.get::<_, Option<String>>(11).as_deref(), Some("1"));
    }
    assert_eq!(
        metric(&server, "sentiment_prediction_log_rows_written_total").await,
        3.0
    );
    assert_eq!(
        metric(&server, "sentiment_prediction_log_dropped_rows_total").await,
        0.0
    );
    assert_eq!(
        metric(&server, "sentiment_prediction_log_connected").await,
        1.0
    );
    let info_text = serde_json::to_string(&info).unwrap();
    assert!(!info_text.contains(common::postgres::PASSWORD));
    drop(server);

    // A second server on the same database: the schema is already there; full-text mode.
    let mut config = logged_config(&pg);
    config.prediction_log_text = sentiment_server::config::LogText::Full;
    let server = TestServer::start(config).await;
    let (id, _) = predict(&server, json!({"inputs": "keep this one"})).await;
    wait_for("the 4th row", Duration::from_secs(20), async || {
        count_rows(&pg).await == 4
    })
    .await;
    let row = client
        .query_one(
            "SELECT text, text_sha256 FROM predictions WHERE request_id = $1",
            &[&id],
        )
        .await
        .expect("row");
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("keep this one")
    );
    assert_eq!(row.get::<_, String>(1), sha256("keep this one"));
    let kind: String = client
        .query_one(
            "SELECT text_hash_kind FROM predictions WHERE request_id = $1",
            &[&id],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(kind, "sha256", "no key file: plain SHA-256");
    let migrations: i64 = client
        .query_one("SELECT count(*) FROM sentiment_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        migrations as usize,
        sentiment_server::predlog::MIGRATIONS.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_never_fails_predict_and_every_row_is_stored_or_counted() {
    let mut pg = Postgres::start();
    pg.stop();
    let mut config = logged_config(&pg);
    config.prediction_log_buffer = 8;
    config.prediction_log_batch = 4;
    // Down at start-up: the server still becomes ready.
    let server = TestServer::start(config).await;
    let mut sent = 0u32;
    let send = async |n: u32, server: &TestServer| {
        for i in 0..n {
            let started = Instant::now();
            predict(
                server,
                json!({"inputs": format!("review number {i}: a fine film")}),
            )
            .await;
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "a request waited on the database"
            );
        }
        n
    };
    sent += send(20, &server).await;
    assert_eq!(
        metric(&server, "sentiment_prediction_log_connected").await,
        0.0
    );
    let dropped = metric(&server, "sentiment_prediction_log_dropped_rows_total").await;
    assert_eq!(dropped, 12.0, "a buffer of 8 keeps 8 of 20 rows");

    pg.start_again();
    wait_for("the buffered rows", Duration::from_secs(60), async || {
        count_rows(&pg).await == 8
    })
    .await;
    sent += send(10, &server).await;
    wait_for("18 rows", Duration::from_secs(20), async || {
        count_rows(&pg).await == 18
    })
    .await;

    // Killed under traffic (no clean shutdown), then restarted.
    pg.kill();
    sent += send(20, &server).await;
    pg.start_again();
    sent += send(5, &server).await;
    let mut settled = (0, 0.0);
    wait_for(
        "every row stored or counted",
        Duration::from_secs(60),
        async || {
            let stored = count_rows(&pg).await;
            let dropped = metric(&server, "sentiment_prediction_log_dropped_rows_total").await;
            settled = (stored, dropped);
            stored as f64 + dropped == sent as f64
        },
    )
    .await;
    let (stored, dropped) = settled;
    assert!(
        dropped >= 12.0 + 8.0,
        "the outage dropped rows beyond the buffer: {dropped}"
    );
    assert_eq!(
        metric(&server, "sentiment_prediction_log_rows_written_total").await,
        stored as f64
    );
    assert_eq!(
        metric(&server, "sentiment_prediction_log_connected").await,
        1.0
    );
}

#[tokio::test]
async fn an_unreadable_password_file_a_bad_url_or_a_short_hash_key_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short_key = dir.path().join("short-key");
    std::fs::write(&short_key, "fifteen-bytes!!\n").expect("key file");
    for (url, file, key, expected) in [
        (
            "postgres://u@127.0.0.1/db",
            Some("/nonexistent/db-password"),
            None,
            "/nonexistent/db-password",
        ),
        (
            "postgres://u@127.0.0.1:notaport/db",
            None,
            None,
            "--database-url",
        ),
        (
            "postgres://u@127.0.0.1/db",
            None,
            Some(&short_key),
            "--prediction-log-hash-key-file",
        ),
    ] {
        let mut config = common::config_for(common::minilm());
        config.host = "127.0.0.1".into();
        config.port = 0;
        config.database_url = Some(url.into());
        config.database_password_file = file.map(Into::into);
        config.prediction_log_hash_key_file = key.cloned();
        let listener = sentiment_server::server::bind(&config).await.expect("bind");
        let error = sentiment_server::server::run(config, listener, std::future::pending())
            .await
            .expect_err("start-up must fail");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(!message.contains("fifteen"), "never the key: {message}");
    }
}

/// Text pairs store their second text as the text is stored; zero-shot requests store one row
/// per input with the candidate labels' scores. A database at schema version 1 (the previous
/// release's) gains the new columns, and its rows read as the text classification they were.
#[tokio::test(flavor = "multi_thread")]
async fn pairs_and_zero_shot_answers_are_logged_with_their_task_on_an_upgraded_schema() {
    let pg = Postgres::start();
    let client = pg.client().await;
    client
        .batch_execute(
            "CREATE TABLE sentiment_schema_migrations (version integer PRIMARY KEY, \
             description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    client
        .batch_execute(sentiment_server::predlog::MIGRATIONS[0].2)
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO sentiment_schema_migrations (version, description) VALUES (1, 'v1'); \
             INSERT INTO predictions (id, request_id, input_index, created_at, model_sha256, \
             text_sha256, label, score, scores, latency_ms) VALUES (gen_random_uuid(), 'old', 0, \
             now() - interval '1 minute', 'x', 'y', 'POSITIVE', 0.9, '{}', 1)",
        )
        .await
        .unwrap();
    let mut config = logged_config(&pg);
    config.model_dir = Some(common::nli());
    config.prediction_log_text = sentiment_server::config::LogText::Full;
    let server = TestServer::start(config).await;
    let (pair_request, _) = predict(
        &server,
        json!({"inputs": [{"text": "A man plays football.", "text_pair": "A person plays a sport."}, "Just one text."]}),
    )
    .await;
    let response = server
        .client
        .post(server.url("/zero-shot-classification"))
        .json(
            &json!({"inputs": ["The match went to extra time.", "The vote was close."],
                      "parameters": {"candidate_labels": "sports, politics"}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let zero_shot_request = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answers: Value = response.json().await.unwrap();

    let rows = pg
        .wait_rows(
            "SELECT request_id, input_index, text, text_pair, text_pair_sha256, task, label, scores \
             FROM predictions ORDER BY created_at, input_index",
            5,
        )
        .await;
    let old = &rows[0];
    assert_eq!(old.get::<_, String>(0), "old");
    assert_eq!(old.get::<_, Option<String>>(3), None);
    assert_eq!(old.get::<_, String>(5), "text-classification");
    let nli = ["contradiction", "neutral", "entailment"];
    for (row, text, pair) in [
        (
            &rows[1],
            "A man plays football.",
            Some("A person plays a sport."),
        ),
        (&rows[2], "Just one text.", None),
    ] {
        assert_eq!(row.get::<_, String>(0), pair_request);
        assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some(text));
        assert_eq!(row.get::<_, Option<String>>(3).as_deref(), pair);
        assert_eq!(row.get::<_, Option<String>>(4), pair.map(sha256));
        assert_eq!(row.get::<_, String>(5), "text-classification");
        assert!(nli.contains(&row.get::<_, String>(6).as_str()));
        let scores: Value = row.get(7);
        assert_eq!(scores.as_object().map(|o| o.len()), Some(3), "{scores}");
    }
    for (i, (row, answer)) in rows[3..]
        .iter()
        .zip(answers.as_array().unwrap())
        .enumerate()
    {
        assert_eq!(row.get::<_, String>(0), zero_shot_request);
        assert_eq!(row.get::<_, i32>(1), i as i32);
        assert_eq!(
            row.get::<_, Option<String>>(2).as_deref(),
            answer["sequence"].as_str()
        );
        assert_eq!(row.get::<_, Option<String>>(3), None);
        assert_eq!(row.get::<_, String>(5), "zero-shot-classification");
        assert_eq!(
            row.get::<_, String>(6),
            answer["labels"][0].as_str().unwrap()
        );
        let scores: Value = row.get(7);
        for (label, score) in answer["labels"]
            .as_array()
            .unwrap()
            .iter()
            .zip(answer["scores"].as_array().unwrap())
        {
            let logged = scores[label.as_str().unwrap()]
                .as_f64()
                .expect("a logged score");
            assert!(
                (logged - score.as_f64().unwrap()).abs() < 1e-6,
                "{scores} vs {answer}"
            );
        }
    }
    let migrations: i64 = client
        .query_one("SELECT count(*) FROM sentiment_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        migrations as usize,
        sentiment_server::predlog::MIGRATIONS.len()
    );
}
