//! A write larger than one iobuf large buffer (max_io_size 1 MiB in 16 units of 64 KiB)
//! lands, through several pool buffers, intact on the namespace. Alone in its own test binary:
//! it uses the process-wide iobuf pool.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::ConnectCmd;
use nvmf::TransportOpts;

#[test]
fn write_spanning_several_pool_buffers_reads_back_intact() {
    let env = setup_with(
        "LargeWrite0",
        TransportOpts {
            max_io_size: 1 << 20,
            io_unit_size: 65536,
            ..TransportOpts::default()
        },
    );
    let (_admin, cntlid) = admin(&env, false, false);
    let mut io = env.connect();
    env.ic(&mut io, false, true);
    let (c, _) = env.cmd(
        &mut io,
        ConnectCmd::new(1, 1, 127, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    let pool = env::iobuf::iobuf_initialize().unwrap();
    let large = pool.opts().large_bufsize as usize;
    // 512 KiB (the whole 1024-block namespace): 4 large buffers of 135168 bytes.
    let len: usize = 512 * 1024;
    assert_eq!(len.div_ceil(large), 4);
    let pat: Vec<u8> = (0..len as u32).map(|i| (i % 249) as u8).collect();
    let (c, _) = env.cmd(&mut io, rw(0x01, 5, 0, 1023), Some(&pat), len as u32);
    ok(&c);
    let (c, data) = env.cmd(&mut io, rw(0x02, 6, 0, 1023), None, len as u32);
    ok(&c);
    assert_eq!(data.len(), len);
    assert!(data == pat, "data read back differs from what was written");
}
