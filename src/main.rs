#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use sentiment_server::config::{Cli, Command, Config, LogFormat};
use sentiment_server::{download, healthcheck, logging, server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse_settled();
    match cli.command {
        Some(Command::Healthcheck { timeout }) => match healthcheck::check(&cli.config, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Download(args)) => download(&cli.config, &args),
        None => serve(cli.config),
    }
}

fn download(config: &Config, args: &sentiment_server::config::DownloadArgs) -> ExitCode {
    logging::init_cli(config.log_format, &config.log_level);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(download::run(args)));
    match result {
        Ok(dir) => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: download failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    if let Some(threads) = config.inference_threads {
        // candle's CPU kernels size their thread pool from this variable; set before any use.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // candle runs element-wise ops on a pool whose caller spin-waits for its workers. For
        // encoder-sized tensors the ops take microseconds, while the spinning burnt a fifth of
        // the CPU under load (perf, 2 cores) whenever a worker was descheduled. One thread for
        // them; the matrix kernels keep their own pool (--inference-threads).
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let otlp = config
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| logging::Otlp {
            endpoint,
            service_name: &config.otel_service_name,
        });
    // Dropped last, after the server has stopped: sends the traces still buffered.
    let _telemetry = match logging::init(config.log_format, &config.log_level, otlp) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = config.log_format == LogFormat::Json;
    let result = runtime.block_on(async move {
        let listeners = server::bind(&config).await?;
        server::run(config, listeners, server::shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                tracing::error!(error = %error, "start-up failed");
            }
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
