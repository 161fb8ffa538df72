//! A bypass list on the first line, hosts on the others: `BypassList::parse`, `matches_host`, `pac_script`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gangway_engine::fuzzing::bypass_list(data));
