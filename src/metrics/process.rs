//! Process metrics read from `/proc/self` at each scrape (Linux only; elsewhere the families are
//! absent): resident memory, open file descriptors, CPU time, start time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The `process_*` families, in the names Prometheus client libraries use.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Resident set size in bytes.
    pub rss_bytes: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// User + system CPU time in seconds.
    pub cpu_seconds: f64,
}

/// Reads `/proc/self`; `None` where there is no procfs.
pub fn sample() -> Option<Sample> {
    // `VmRSS:   12345 kB`: in kB whatever the page size.
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces and parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `(comm) `.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    // CPU times count in USER_HZ, 100 per second in the kernel's ABI on every platform.
    Some(Sample {
        rss_bytes: rss_kb * 1024.0,
        open_fds,
        cpu_seconds: ticks / 100.0,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent",
            None,
            MetricType::Counter,
        )?)?;
        let rss = ConstGauge::new(s.rss_bytes);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            MetricType::Gauge,
        )?)?;
        let fds = ConstGauge::new(s.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reads_proc_self() {
        let s = super::sample().expect("procfs on Linux");
        assert!(s.rss_bytes > 1_000_000.0, "{s:?}");
        assert!(s.open_fds >= 3.0, "{s:?}");
        assert!(s.cpu_seconds >= 0.0, "{s:?}");
    }
}
