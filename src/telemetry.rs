//! Logging setup: `tracing` events to stderr as text or JSON, filtered by `RUST_LOG` or the
//! configured level, and the Prometheus recorder. Never log tokens, codes, `sso`/`sig` payloads
//! or secrets: request spans carry only the method, path and request id.
//!
//! Lines are formatted on the thread that logs and handed to `tracing-appender`'s non-blocking
//! writer: its worker thread writes them to stderr through a buffer that it flushes whenever it
//! has no more lines waiting, so a busy bridge writes many lines per `write(2)` and a request
//! never waits for a slow log pipe (unless [`LOG_QUEUE_LINES`] lines are already waiting, when
//! logging blocks rather than dropping lines). Dropping the [`LogGuard`] writes out the rest.

use std::fmt;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines that may wait for the writer thread before logging blocks.
pub const LOG_QUEUE_LINES: usize = 128 * 1024;

/// Bytes the writer thread gathers before a `write(2)`, when lines arrive faster than it writes.
const LOG_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Keeps the log writer thread running; dropping it writes out every queued line and stops the
/// thread. Hold it for the life of the process.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber (once per process; later calls are ignored).
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: container logs and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            LOG_WRITE_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    LogGuard { _writer: guard }
}

/// The Prometheus recorder's handle, installed on first use.
///
/// The `metrics` facade keeps its recorder process-wide by design, so the handle to it is kept
/// the same way; everything else reaches it through `AppState`.
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            crate::metrics_catalog::describe_all();
            metrics::gauge!(
                "bridge_build_info",
                "version" => env!("CARGO_PKG_VERSION")
            )
            .set(1.0);
            Some(handle)
        })
        .clone()
}

/// Displays an error followed by each of its sources, `error: source: source ...`, for one log
/// field (the `tracing` formatter shows only the error's own message).
#[derive(Debug)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
