//! Log-linear latency histogram (like SPDK's `spdk_histogram_data`): 16 linear buckets per
//! power of two, so a bucket's end is within 1/16 (6.25%) above any value in it.

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

/// Latency histogram over nanoseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; (64 - SUB_BITS as usize + 1) * SUB as usize],
            count: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS + 1;
    (((shift as u64) << SUB_BITS) + ((v >> shift) & (SUB - 1))) as usize
}

/// Largest value (exclusive end) of bucket `i`.
fn bucket_end(i: usize) -> u64 {
    let i = i as u64;
    // Index = shift * SUB + (v >> shift); for shift > 0, v >> shift is in SUB/2..SUB.
    ((i & (SUB - 1)) + 1) << (i >> SUB_BITS)
}

impl Histogram {
    /// Record one value.
    pub fn record(&mut self, ns: u64) {
        if let Some(b) = self.buckets.get_mut(index(ns)) {
            *b += 1;
            self.count += 1;
        }
    }

    /// For each cutoff fraction (ascending), the end of the first bucket at which the
    /// cumulative share reaches it, in ns (SPDK perf's "Summary latency data").
    pub fn percentiles(&self, cutoffs: &[f64]) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        if self.count == 0 {
            return out;
        }
        let mut so_far = 0u64;
        let mut c = cutoffs.iter().peekable();
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            so_far += n;
            let pct = so_far as f64 / self.count as f64;
            while let Some(&&cut) = c.peek() {
                if pct >= cut {
                    out.push((cut, bucket_end(i)));
                    c.next();
                } else {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_of_value_ends_at_or_after_it_within_three_percent() {
        for v in [
            0u64,
            1,
            31,
            32,
            33,
            63,
            64,
            100,
            1000,
            12_345,
            1 << 40,
            u64::MAX >> 1,
        ] {
            let end = bucket_end(index(v));
            assert!(end > v, "{v} -> {end}");
            assert!(end - v <= v / 16 + 1, "{v} -> {end}");
        }
    }

    #[test]
    fn percentiles_of_uniform_values() {
        let mut h = Histogram::default();
        for v in 1..=100u64 {
            h.record(v * 1000);
        }
        let p = h.percentiles(&[0.5, 0.99]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, 0.5);
        assert!((50_000..=51_600).contains(&p[0].1), "{:?}", p);
        assert!((99_000..=102_400).contains(&p[1].1), "{:?}", p);
    }
}
