//! Serving lifecycle: listen first (probes answer 503 while the model loads), load the model,
//! serve, and on shutdown turn readiness to 503, keep serving for `--shutdown-delay`, then drain
//! in-flight work within `--shutdown-timeout`.

mod accept;
mod connection;
mod fetch;
mod load;

use crate::auth::{AdminAccess, ApiKeys};
use crate::config::Config;
use crate::error::StartupError;
use crate::http::build_app;
use crate::metrics::Metrics;
use crate::predlog::PredictionLog;
use crate::state::AppState;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long the prediction log may take to store its buffered rows at shutdown.
const PREDICTION_LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// The server's sockets: HTTP always, gRPC with `--grpc-port` (on the HTTP socket when
/// `--grpc-port` equals `--port`).
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: Option<TcpListener>,
    /// gRPC is served on the HTTP socket, told apart by its `application/grpc` content type.
    pub grpc_on_http: bool,
}

impl Listeners {
    /// The HTTP address (with the port the system chose for `--port 0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The gRPC address, when `--grpc-port` is set.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        match &self.grpc {
            Some(listener) => listener.local_addr().ok(),
            None if self.grpc_on_http => self.http.local_addr().ok(),
            None => None,
        }
    }
}

/// Binds `--host:--port`, and `--host:--grpc-port` when set.
pub async fn bind(config: &Config) -> Result<Listeners, StartupError> {
    let open = |port: u16, flag: &'static str| async move {
        let address = format!("{}:{port}", config.host);
        TcpListener::bind(&address)
            .await
            .map_err(|e| StartupError::setting(flag, format!("cannot listen on {address}: {e}")))
    };
    let http = open(config.port, "--host/--port").await?;
    // One port for both (Knative, e.g. KServe's serverless mode, allows a container one port).
    let grpc_on_http = config.port != 0 && config.grpc_port == Some(config.port);
    let grpc = match config.grpc_port {
        Some(port) if !grpc_on_http => Some(open(port, "--host/--grpc-port").await?),
        _ => None,
    };
    Ok(Listeners {
        http,
        grpc,
        grpc_on_http,
    })
}

/// Runs the server on `listeners` until `shutdown` completes, then drains. Returns an error
/// only for start-up failures (the model cannot be loaded).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let metrics = Arc::new(Metrics::new());
    // Taken out of the config: from here on only the keys' digests are kept.
    let mut config = config;
    let state = shared_state(&mut config, &metrics)?;
    if let Ok(address) = listeners.local_addr() {
        tracing::info!(%address, "listening; probes answer 503 until the model is loaded");
    }
    if let Some(address) = listeners.grpc_addr() {
        tracing::info!(%address, "listening for gRPC (Open Inference Protocol, grpc.health.v1)");
    }
    let stop = CancellationToken::new();
    let server = serve(listeners, &state, &config, stop.clone());
    let mut shutdown = std::pin::pin!(shutdown);

    let loading = {
        let (config, state, metrics) = (config.clone(), state.clone(), metrics.clone());
        async move {
            let (sources, default) = load::sources(&config).await?;
            load::load_all(&config, &state, &metrics, sources, default).await
        }
    };
    let loaded = tokio::select! {
        loaded = loading => Some(loaded),
        () = &mut shutdown => None,
    };
    match loaded {
        Some(Err(error)) => {
            stop.cancel();
            return Err(error);
        }
        Some(Ok(())) => {
            tracing::info!("every model version loaded");
            // Hot reload from here on; it stops with the shutdown signal, so that no version
            // is loaded or swapped while requests drain.
            let watching = CancellationToken::new();
            let watcher = crate::reload::start(&config, &state, &metrics, watching.clone());
            shutdown.await;
            watching.cancel();
            // A load in progress is abandoned rather than waited for: it may take minutes.
            if let Some(watcher) = watcher {
                watcher.abort();
            }
        }
        // Requests may already run on the default model: those drain as usual below.
        None if state.loaded_engine().is_ok() => {
            tracing::info!("shutdown requested while loading other models");
        }
        None => {
            tracing::info!("shutdown requested while loading the model");
            state.start_draining();
            stop.cancel();
            return Ok(());
        }
    }
    drain(&state, &config, stop, server).await;
    Ok(())
}

/// The state every request shares: the keys read and taken out of `config`, the prediction
/// log started.
fn shared_state(
    config: &mut Config,
    metrics: &Arc<Metrics>,
) -> Result<Arc<AppState>, StartupError> {
    let api_keys = ApiKeys::load(
        config.api_key.take().as_deref(),
        config.api_key_file.as_deref(),
    )
    .map_err(|e| StartupError::setting("--api-key", e))?;
    let admin_keys = ApiKeys::load(None, config.admin_key_file.as_deref())
        .map_err(|e| StartupError::setting("--admin-key-file", e))?;
    let admin = AdminAccess::new(admin_keys, &api_keys, config.allow_unauthenticated_admin);
    warn_if_open(config, &api_keys, &admin);
    let state = AppState::new(config.clone(), metrics.clone())?;
    let prediction_log = PredictionLog::start(config, metrics.clone())?;
    Ok(Arc::new(
        state
            .with_prediction_log(prediction_log)
            .with_api_keys(api_keys)
            .with_admin(admin),
    ))
}

/// Serves HTTP (and gRPC) on `listeners` until `stop`; the task ends when both have drained.
fn serve(
    listeners: Listeners,
    state: &Arc<AppState>,
    config: &Config,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let limits = connection::ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections as usize,
    };
    // Both protocols drain together: `stop` ends both accept loops, each waits for its own
    // open requests.
    let mut app = build_app(state.clone());
    if listeners.grpc_on_http {
        app = by_content_type(app, crate::grpc::build_service(state.clone()));
    }
    let http = accept::serve(listeners.http, app, limits, stop.clone());
    let grpc = listeners.grpc.map(|listener| {
        let service = crate::grpc::build_service(state.clone());
        accept::serve(listener, service, limits, stop.clone())
    });
    tokio::spawn(async move {
        match grpc {
            Some(grpc) => {
                tokio::join!(http, grpc);
            }
            None => http.await,
        }
    })
}

/// Withdraws from rotation, waits `--shutdown-delay`, then drains in-flight requests for at
/// most `--shutdown-timeout` and stops the engines and the prediction log.
async fn drain(
    state: &Arc<AppState>,
    config: &Config,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
) {
    // Readiness turns 503 at once. With --shutdown-delay, connections are still accepted and
    // requests served meanwhile, so that a load balancer checking /ready takes this server out
    // of rotation before it stops accepting (without a preStop hook, as on Docker Swarm).
    state.withdraw();
    if !config.shutdown_delay.is_zero() {
        tracing::info!(delay = ?config.shutdown_delay, "shutting down: readiness is 503; still serving until the delay ends");
        tokio::time::sleep(config.shutdown_delay).await;
    }
    // New work is refused; the listeners stop accepting; idle connections are closed and
    // in-flight requests finish.
    state.start_draining();
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: draining in-flight requests");
    stop.cancel();
    match tokio::time::timeout(config.shutdown_timeout, server).await {
        Ok(_) => tracing::info!("all requests answered"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
    }
    let served = state.served();
    tokio::task::spawn_blocking(move || served.engines().for_each(|engine| engine.shutdown()))
        .await
        .ok();
    if let Some(log) = &state.prediction_log {
        log.close(PREDICTION_LOG_FLUSH).await;
    }
    tracing::info!("stopped");
}

/// Says at start-up what anyone who reaches the port may do, when that is more than a
/// loopback client: run inference without a key, and change what is served.
fn warn_if_open(config: &Config, api_keys: &ApiKeys, admin: &AdminAccess) {
    let loopback = config.host == "localhost"
        || config
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return;
    }
    if !api_keys.enabled() {
        tracing::warn!(host = %config.host, "no API key (--api-key-file): anyone who reaches this port may run inference");
    }
    if config.model_repository.is_some() && matches!(admin, AdminAccess::Open) {
        tracing::warn!(host = %config.host, "--allow-unauthenticated-admin: anyone who reaches this port may load, unload and rescan models");
    }
}

/// One router that sends gRPC requests (`content-type: application/grpc...`) to `grpc` and
/// everything else to `http`.
fn by_content_type(http: Router, grpc: Router) -> Router {
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let is_grpc = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let target = if is_grpc { grpc.clone() } else { http.clone() };
        target.oneshot(request)
    }))
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
