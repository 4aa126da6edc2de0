//! Logging setup: `tracing` events to stderr as text or JSON, filtered by `RUST_LOG` or the
//! configured level. Never log tokens, codes, `sso`/`sig` payloads or secrets: request spans
//! carry only the method, path and request id.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber (once per process; later calls are ignored).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = BoxMakeWriter::new(std::io::stderr);
    // Colour only on a terminal: container logs and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
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
            metrics::gauge!(
                "bridge_build_info",
                "version" => env!("CARGO_PKG_VERSION")
            )
            .set(1.0);
            Some(handle)
        })
        .clone()
}
