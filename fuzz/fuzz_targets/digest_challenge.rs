//! Digest challenges, one header value per line: `DigestSession::new`, then `authorization`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gangway_engine::fuzzing::digest_challenge(data));
