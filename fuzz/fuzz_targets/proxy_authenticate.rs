//! `Proxy-Authenticate` values, one per line: `parse_challenges`, then `strongest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gangway_engine::fuzzing::proxy_authenticate(data));
