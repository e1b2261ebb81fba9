//! The background writer: connect (with backoff), migrate, insert batches ([`store`]),
//! reconnect.

use super::store::{self, describe, Outcome};
use super::{schema, Row};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
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
                tracing::warn!(error = %describe(&error), retry_in = ?backoff, "prediction log: database unavailable");
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
            tracing::warn!(error = %describe(&error), "prediction log: connection lost");
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
        // Rows the database refuses are dropped there, one by one; the rest are stored.
        if store::store(client, pending, metrics).await == Outcome::Reconnect {
            return false;
        }
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
