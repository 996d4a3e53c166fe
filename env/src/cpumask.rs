//! Core masks, as SPDK's `spdk_cpuset` (`lib/util/cpuset.c`).

use crate::EnvError;
use std::fmt;

/// The highest number of cores a mask can name (SPDK's `SPDK_CPUSET_SIZE`).
pub const MAX_CORES: u32 = 1024;
const WORDS: usize = (MAX_CORES / 64) as usize;

/// A set of core ids.
///
/// Parsed from SPDK's syntaxes ([`CpuMask::parse`]); displayed as a `0x`-prefixed hex mask
/// (`0x3`); [`CpuMask::to_spdk_string`] gives SPDK's unprefixed form (`3`) used in RPC results.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuMask {
    bits: [u64; WORDS],
}

impl CpuMask {
    /// An empty mask.
    pub fn new() -> CpuMask {
        CpuMask::default()
    }

    /// A mask with only `core`; `None` if `core >= MAX_CORES`.
    pub fn single(core: u32) -> Option<CpuMask> {
        let mut m = CpuMask::new();
        m.insert(core).then_some(m)
    }

    /// Parses SPDK's core mask syntaxes: a hex mask with or without `0x` (`0x3`, `3`, `ff`), or a
    /// list of cores and ranges in brackets (`[0-3,7]`, `[0,2]`). Refuses empty input, bad digits,
    /// reversed ranges and cores `>= MAX_CORES`. An empty result is accepted here and refused by
    /// [`CpuMask::validate`].
    pub fn parse(s: &str) -> Result<CpuMask, EnvError> {
        let bad = |reason| EnvError::InvalidCpuMask {
            mask: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty string"));
        }
        if let Some(list) = t.strip_prefix('[') {
            let list = list.strip_suffix(']').ok_or_else(|| bad("missing ']'"))?;
            return CpuMask::parse_list(list).ok_or_else(|| bad("bad core list"));
        }
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if hex.is_empty() {
            return Err(bad("no hex digits"));
        }
        let mut m = CpuMask::new();
        for (i, c) in hex.bytes().rev().enumerate() {
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| bad("not a hex digit"))?;
            for b in 0..4u32 {
                if d & (1 << b) != 0 {
                    let core = u32::try_from(i * 4)
                        .ok()
                        .and_then(|x| x.checked_add(b))
                        .ok_or_else(|| bad("core too large"))?;
                    if !m.insert(core) {
                        return Err(bad("core too large"));
                    }
                }
            }
        }
        Ok(m)
    }

    fn parse_list(list: &str) -> Option<CpuMask> {
        let mut m = CpuMask::new();
        for item in list.split(',') {
            let item = item.trim();
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
                None => {
                    let c = item.parse::<u32>().ok()?;
                    (c, c)
                }
            };
            if lo > hi || hi >= MAX_CORES {
                return None;
            }
            for c in lo..=hi {
                m.insert(c);
            }
        }
        Some(m)
    }

    /// Adds `core`; false if it is `>= MAX_CORES`.
    pub fn insert(&mut self, core: u32) -> bool {
        if core >= MAX_CORES {
            return false;
        }
        self.bits[(core / 64) as usize] |= 1u64 << (core % 64);
        true
    }

    /// Removes `core`.
    pub fn remove(&mut self, core: u32) {
        if core < MAX_CORES {
            self.bits[(core / 64) as usize] &= !(1u64 << (core % 64));
        }
    }

    /// True if `core` is in the mask.
    pub fn contains(&self, core: u32) -> bool {
        core < MAX_CORES && self.bits[(core / 64) as usize] & (1u64 << (core % 64)) != 0
    }

    /// Checks the mask against this machine: it must not be empty, and every core must be in
    /// this process's affinity set ([`CpuMask::all_available`]).
    pub fn validate(&self) -> Result<(), EnvError> {
        if self.is_empty() {
            return Err(EnvError::EmptyCpuMask);
        }
        let avail = CpuMask::all_available();
        match self.cores().find(|c| !avail.contains(*c)) {
            Some(c) => Err(EnvError::CoreNotAvailable(c)),
            None => Ok(()),
        }
    }

    /// The cores in ascending order.
    pub fn cores(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_CORES).filter(|c| self.contains(*c))
    }

    /// The lowest core.
    pub fn first(&self) -> Option<u32> {
        self.cores().next()
    }

    /// The number of cores.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True if no core is set.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The cores this process may run on (`sched_getaffinity`); if that call fails, the cores
    /// `0..available_parallelism`.
    pub fn all_available() -> CpuMask {
        // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        let mut m = CpuMask::new();
        if rc == 0 {
            let max = (std::mem::size_of::<libc::cpu_set_t>() * 8).min(MAX_CORES as usize);
            for c in 0..max {
                // SAFETY: `c` is below the set's bit size.
                if unsafe { libc::CPU_ISSET(c, &set) } {
                    m.insert(c as u32);
                }
            }
        } else {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            for c in 0..n.min(MAX_CORES as usize) {
                m.insert(c as u32);
            }
        }
        m
    }

    /// SPDK's textual form: lowercase hex without prefix (`spdk_cpuset_fmt`), e.g. `3`.
    pub fn to_spdk_string(&self) -> String {
        let mut s = String::new();
        let mut started = false;
        for w in self.bits.iter().rev() {
            if started {
                s.push_str(&format!("{w:016x}"));
            } else if *w != 0 {
                s.push_str(&format!("{w:x}"));
                started = true;
            }
        }
        if s.is_empty() {
            s.push('0');
        }
        s
    }
}

impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", self.to_spdk_string())
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuMask({self})")
    }
}

impl std::str::FromStr for CpuMask {
    type Err = EnvError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuMask::parse(s)
    }
}

impl FromIterator<u32> for CpuMask {
    /// Collects cores; ids `>= MAX_CORES` are ignored.
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut m = CpuMask::new();
        for c in iter {
            m.insert(c);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(s: &str) -> Vec<u32> {
        CpuMask::parse(s).unwrap().cores().collect()
    }

    #[test]
    fn parses_hex_with_and_without_prefix() {
        assert_eq!(cores("0x3"), vec![0, 1]);
        assert_eq!(cores("3"), vec![0, 1]);
        assert_eq!(cores("0xF0"), vec![4, 5, 6, 7]);
        assert_eq!(cores("10"), vec![4]);
    }

    #[test]
    fn parses_bracket_lists_and_ranges() {
        assert_eq!(cores("[0-3,7]"), vec![0, 1, 2, 3, 7]);
        assert_eq!(cores("[0,2]"), vec![0, 2]);
        assert_eq!(cores("[5]"), vec![5]);
    }

    #[test]
    fn refuses_malformed_masks() {
        for s in ["", "0x", "0xg", "[0-3", "[3-1]", "[a]", "[1024]", "zz"] {
            assert!(
                matches!(CpuMask::parse(s), Err(EnvError::InvalidCpuMask { .. })),
                "{s}"
            );
        }
        // 257 hex digits would name core 1024.
        let too_long = format!("1{}", "0".repeat(256));
        assert!(CpuMask::parse(&too_long).is_err());
    }

    #[test]
    fn displays_as_prefixed_hex_and_spdk_form() {
        let m = CpuMask::parse("[0,1]").unwrap();
        assert_eq!(m.to_string(), "0x3");
        assert_eq!(m.to_spdk_string(), "3");
        let m = CpuMask::parse("[64]").unwrap();
        assert_eq!(m.to_spdk_string(), "10000000000000000");
        assert_eq!(CpuMask::new().to_string(), "0x0");
    }

    #[test]
    fn first_len_and_empty() {
        let m = CpuMask::parse("0x6").unwrap();
        assert_eq!(m.first(), Some(1));
        assert_eq!(m.len(), 2);
        assert!(!m.is_empty());
        assert!(CpuMask::new().is_empty());
        assert_eq!(CpuMask::new().first(), None);
    }

    #[test]
    fn validate_refuses_empty_and_unavailable_cores() {
        assert!(matches!(
            CpuMask::new().validate(),
            Err(EnvError::EmptyCpuMask)
        ));
        let avail = CpuMask::all_available();
        assert!(!avail.is_empty());
        assert!(avail.validate().is_ok());
        let m = CpuMask::single(1023).unwrap();
        if !avail.contains(1023) {
            assert!(matches!(
                m.validate(),
                Err(EnvError::CoreNotAvailable(1023))
            ));
        }
    }
}
