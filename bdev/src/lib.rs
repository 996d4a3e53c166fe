//! Block device layer (SPDK `lib/bdev`): consumer API and the `module` provider API.
#![forbid(unsafe_code)]
