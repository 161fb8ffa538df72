//! Raw bytes as an NTLM Type 2, base64-encoded into the challenge: `negotiate`, then `authenticate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gangway_engine::fuzzing::ntlm_type2(data));
