//! A criterion measurement of the benchmark thread's own CPU time instead of wall time, for
//! machines shared with other work. The kernel keeps the account in
//! `/proc/thread-self/schedstat` and brings it up to date at each scheduler tick (4 ms with
//! HZ=250) or context switch, so samples must last well over a tick: [`cpu_group`] uses flat
//! sampling, and the benchmarks set about 100 ms per sample (50 samples in 5 s). Each sample is
//! then within a few percent, and their mean far closer.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};

/// CPU time of the calling thread: the first field of `/proc/thread-self/schedstat`, in
/// nanoseconds, as of the last scheduler tick or context switch.
pub fn thread_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux with schedstats)");
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat run time")
}

/// Criterion measurement of the benchmark thread's CPU time instead of wall time.
pub struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

/// Prints nanoseconds of CPU time in the unit that suits them.
pub struct CpuNanos;

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns CPU")
        } else if typical < 1e6 {
            (1e-3, "µs CPU")
        } else {
            (1e-6, "ms CPU")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                *n as f64
            }
        };
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration * 1e9 / *v);
        "per CPU second"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// Criterion with CPU-time samples of about 100 ms.
pub type CpuCriterion = Criterion<ThreadCpuTime>;

/// The configuration every criterion benchmark here uses.
pub fn cpu_criterion() -> CpuCriterion {
    Criterion::default()
        .with_measurement(ThreadCpuTime)
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

/// A benchmark group whose samples are long enough for tick-granular CPU time.
pub fn cpu_group<'a>(c: &'a mut CpuCriterion, name: &str) -> BenchmarkGroup<'a, ThreadCpuTime> {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    group
}
