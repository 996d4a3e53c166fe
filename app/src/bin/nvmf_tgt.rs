//! `nvmf_tgt`: the NVMe-oF target application.
fn main() {}
