//! Helpers shared by the fuzz targets: a cursor over the fuzzer's bytes and a splitter that
//! cuts a byte stream into chunks of fuzzer-chosen sizes (as a socket would deliver it).

/// Reads values from the fuzzer's input; past the end every read yields zeroes / empty slices,
/// so a target never has to bail out on short input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// Exactly `N` bytes, zero padded at the end of the input.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let b = self.bytes(N);
        a[..b.len()].copy_from_slice(b);
        a
    }
}

/// Cuts a stream into chunks whose sizes come from a xorshift generator seeded by the fuzzer:
/// sizes 0..=max (a zero-length chunk checks that empty input is harmless).
#[derive(Debug, Clone)]
pub struct Splitter {
    state: u64,
    max: usize,
}

impl Splitter {
    /// A splitter; `seed` 0 yields the whole stream as one chunk.
    pub fn new(seed: u32, max: usize) -> Self {
        Splitter {
            state: u64::from(seed),
            max: max.max(1),
        }
    }

    fn next_len(&mut self) -> usize {
        if self.state == 0 {
            return usize::MAX;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        (x % (self.max as u64 + 1)) as usize
    }

    /// Splits `data` into consecutive chunks that together are exactly `data`.
    pub fn split<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.next_len().min(rest.len());
            let (a, b) = rest.split_at(n);
            out.push(a);
            rest = b;
            if out.len() > 4 * data.len() + 16 {
                // Too many empty chunks in a row: deliver the rest at once.
                out.push(rest);
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_chunks_concatenate_to_the_input() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in [0u32, 1, 7, 0xdead_beef] {
            let chunks = Splitter::new(seed, 9).split(&data);
            assert_eq!(chunks.concat(), data, "seed {seed}");
        }
        assert_eq!(Splitter::new(0, 9).split(&data).len(), 1);
    }

    #[test]
    fn input_pads_with_zeroes_past_the_end() {
        let mut i = Input::new(&[1, 2, 3]);
        assert_eq!(i.u16(), 0x0201);
        assert_eq!(i.u32(), 3);
        assert_eq!(i.array::<2>(), [0, 0]);
        assert!(i.is_empty());
    }
}
