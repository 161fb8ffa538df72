//! Replays the fuzz corpus on stable Rust, in seconds: every seed in
//! `fuzz/corpus/<target>/` and every past crash in
//! `fuzz/regressions/<target>/` goes through the same function the
//! cargo-fuzz target calls (`gangway_engine::fuzzing`). Long fuzzing runs
//! are manual: `scripts/fuzz`.

use std::path::{Path, PathBuf};

use gangway_engine::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files under `fuzz/<kind>/<target>/`, per target directory.
fn inputs(kind: &str) -> Vec<(String, Vec<PathBuf>)> {
    let root = fuzz_dir().join(kind);
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<PathBuf>)> = dirs
        .map(|d| d.expect("read a fuzz directory entry").path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 target name")
                .to_owned();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("read a target's directory")
                .map(|f| f.expect("read a file entry").path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            (name, files)
        })
        .collect();
    out.sort();
    out
}

/// Runs every input, and names each one that panicked.
fn replay(kind: &str) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, files) in inputs(kind) {
        let target = fuzzing::target(&name)
            .unwrap_or_else(|| panic!("fuzz/{kind}/{name} names no target in fuzzing::TARGETS"));
        for file in files {
            let data = std::fs::read(&file).expect("read an input");
            count += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
    count
}

#[test]
fn every_target_has_seeds_and_every_seed_passes() {
    let corpus = inputs("corpus");
    for (name, _) in fuzzing::TARGETS {
        assert!(
            corpus
                .iter()
                .any(|(dir, files)| dir == name && !files.is_empty()),
            "fuzz/corpus/{name}/ has no seeds"
        );
    }
    assert!(replay("corpus") >= fuzzing::TARGETS.len());
}

#[test]
fn every_past_crash_passes() {
    replay("regressions");
}

/// Past the 64 KiB head limit, which a fuzzer's small inputs do not reach,
/// or past 100 fields: the bridge answers 431 and closes.
#[test]
fn an_oversized_head_gets_431() {
    let mut head = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n".to_vec();
    while head.len() <= 70 * 1024 {
        head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let output = fuzzing::serve_bytes(&head);
    assert_eq!(fuzzing::parse_responses(&output), Ok(vec![431]));

    // Small, but more fields than hyper's default limit of 100.
    let mut head = b"GET http://example.com/ HTTP/1.1\r\n".to_vec();
    for i in 0..101 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let output = fuzzing::serve_bytes(&head);
    assert_eq!(fuzzing::parse_responses(&output), Ok(vec![431]));
}

/// The harness reads the bridge's answers as a client would: pipelined
/// requests each get one (HEAD's without a body), and a CONNECT's 200 ends
/// the HTTP part.
#[test]
fn the_harness_sees_pipelined_answers() {
    let input = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n\
                  HEAD http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n\
                  POST http://a.example/ HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                  CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n\x16\x03\x01";
    let output = fuzzing::serve_bytes(input);
    assert_eq!(
        fuzzing::parse_responses(&output),
        Ok(vec![200, 200, 200, 200])
    );
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("x-body-bytes: 0\r\n"), "{text}");
    assert!(text.contains("x-body-bytes: 3\r\n"), "{text}");
    assert_eq!(
        fuzzing::parse_responses(b"GARBAGE\r\n\r\n"),
        Err("bad status line `GARBAGE`".into())
    );
    let bad = fuzzing::serve_bytes(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(fuzzing::parse_responses(&bad), Ok(vec![400]));
}
