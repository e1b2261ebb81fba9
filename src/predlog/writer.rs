//! The background writer: connect (with backoff), migrate, insert batches, reconnect.

use super::{schema, Row};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An insert that takes longer than this means a hung connection: drop it and reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

const INSERT: &str = "INSERT INTO predictions \
    (id, request_id, input_index, created_at, model_sha256, text, text_sha256, label, score, scores, latency_ms, \
    text_pair, text_pair_sha256, task, model_name, model_version) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::timestamptz[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::float4[], $10::jsonb[], $11::float4[], \
    $12::text[], $13::text[], $14::text[], $15::text[], $16::text[]) \
    ON CONFLICT (id) DO NOTHING";

pub(super) async fn run(
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mut rows: mpsc::Receiver<Row>,
    batch: usize,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // Rows taken from the buffer but not yet stored; kept across reconnects.
    let mut pending: Vec<Row> = Vec::with_capacity(batch);
    let mut backoff = MIN_BACKOFF;
    loop {
        let client = tokio::select! {
            client = connect(&pg, &tls) => client,
            () = stop.cancelled() => break,
        };
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                metrics.prediction_log_connected.set(0);
                tracing::warn!(error = %error, retry_in = ?backoff, "prediction log: database unavailable");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        metrics.prediction_log_connected.set(1);
        tracing::info!("prediction log: connected");
        let finished =
            write_until_error(&client, &mut rows, &mut pending, batch, &metrics, &stop).await;
        metrics.prediction_log_connected.set(0);
        if finished {
            return;
        }
    }
    // Stopped while disconnected: whatever is still buffered cannot be stored.
    rows.close();
    let lost = pending.len() as u64 + drain(&mut rows, &mut pending, usize::MAX, &metrics) as u64;
    if lost > 0 {
        metrics.prediction_log_dropped.inc_by(lost);
        tracing::warn!(
            rows = lost,
            "prediction log: database unavailable at shutdown; rows dropped"
        );
    }
}

async fn connect(
    pg: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = pg.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(error = %error, "prediction log: connection lost");
        }
    });
    schema::migrate(&client).await?;
    Ok(client)
}

/// Writes until the connection fails (returns false) or the log is stopped and flushed (true).
async fn write_until_error(
    client: &Client,
    rows: &mut mpsc::Receiver<Row>,
    pending: &mut Vec<Row>,
    batch: usize,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> bool {
    let mut stopping = false;
    loop {
        if pending.is_empty() && !stopping {
            tokio::select! {
                row = rows.recv() => match row {
                    Some(row) => {
                        metrics.prediction_log_buffered.dec();
                        pending.push(row);
                    }
                    None => return true,
                },
                () = stop.cancelled() => {
                    stopping = true;
                    rows.close();
                }
            }
        }
        // Whatever piled up while the last insert ran goes into this one.
        drain(rows, pending, batch, metrics);
        if pending.is_empty() {
            if stopping {
                return true;
            }
            continue;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, insert(client, pending)).await {
            Ok(Ok(())) => {
                metrics.prediction_log_written.inc_by(pending.len() as u64);
                pending.clear();
            }
            Ok(Err(error)) if is_transient(client, &error) => {
                tracing::warn!(error = %error, "prediction log: write failed; reconnecting");
                metrics.prediction_log_errors.inc();
                return false;
            }
            Ok(Err(error)) => {
                // The database refused these rows (not the connection): retrying cannot help.
                tracing::error!(error = %error, rows = pending.len(), "prediction log: rows rejected");
                metrics.prediction_log_errors.inc();
                metrics.prediction_log_dropped.inc_by(pending.len() as u64);
                pending.clear();
            }
            Err(_) => {
                tracing::warn!(timeout = ?WRITE_TIMEOUT, "prediction log: write timed out; reconnecting");
                metrics.prediction_log_errors.inc();
                return false;
            }
        }
    }
}

/// Connection trouble (retry after reconnecting) as opposed to rows the database refuses.
fn is_transient(client: &Client, error: &tokio_postgres::Error) -> bool {
    if client.is_closed() || error.is_closed() {
        return true;
    }
    match error.as_db_error() {
        // Connection exceptions, insufficient resources, operator intervention (shutdown,
        // restart), transaction rollbacks (deadlock, serialisation).
        Some(db) => ["08", "53", "57", "40"]
            .iter()
            .any(|class| db.code().code().starts_with(class)),
        // Not a server answer at all: I/O, protocol.
        None => true,
    }
}

fn drain(
    rows: &mut mpsc::Receiver<Row>,
    pending: &mut Vec<Row>,
    batch: usize,
    metrics: &Metrics,
) -> usize {
    let mut taken = 0;
    while pending.len() < batch {
        match rows.try_recv() {
            Ok(row) => {
                metrics.prediction_log_buffered.dec();
                pending.push(row);
                taken += 1;
            }
            Err(_) => break,
        }
    }
    taken
}

async fn insert(client: &Client, rows: &[Row]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
    let request_ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    let indexes: Vec<i32> = rows.iter().map(|r| r.input_index).collect();
    let times: Vec<SystemTime> = rows.iter().map(|r| r.created_at).collect();
    let models: Vec<&str> = rows.iter().map(|r| r.model_sha256.as_str()).collect();
    let texts: Vec<Option<&str>> = rows.iter().map(|r| r.text.as_deref()).collect();
    let hashes: Vec<&str> = rows.iter().map(|r| r.text_sha256.as_str()).collect();
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    let scores: Vec<f32> = rows.iter().map(|r| r.score).collect();
    let all_scores: Vec<&serde_json::Value> = rows.iter().map(|r| &r.scores).collect();
    let latencies: Vec<f32> = rows.iter().map(|r| r.latency_ms).collect();
    let pairs: Vec<Option<&str>> = rows.iter().map(|r| r.text_pair.as_deref()).collect();
    let pair_hashes: Vec<Option<&str>> =
        rows.iter().map(|r| r.text_pair_sha256.as_deref()).collect();
    let tasks: Vec<&str> = rows.iter().map(|r| r.task.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.model_name.as_str()).collect();
    let versions: Vec<&str> = rows.iter().map(|r| r.model_version.as_str()).collect();
    client
        .execute(
            INSERT,
            &[
                &ids,
                &request_ids,
                &indexes,
                &times,
                &models,
                &texts,
                &hashes,
                &labels,
                &scores,
                &all_scores,
                &latencies,
                &pairs,
                &pair_hashes,
                &tasks,
                &names,
                &versions,
            ],
        )
        .await?;
    Ok(())
}
