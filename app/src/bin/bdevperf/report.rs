//! The end-of-run table, in SPDK bdevperf's layout.

use std::time::Duration;

use crate::job::JobResult;
use crate::opts::{Checked, Workload};

/// Rates of one row.
struct Row {
    runtime: f64,
    iops: f64,
    mibs: f64,
    fail_s: f64,
    avg_us: f64,
    min_us: f64,
    max_us: f64,
}

fn row(r: &JobResult) -> Row {
    let secs = r.runtime.as_secs_f64().max(1e-9);
    Row {
        runtime: r.runtime.as_secs_f64(),
        iops: r.ios as f64 / secs,
        mibs: r.bytes as f64 / secs / (1024.0 * 1024.0),
        fail_s: r.fails as f64 / secs,
        avg_us: if r.ios == 0 {
            0.0
        } else {
            r.lat_sum_ns as f64 / r.ios as f64 / 1000.0
        },
        min_us: r.lat_min_ns as f64 / 1000.0,
        max_us: r.lat_max_ns as f64 / 1000.0,
    }
}

fn line(name: &str, x: &Row) -> String {
    format!(
        "\t {name:<20}: {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>8.2} {:>10.2} {:>10.2} {:>10.2}",
        x.runtime, x.iops, x.mibs, x.fail_s, 0.0, x.avg_us, x.min_us, x.max_us
    )
}

/// Prints the table; true if anything failed (an I/O, a miscompare, a job that did not run).
pub fn print(results: &[JobResult], o: &Checked, elapsed: Duration) -> bool {
    println!("{:>110}", "Latency(us)");
    println!(
        " {:<28}: {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "Device Information",
        "runtime(s)",
        "IOPS",
        "MiB/s",
        "Fail/s",
        "TO/s",
        "Average",
        "min",
        "max"
    );
    let mut bad = false;
    let (mut ios, mut bytes, mut fails, mut sum) = (0u64, 0u64, 0u64, 0u128);
    let (mut min, mut max) = (u64::MAX, 0u64);
    for r in results {
        let failed = r.error.is_some() || r.fails > 0 || r.miscompares > 0;
        bad |= failed;
        println!(
            " Job: {} ended in about {:.2} seconds{}",
            r.label,
            r.runtime.as_secs_f64(),
            if failed { " with error" } else { "" }
        );
        if o.workload == Workload::Verify {
            println!(
                "\t Verification LBA range: start 0x{:x} length 0x{:x}",
                r.range.0, r.range.1
            );
        }
        println!("{}", line(&r.bdev, &row(r)));
        if let Some(e) = &r.error {
            println!("\t job did not run: {e}");
        }
        for m in &r.miscompare_msgs {
            println!("\t {m}");
        }
        if r.miscompares > 0 {
            println!("\t miscompares: {}", r.miscompares);
        }
        ios += r.ios;
        bytes += r.bytes;
        fails += r.fails;
        sum += r.lat_sum_ns;
        if r.ios > 0 {
            min = min.min(r.lat_min_ns);
            max = max.max(r.lat_max_ns);
        }
    }
    println!(" {}", "=".repeat(114));
    let total = JobResult {
        runtime: elapsed,
        ios,
        bytes,
        fails,
        lat_sum_ns: sum,
        lat_min_ns: if min == u64::MAX { 0 } else { min },
        lat_max_ns: max,
        ..JobResult::default()
    };
    let t = line("Total", &row(&total));
    println!(" {:<28}{}", "Total", &t[t.find(':').unwrap_or(0)..]);
    bad
}
