//! Logging setup: `tracing` events to stderr as text or JSON, filtered by `RUST_LOG` or the
//! configured level. Never log tokens, codes, `sso`/`sig` payloads or secrets: request spans
//! carry only the method, path and request id.
//!
//! Lines are formatted on the thread that logs and appended to one in-memory buffer; a writer
//! thread sends the buffer to stderr every [`LOG_FLUSH_INTERVAL`], in one `write(2)` for all the
//! lines of that interval (and at once when the buffer passes [`LOG_BUFFER_BYTES`]). A request
//! thus never makes a system call or waits for a slow log pipe to log, and a busy bridge writes
//! its request lines in a few calls per second instead of one per request. What is buffered is
//! written out when the [`LogGuard`] is dropped and before a panic message; only a hard kill
//! can lose the last interval's lines.
//!
//! Kept hand-written rather than `tracing-appender`'s non-blocking writer because a benchmark
//! shows it pays: in `cargo bench --bench entry_hop` the log line of a request (the gap between
//! the `info` and `warn` runs) costs 2.9 µs with this buffer and 6.1 µs through
//! tracing-appender (a channel send and a writer-thread wake-up per line), 26.4 instead of about
//! 23 µs per request: over 10% of the bridge's CPU on that path (see docs/benchmarks.md).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Log output format (`log.format`: `text` or `json`), parsed by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// How often buffered log lines are written to stderr.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Buffered bytes past which a line's writer writes the buffer out itself.
pub const LOG_BUFFER_BYTES: usize = 256 * 1024;

/// Log lines not yet written, shared by every logging thread and the writer thread.
#[derive(Debug)]
struct LogBuffer<W> {
    pending: Mutex<Vec<u8>>,
    output: Mutex<Output<W>>,
    /// Set when no writer thread runs: every line is then written at once.
    write_through: AtomicBool,
}

/// Where buffered lines go, and the emptied buffer of the previous flush: a flush swaps it in
/// for the full one, so the lines of the next interval land in memory that is already
/// allocated (no regrowth, no fresh pages to fault in).
#[derive(Debug)]
struct Output<W> {
    writer: W,
    spare: Vec<u8>,
}

impl<W: Write> LogBuffer<W> {
    fn new(writer: W) -> Self {
        Self {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            output: Mutex::new(Output {
                writer,
                spare: Vec::with_capacity(64 * 1024),
            }),
            write_through: AtomicBool::new(false),
        }
    }

    fn append(&self, line: &[u8]) {
        if self.write_through.load(Ordering::Relaxed) {
            self.write_out(line);
            return;
        }
        let full = {
            let mut pending = lock(&self.pending);
            pending.extend_from_slice(line);
            pending.len() >= LOG_BUFFER_BYTES
        };
        if full {
            // Through `flush`, which takes the output before the buffer: taking the buffer
            // first would let the writer thread write later lines before these.
            self.flush();
        }
    }

    /// Writes everything buffered so far. Lines keep their order: the output lock is taken
    /// before the buffer is emptied.
    fn flush(&self) {
        let mut output = lock(&self.output);
        let Output { writer, spare } = &mut *output;
        std::mem::swap(spare, &mut *lock(&self.pending));
        if !spare.is_empty() {
            // Nowhere to report a failing stderr; the lines are lost, the service goes on.
            let _ = writer.write_all(spare);
            let _ = writer.flush();
            spare.clear();
        }
    }

    fn write_out(&self, bytes: &[u8]) {
        let mut output = lock(&self.output);
        let _ = output.writer.write_all(bytes);
        let _ = output.writer.flush();
    }
}

/// A lock whose holder cannot leave the data half-changed (appends and swaps of whole lines).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer `tracing-subscriber` gets for each event: it formats a whole line, then hands it
/// over in one `write_all`.
#[derive(Debug, Clone)]
struct BufferedStderr(Arc<LogBuffer<std::io::Stderr>>);

impl Write for BufferedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = BufferedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Keeps the log writer thread running; dropping it stops the thread and writes out every
/// buffered line. Hold it for the life of the process.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    buffer: Arc<LogBuffer<std::io::Stderr>>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.buffer.flush();
    }
}

/// Starts the writer thread over `buffer`: it flushes every interval until the guard's sender
/// is dropped.
fn start_writer(buffer: Arc<LogBuffer<std::io::Stderr>>) -> LogGuard {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let flushing = buffer.clone();
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(LOG_FLUSH_INTERVAL) {
                flushing.flush();
            }
        })
        .ok();
    if writer.is_none() {
        buffer.flush();
        buffer.write_through.store(true, Ordering::Relaxed);
    }
    let buffer_for_panics = buffer.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        buffer_for_panics.flush();
        previous(info);
    }));
    LogGuard {
        buffer,
        stop: writer.is_some().then_some(stop),
        writer,
    }
}

/// Installs the global subscriber (once per process; later calls are ignored).
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: container logs and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let buffer = Arc::new(LogBuffer::new(std::io::stderr()));
    let guard = start_writer(buffer.clone());
    let writer = BoxMakeWriter::new(BufferedStderr(buffer));
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
    guard
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_in_the_buffer_until_a_flush_and_keep_their_order() {
        let buffer = LogBuffer::new(Vec::new());
        buffer.append(b"one\n");
        buffer.append(b"two\n");
        assert!(
            lock(&buffer.output).writer.is_empty(),
            "nothing written before a flush"
        );
        buffer.flush();
        buffer.append(b"three\n");
        buffer.flush();
        buffer.flush();
        assert_eq!(lock(&buffer.output).writer.as_slice(), b"one\ntwo\nthree\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_line_that_fills_it() {
        let buffer = LogBuffer::new(Vec::new());
        let line = vec![b'x'; 1000];
        let lines = LOG_BUFFER_BYTES / line.len() + 1;
        for _ in 0..lines {
            buffer.append(&line);
        }
        assert_eq!(lock(&buffer.output).writer.len(), lines * line.len());
        assert!(lock(&buffer.pending).is_empty());
    }

    #[test]
    fn a_flush_keeps_both_buffers_allocated() {
        let buffer = LogBuffer::new(Vec::new());
        let line = vec![b'x'; 100 * 1024];
        buffer.append(&line);
        buffer.flush();
        assert!(lock(&buffer.pending).is_empty());
        assert!(lock(&buffer.pending).capacity() >= 64 * 1024);
        assert!(lock(&buffer.output).spare.capacity() >= line.len());
        buffer.append(b"next\n");
        buffer.flush();
        assert_eq!(lock(&buffer.output).writer.len(), line.len() + 5);
    }

    #[test]
    fn without_a_writer_thread_lines_are_written_at_once() {
        let buffer = LogBuffer::new(Vec::new());
        buffer.write_through.store(true, Ordering::Relaxed);
        buffer.append(b"now\n");
        assert_eq!(lock(&buffer.output).writer.as_slice(), b"now\n");
    }
}
