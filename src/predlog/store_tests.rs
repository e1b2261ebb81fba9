//! The splitter against a real PostgreSQL (the integration tests' throwaway cluster). Rows are
//! refused by a CHECK constraint added here only, a refusal that sanitizing cannot prevent, so
//! these tests fail wherever a refused row costs its batch.

use super::*;
use crate::predlog::{schema, HashKind, Task};

#[path = "../../tests/testsuite/common/postgres.rs"]
mod postgres;

const REFUSED: &str = "refused-by-check";

fn row(request_id: &str, label: &str) -> Row {
    Row {
        id: uuid::Uuid::new_v4(),
        request_id: request_id.into(),
        input_index: 0,
        created_at: SystemTime::now(),
        model_sha256: "00".into(),
        model_name: "m".into(),
        model_version: "1".into(),
        text: None,
        text_sha256: "11".into(),
        text_hash_kind: HashKind::Sha256,
        text_pair: None,
        text_pair_sha256: None,
        task: Task::TextClassification,
        label: label.into(),
        score: 0.5,
        scores: serde_json::json!({ label: 0.5 }),
        latency_ms: 1.0,
    }
}

/// A migrated database whose `predictions` refuses the label [`REFUSED`].
async fn database() -> (postgres::Postgres, Client) {
    let pg = postgres::Postgres::start();
    let client = pg.client().await;
    schema::migrate(&client).await.expect("migrate");
    client
        .batch_execute(&format!(
            "ALTER TABLE predictions ADD CONSTRAINT test_refused CHECK (label <> '{REFUSED}')"
        ))
        .await
        .expect("constraint");
    (pg, client)
}

async fn stored_ids(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT request_id FROM predictions ORDER BY request_id",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn refused_rows_are_isolated_and_every_other_row_is_stored() {
    let (_pg, client) = database().await;
    let metrics = Metrics::new();
    // Two refused rows in different halves, one at the very end.
    let refused = [3, 8, 12];
    let mut pending: Vec<Row> = (0..13)
        .map(|i| {
            let label = if refused.contains(&i) {
                REFUSED
            } else {
                "POSITIVE"
            };
            row(&format!("r{i:02}"), label)
        })
        .collect();
    assert_eq!(store(&client, &mut pending, &metrics).await, Outcome::Done);
    assert!(pending.is_empty());
    let expected: Vec<String> = (0..13)
        .filter(|i| !refused.contains(i))
        .map(|i| format!("r{i:02}"))
        .collect();
    assert_eq!(stored_ids(&client).await, expected);
    assert_eq!(metrics.prediction_log_written.get(), 10);
    assert_eq!(metrics.prediction_log_dropped.get(), 3);
    assert!(metrics.prediction_log_errors.get() >= 3);

    // A batch of one refused row; then a clean batch in one INSERT.
    let errors = metrics.prediction_log_errors.get();
    let mut one = vec![row("single", REFUSED)];
    assert_eq!(store(&client, &mut one, &metrics).await, Outcome::Done);
    assert_eq!(metrics.prediction_log_dropped.get(), 4);
    assert_eq!(metrics.prediction_log_errors.get(), errors + 1);
    let mut clean = vec![row("s1", "NEGATIVE"), row("s2", "NEGATIVE")];
    assert_eq!(store(&client, &mut clean, &metrics).await, Outcome::Done);
    assert_eq!(metrics.prediction_log_written.get(), 12);
    assert_eq!(metrics.prediction_log_errors.get(), errors + 1);
}

#[tokio::test]
async fn a_lost_connection_keeps_the_batch_for_the_next_one() {
    let (pg, client) = database().await;
    let metrics = Metrics::new();
    let admin = pg.client().await;
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .await
        .expect("terminate");
    for _ in 0..100 {
        if client.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pending = vec![row("a", "POSITIVE"), row("b", REFUSED)];
    assert_eq!(
        store(&client, &mut pending, &metrics).await,
        Outcome::Reconnect
    );
    assert_eq!(pending.len(), 2, "nothing dropped on a connection error");
    assert_eq!(metrics.prediction_log_dropped.get(), 0);

    // On a new connection the same rows are sorted out.
    assert_eq!(store(&admin, &mut pending, &metrics).await, Outcome::Done);
    assert_eq!(stored_ids(&admin).await, ["a"]);
    assert_eq!(metrics.prediction_log_dropped.get(), 1);
}

#[tokio::test]
async fn errors_are_logged_with_their_sqlstate_and_without_the_row() {
    let (_pg, client) = database().await;
    let mut secret = row("x", REFUSED);
    secret.text = Some("a private text".into());
    let error = insert(&client, &[secret])
        .await
        .expect_err("refused by the check");
    let shown = describe(&error);
    assert!(shown.starts_with("SQLSTATE 23514: "), "{shown}");
    assert!(shown.contains("test_refused"), "{shown}");
    assert!(!shown.contains("private"), "{shown}");
    assert!(!is_transient(&client, &error));
}
