//! Serving lifecycle: listen first (probes answer 503 while the model loads), load the model,
//! serve, and on shutdown drain in-flight work within `--shutdown-timeout`.

mod accept;

use crate::config::Config;
use crate::engine::Engine;
use crate::http::auth::ApiKeys;
use crate::http::build_app;
use crate::metrics::Metrics;
use crate::model::LoadError;
use crate::predlog::PredictionLog;
use crate::state::AppState;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the prediction log may take to store its buffered rows at shutdown.
const PREDICTION_LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds `--host:--port`.
pub async fn bind(config: &Config) -> Result<TcpListener, LoadError> {
    let address = format!("{}:{}", config.host, config.port);
    TcpListener::bind(&address)
        .await
        .map_err(|e| LoadError::new("--host/--port", format!("cannot listen on {address}: {e}")))
}

/// Runs the server on `listener` until `shutdown` completes, then drains. Returns an error
/// only for start-up failures (the model cannot be loaded).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LoadError> {
    let metrics = Arc::new(Metrics::new());
    let api_keys = ApiKeys::load(config.api_key.as_deref(), config.api_key_file.as_deref())
        .map_err(|e| LoadError::new("--api-key", e))?;
    crate::http::cors::layer(&config.cors_allow_origin)
        .map_err(|e| LoadError::new("--cors-allow-origin", e))?;
    let prediction_log = PredictionLog::start(&config, metrics.clone())?;
    let state = Arc::new(
        AppState::new(config.clone(), metrics.clone())
            .with_prediction_log(prediction_log)
            .with_api_keys(api_keys),
    );
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "listening; probes answer 503 until the model is loaded");
    }

    let stop = CancellationToken::new();
    let app = build_app(state.clone());
    let config_limits = (config.header_read_timeout, config.max_connections as usize);
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            let limits = accept::ConnectionLimits {
                header_read_timeout: config_limits.0,
                max_connections: config_limits.1,
            };
            accept::serve(listener, app, limits, stop).await
        }
    });
    let mut shutdown = std::pin::pin!(shutdown);

    let loading = tokio::task::spawn_blocking({
        let config = config.clone();
        move || Engine::load(&config, metrics)
    });
    let engine = tokio::select! {
        loaded = loading => match loaded {
            Ok(Ok(engine)) => Arc::new(engine),
            Ok(Err(error)) => {
                stop.cancel();
                return Err(error);
            }
            Err(join) => {
                stop.cancel();
                return Err(LoadError::new("model", format!("loading panicked: {join}")));
            }
        },
        () = &mut shutdown => {
            tracing::info!("shutdown requested while loading the model");
            state.start_draining();
            stop.cancel();
            return Ok(());
        }
    };
    let info = &engine.info;
    tracing::info!(
        model = %info.model_id,
        model_dir = %info.model_dir,
        architecture = %info.architecture,
        model_type = %info.model_type,
        labels = ?info.labels,
        device = %info.device,
        dtype = %info.dtype,
        compute = %info.compute,
        cpu_kernels = %info.cpu_kernels,
        max_input_length = info.max_input_length,
        weights_sha256 = %info.weights_sha256,
        load_seconds = format!("{:.2}", info.load_seconds),
        "model loaded; ready"
    );
    state.set_engine(engine.clone());

    shutdown.await;
    // Readiness turns 503 at once; the listener stops accepting; in-flight requests finish.
    state.start_draining();
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: draining in-flight requests");
    stop.cancel();
    match tokio::time::timeout(config.shutdown_timeout, server).await {
        Ok(_) => tracing::info!("all requests answered"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
    }
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .ok();
    if let Some(log) = &state.prediction_log {
        log.close(PREDICTION_LOG_FLUSH).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM (docker stop, Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
