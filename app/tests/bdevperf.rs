//! `bdevperf` as a user runs it: verify on two cores over two malloc bdevs, randread, bad options.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

const CONFIG: &str = r#"{"subsystems":[{"subsystem":"bdev","config":[
{"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":16384,"block_size":512}},
{"method":"bdev_malloc_create","params":{"name":"Malloc1","num_blocks":16384,"block_size":512}}]}]}"#;

fn run(args: &[&str]) -> (Output, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bdevs.json");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bdevperf"))
        .arg("-c")
        .arg(&cfg)
        .args(args)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, so, se)
}

/// IOPS column of the report rows of `bdev`.
fn iops_of(stdout: &str, bdev: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("{bdev} ")))
        .map(|l| {
            let cols: Vec<&str> = l.split(':').nth(1).unwrap().split_whitespace().collect();
            cols[1].parse::<f64>().unwrap()
        })
        .collect()
}

#[test]
fn verify_on_two_cores_reports_both_bdevs_without_miscompare() {
    let (out, so, se) = run(&[
        "-q", "8", "-o", "4096", "-w", "verify", "-t", "2", "-m", "0x3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    for b in ["Malloc0", "Malloc1"] {
        let iops = iops_of(&so, b);
        assert_eq!(iops.len(), 2, "one job per core for {b}: {so}");
        assert!(iops.iter().all(|&x| x > 0.0), "{so}");
    }
    assert!(
        !so.contains("miscompare") && !se.contains("miscompare"),
        "{so}\n{se}"
    );
    assert_eq!(so.matches("Verification LBA range").count(), 4, "{so}");
    assert!(so.contains(" Total "), "{so}");
    assert!(so.contains("IOPS,"), "progress line missing: {so}");
}

#[test]
fn randread_on_one_core_reports_iops() {
    let (out, so, se) = run(&["-q", "4", "-o", "4096", "-w", "randread", "-t", "1"]);
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    assert_eq!(iops_of(&so, "Malloc0").len(), 1, "{so}");
    assert!(iops_of(&so, "Malloc0")[0] > 0.0, "{so}");
    assert!(iops_of(&so, "Malloc1")[0] > 0.0, "{so}");
    assert!(!so.contains("Verification LBA range"), "{so}");
}

#[test]
fn bad_options_exit_non_zero_with_a_clear_message() {
    let (out, _, se) = run(&["-q", "1", "-o", "4096", "-w", "bogus", "-t", "1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(se.contains("invalid value 'bogus'"), "{se}");
    let (out, _, se) = run(&["-q", "0", "-o", "4096", "-w", "verify", "-t", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("-q (queue depth) must be at least 1"), "{se}");
    let (out, _, se) = run(&["-q", "1", "-o", "1000", "-w", "read", "-t", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("multiple of the block size 512"), "{se}");
    let (out, _, se) = run(&["-q", "1", "-o", "4096", "-w", "randrw", "-t", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("-M (read percentage) is required"), "{se}");
}
