//! Storing one batch: a single UNNEST INSERT; when the database refuses it for the rows' sake
//! (not the connection's), the batch is halved until the refused rows are isolated, so that
//! one bad row costs only itself.

use super::Row;
use crate::metrics::Metrics;
use std::ops::Range;
use std::time::{Duration, SystemTime};
use tokio_postgres::Client;

/// An insert that takes longer than this means a hung connection: drop it and reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest server message logged. Only the message (never its DETAIL, which can quote the
/// row), and bounded all the same.
const MAX_MESSAGE_CHARS: usize = 200;

const INSERT: &str = "INSERT INTO predictions \
    (id, request_id, input_index, created_at, model_sha256, text, text_sha256, label, score, scores, latency_ms, \
    text_pair, text_pair_sha256, task, model_name, model_version, text_hash_kind) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::timestamptz[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::float4[], $10::jsonb[], $11::float4[], \
    $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) \
    ON CONFLICT (id) DO NOTHING";

/// What became of a batch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Every row was stored or, refused by the database on its own, dropped and counted;
    /// `pending` is empty.
    Done,
    /// The connection failed or hung: the rows not yet stored are still in `pending`, to be
    /// written again after reconnecting.
    Reconnect,
}

/// One INSERT's result, sorted by what to do about it.
enum Attempt {
    Stored,
    Refused(tokio_postgres::Error),
    Lost,
}

/// Stores `pending` and says whether the connection is still usable.
pub(super) async fn store(client: &Client, pending: &mut Vec<Row>, metrics: &Metrics) -> Outcome {
    let error = match attempt(client, pending, metrics).await {
        Attempt::Stored => {
            metrics.prediction_log_written.inc_by(pending.len() as u64);
            pending.clear();
            return Outcome::Done;
        }
        Attempt::Lost => return Outcome::Reconnect,
        Attempt::Refused(error) => error,
    };
    if pending.len() > 1 {
        tracing::warn!(
            error = %describe(&error),
            rows = pending.len(),
            "prediction log: batch refused; splitting it to find the refused rows"
        );
    }
    isolate(client, pending, error, metrics).await
}

/// Halves a refused batch until each refused part is one row: the parts the database takes
/// are stored, the single rows it refuses are dropped, counted and logged.
async fn isolate(
    client: &Client,
    pending: &mut Vec<Row>,
    error: tokio_postgres::Error,
    metrics: &Metrics,
) -> Outcome {
    let mut settled = vec![false; pending.len()];
    // Parts known to be refused, each split in two: about 2 x refused rows x log2(batch)
    // inserts in all, and none while the whole batch is taken.
    let mut refused: Vec<(Range<usize>, _)> = vec![(0..pending.len(), error)];
    while let Some((range, error)) = refused.pop() {
        match range.len() {
            0 => continue,
            1 => {
                drop_row(&pending[range.start], &error, metrics);
                settled[range.start] = true;
                continue;
            }
            _ => {}
        }
        let middle = range.start + range.len() / 2;
        for half in [range.start..middle, middle..range.end] {
            match attempt(client, &pending[half.clone()], metrics).await {
                Attempt::Stored => {
                    metrics.prediction_log_written.inc_by(half.len() as u64);
                    settled[half].fill(true);
                }
                Attempt::Refused(error) => refused.push((half, error)),
                Attempt::Lost => {
                    keep_unsettled(pending, &settled);
                    return Outcome::Reconnect;
                }
            }
        }
    }
    pending.clear();
    Outcome::Done
}

fn keep_unsettled(pending: &mut Vec<Row>, settled: &[bool]) {
    let mut settled = settled.iter();
    pending.retain(|_| !settled.next().copied().unwrap_or(false));
}

fn drop_row(row: &Row, error: &tokio_postgres::Error, metrics: &Metrics) {
    metrics.prediction_log_dropped.inc();
    // Ids and the reason only: never the row's text.
    tracing::error!(
        error = %describe(error),
        row_id = %row.id,
        request_id = %row.request_id,
        input_index = row.input_index,
        "prediction log: row refused by the database; dropped"
    );
}

/// One INSERT under [`WRITE_TIMEOUT`]; connection trouble is logged and counted here.
async fn attempt(client: &Client, rows: &[Row], metrics: &Metrics) -> Attempt {
    match tokio::time::timeout(WRITE_TIMEOUT, insert(client, rows)).await {
        Ok(Ok(())) => Attempt::Stored,
        Ok(Err(error)) if is_transient(client, &error) => {
            tracing::warn!(error = %describe(&error), "prediction log: write failed; reconnecting");
            metrics.prediction_log_errors.inc();
            Attempt::Lost
        }
        Ok(Err(error)) => {
            metrics.prediction_log_errors.inc();
            Attempt::Refused(error)
        }
        Err(_) => {
            tracing::warn!(timeout = ?WRITE_TIMEOUT, "prediction log: write timed out; reconnecting");
            metrics.prediction_log_errors.inc();
            Attempt::Lost
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

/// An error for the log: the server's SQLSTATE and message (bounded), else the error and its
/// cause (tokio-postgres shows only its kind, such as `db error`).
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let message: String = db.message().chars().take(MAX_MESSAGE_CHARS).collect();
        return format!("SQLSTATE {}: {message}", db.code().code());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

pub(super) async fn insert(client: &Client, rows: &[Row]) -> Result<(), tokio_postgres::Error> {
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
    let hash_kinds: Vec<&str> = rows.iter().map(|r| r.text_hash_kind.as_str()).collect();
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
                &hash_kinds,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
