//! SPDK JSON config file parsing (`app::config::ConfigFile::parse`) on arbitrary bytes.
//!
//! Checks: no panic; a refusal names the file; the result of an accepted file does not change
//! when its JSON is re-serialized (key order, whitespace, number spelling do not matter).
#![no_main]

use std::path::Path;

use app::config::ConfigFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/config.json");
    match ConfigFile::parse(path, data) {
        Ok(cfg) => {
            assert_eq!(cfg.path, path);
            // Same document, re-serialized: same result.
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
                && let Ok(text) = serde_json::to_vec(&v)
            {
                match ConfigFile::parse(path, &text) {
                    Ok(again) => assert_eq!(again, cfg, "re-serialized config parses differently"),
                    Err(e) => panic!("re-serialized config refused: {e}"),
                }
            }
        }
        Err(e) => {
            assert_eq!(e.path, path);
            assert!(e.to_string().starts_with("config file /fuzz/config.json"));
        }
    }
});
