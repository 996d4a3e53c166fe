#![allow(clippy::unwrap_used)]

use super::*;
use nvmf::request::IoVec;
use std::io;

/// Takes at most `chunk` bytes per call (across slices when `vectored`, else only from the
/// first non-empty slice, as `Write`'s default `write_vectored`), and says WouldBlock on every
/// other call.
struct Trickle {
    out: Vec<u8>,
    chunk: usize,
    vectored: bool,
    calls: usize,
}

impl Trickle {
    fn new(chunk: usize, vectored: bool) -> Trickle {
        Trickle {
            out: Vec::new(),
            chunk,
            vectored,
            calls: 0,
        }
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(2) {
            return Err(ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            if b.is_empty() {
                continue;
            }
            let take = b.len().min(self.chunk - n);
            self.out.extend_from_slice(&b[..take]);
            n += take;
            if n == self.chunk || !self.vectored {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Three segments with windows inside bigger storages: 0..=4 at offset 2, 5..=9, 10..=12 at 1.
fn three_segments() -> DataBuf {
    let mut a = vec![0xee; 9];
    a[2..7].copy_from_slice(&[0, 1, 2, 3, 4]);
    let mut c = vec![0xee; 6];
    c[1..4].copy_from_slice(&[10, 11, 12]);
    let mut v = DataBuf::new();
    v.push(IoVec::new(a, 2, 5).unwrap());
    v.push(IoVec::from_vec(vec![5, 6, 7, 8, 9]));
    v.push(IoVec::new(c, 1, 3).unwrap());
    v
}

/// header "H1", bytes 3..11 of the segments, "D1", then "H2" + a second buffer + "T".
fn sample_queue() -> (OutQueue, Vec<u8>) {
    let mut q = OutQueue::new();
    {
        let mut p = q.push_data(three_segments());
        p.bytes(b"H1");
        assert_eq!(p.range(3, 8, None), 8);
        p.bytes(b"D1");
    }
    {
        let mut p = q.push_data(DataBuf::from_vec(vec![0x55; 300]));
        p.bytes(b"H2");
        assert_eq!(p.range(0, 300, None), 300);
    }
    q.push_bytes(b"T");
    let mut want = b"H1".to_vec();
    want.extend_from_slice(&[3, 4, 5, 6, 7, 8, 9, 10]);
    want.extend_from_slice(b"D1H2");
    want.extend_from_slice(&[0x55; 300]);
    want.push(b'T');
    (q, want)
}

#[test]
fn queue_holds_headers_and_buffer_ranges_in_order() {
    let (q, want) = sample_queue();
    assert_eq!(q.len(), 2 + 8 + 2 + 2 + 300 + 1);
    assert_eq!(q.to_vec(), want);
    assert_eq!(q.buffers_held(), 2);
}

#[test]
fn partial_writes_of_any_size_send_the_exact_stream() {
    for vectored in [true, false] {
        for chunk in [1, 2, 3, 5, 7, 12, 13, 64, 299, 4096] {
            let (mut q, want) = sample_queue();
            let mut w = Trickle::new(chunk, vectored);
            let mut rounds = 0;
            while !q.is_empty() {
                let before = q.len();
                let n = q.write_to(&mut w).unwrap();
                assert_eq!(q.len(), before - n);
                assert_eq!(q.to_vec(), want[w.out.len()..], "chunk {chunk}");
                rounds += 1;
                assert!(rounds < 10_000, "no progress with chunk {chunk}");
            }
            assert_eq!(w.out, want, "chunk {chunk} vectored {vectored}");
            assert_eq!(q.buffers_held(), 0);
        }
    }
}

#[test]
fn a_buffer_is_released_as_soon_as_its_last_range_is_written() {
    let (mut q, _) = sample_queue();
    // "H1" + 8 data bytes: the first buffer's ranges are written but "D1" is not.
    let mut w = Trickle::new(9, true);
    q.write_to(&mut w).unwrap();
    assert_eq!(w.out.len(), 9);
    assert_eq!(q.buffers_held(), 2);
    let mut w = Trickle::new(1, true);
    q.write_to(&mut w).unwrap();
    assert_eq!(q.buffers_held(), 1, "released after its last data byte");
    assert_eq!(q.len(), 315 - 10);
    let mut w = Trickle::new(1000, true);
    assert_eq!(q.write_to(&mut w).unwrap(), 305);
    assert_eq!(q.buffers_held(), 0);
    assert!(q.is_empty());
}

#[test]
fn data_digest_over_segments_equals_digest_of_the_bytes() {
    let mut q = OutQueue::new();
    let mut d = DigestState::new();
    {
        let mut p = q.push_data(three_segments());
        assert_eq!(p.range(2, 10, Some(&mut d)), 10);
    }
    let bytes: Vec<u8> = (2..12).collect();
    assert_eq!(q.to_vec(), bytes);
    assert_eq!(d.value(), crc32c::crc32c(&bytes));
    // A range beyond the buffer queues what there is.
    let mut q = OutQueue::new();
    let mut p = q.push_data(three_segments());
    assert_eq!(p.range(10, 50, None), 3);
    drop(p);
    assert_eq!(q.to_vec(), vec![10, 11, 12]);
}

#[test]
fn a_buffer_without_ranges_is_dropped_at_once() {
    let mut q = OutQueue::new();
    {
        let mut p = q.push_data(three_segments());
        p.bytes(b"xy");
    }
    assert_eq!(q.buffers_held(), 0);
    assert_eq!(q.to_vec(), b"xy");
}

#[test]
fn prepended_bytes_go_before_a_partly_written_queue() {
    let (mut q, want) = sample_queue();
    let mut w = Trickle::new(5, true);
    assert_eq!(q.write_to(&mut w).unwrap(), 5);
    q.prepend_bytes(b"PRE");
    let mut rest = b"PRE".to_vec();
    rest.extend_from_slice(&want[5..]);
    assert_eq!(q.len(), rest.len());
    assert_eq!(q.to_vec(), rest);
    let mut w = Trickle::new(7, false);
    while !q.is_empty() {
        q.write_to(&mut w).unwrap();
    }
    assert_eq!(w.out, rest);
    assert_eq!(q.buffers_held(), 0);
}

#[test]
fn writer_errors_are_reported_and_interrupts_retried() {
    struct Flaky(usize);
    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += 1;
            match self.0 {
                1 => Err(ErrorKind::Interrupted.into()),
                2 => Ok(buf.len().min(4)),
                3 => Ok(0),
                _ => Err(ErrorKind::BrokenPipe.into()),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (mut q, _) = sample_queue();
    let mut w = Flaky(0);
    let e = q.write_to(&mut w).unwrap_err();
    assert!(matches!(e, TcpError::Io(ref e) if e.kind() == ErrorKind::WriteZero));
    assert_eq!(
        q.len(),
        315 - 2,
        "the default write_vectored sends the first slice, \"H1\""
    );
    let e = q.write_to(&mut w).unwrap_err();
    assert!(matches!(e, TcpError::Io(ref e) if e.kind() == ErrorKind::BrokenPipe));
    assert_eq!(
        q.len(),
        315 - 2,
        "the default write_vectored sends the first slice, \"H1\""
    );
}

#[test]
fn many_small_pdus_merge_and_compact() {
    let mut q = OutQueue::new();
    let mut want = Vec::new();
    let mut w = Trickle::new(3999, true);
    // More than COMPACT_AT inline bytes while the queue never empties.
    for i in 0..400u32 {
        let b = vec![i as u8; 4000];
        q.push_bytes(&b);
        want.extend_from_slice(&b);
        let _ = q.write_to(&mut w).unwrap();
        assert!(!q.is_empty() || w.out.len() == want.len());
    }
    while !q.is_empty() {
        q.write_to(&mut w).unwrap();
    }
    assert_eq!(w.out, want);
}
