//! The rspdk application framework (SPDK `lib/event`, `lib/init`) and the `nvmf_tgt` binary.
