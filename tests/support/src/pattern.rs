//! Deterministic payloads.
//!
//! Large bodies are checked by length and SHA-256 rather than byte by byte:
//! the origin's `/bytes/N` streams [`pattern`]`(N)` and `/echo` reports the
//! hash of what arrived, so a test compares two short strings.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

/// The byte at offset `i` of every pattern payload.
///
/// 251 is prime, so the sequence does not line up with any power-of-two
/// buffer size and a dropped or repeated chunk changes the hash.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// The first `len` bytes of the pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern_byte).collect()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            write!(out, "{b:02x}").expect("writing to a String cannot fail");
            out
        })
}

/// A temp file holding `len` pattern bytes, for curl to upload.
///
/// The file is deleted when this value is dropped.
pub struct PatternFile {
    file: NamedTempFile,
    len: usize,
    sha256: String,
}

impl PatternFile {
    /// Writes a new file of `len` pattern bytes.
    pub fn new(len: usize) -> Self {
        let data = pattern(len);
        let mut file = tempfile::Builder::new()
            .prefix("gangway-upload-")
            .tempfile()
            .expect("create upload temp file");
        file.write_all(&data).expect("write upload temp file");
        file.flush().expect("flush upload temp file");
        PatternFile {
            file,
            len,
            sha256: sha256_hex(&data),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lowercase hex SHA-256 of its contents.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_wraps_at_251() {
        let p = pattern(600);
        assert_eq!(p[0], 0);
        assert_eq!(p[250], 250);
        assert_eq!(p[251], 0);
        assert_eq!(p[599], (599 % 251) as u8);
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pattern_file_matches_pattern() {
        let file = PatternFile::new(1000);
        let data = std::fs::read(file.path()).unwrap();
        assert_eq!(data, pattern(1000));
        assert_eq!(file.sha256(), sha256_hex(&data));
    }
}
