//! Client bytes into a connection configured as the bridge's (hyper http1, same limits and timer).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gangway_engine::fuzzing::request_head(data));
