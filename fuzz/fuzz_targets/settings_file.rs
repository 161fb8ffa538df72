//! A settings file: `SettingsFile::from_toml`, then `validate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gangway_engine::fuzzing::settings_file(data));
