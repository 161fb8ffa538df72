//! Squid's access log in its native `squid` format, one [`AccessEntry`] per
//! line:
//!
//! ```text
//! 1795621712.602  3 127.0.0.1 TCP_MISS/200 732 GET http://127.0.0.1:39200/ alice HIER_DIRECT/127.0.0.1 text/html
//! time         elapsed client  result/status bytes method URL        user  hierarchy/peer       type
//! ```
//!
//! The user column is `-` when the request carried no credentials and the
//! user name when it carried some, accepted or not: so a 407 line with a user
//! is one rejected attempt with that user's credentials.

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// Squid's result code, e.g. `TCP_MISS`, `TCP_DENIED`, `TCP_TUNNEL`.
    pub result: String,
    /// The HTTP status Squid sent to its client (the bridge).
    pub status: u16,
    /// The request method, e.g. `GET` or `CONNECT`.
    pub method: String,
    /// The URL, or `host:port` for CONNECT.
    pub url: String,
    /// The user whose credentials came with the request, if any.
    pub user: Option<String>,
    /// The whole line, for failure messages.
    pub line: String,
}

impl AccessEntry {
    /// Parses one line; `None` for a line that is not in `squid` format.
    pub fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let (result, status) = fields[3].split_once('/')?;
        Some(AccessEntry {
            result: result.to_owned(),
            status: status.parse().ok()?,
            method: fields[5].to_owned(),
            url: fields[6].to_owned(),
            user: (fields[7] != "-").then(|| fields[7].to_owned()),
            line: line.to_owned(),
        })
    }

    /// Whether this is a 407 that answered credentials of `user`.
    pub fn is_rejected_credentials_of(&self, user: &str) -> bool {
        self.status == 407 && self.user.as_deref() == Some(user)
    }
}

/// Parses a whole log, skipping lines that are not entries.
pub fn parse_log(text: &str) -> Vec<AccessEntry> {
    text.lines().filter_map(AccessEntry::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_authenticated_miss() {
        let e = AccessEntry::parse(
            "1795621712.602      3 127.0.0.1 TCP_MISS/200 732 GET http://127.0.0.1:39200/ alice HIER_DIRECT/127.0.0.1 text/html",
        )
        .unwrap();
        assert_eq!(e.result, "TCP_MISS");
        assert_eq!(e.status, 200);
        assert_eq!(e.method, "GET");
        assert_eq!(e.url, "http://127.0.0.1:39200/");
        assert_eq!(e.user.as_deref(), Some("alice"));
    }

    #[test]
    fn parses_an_anonymous_407_and_a_tunnel() {
        let log = "1795621703.623      1 127.0.0.1 TCP_DENIED/407 3534 GET http://127.0.0.1:39200/ - HIER_NONE/- text/html\n\
                   1795621712.653      4 127.0.0.1 TCP_TUNNEL/200 633 CONNECT 127.0.0.1:39200 bob HIER_DIRECT/127.0.0.1 -\n\
                   garbage\n";
        let entries = parse_log(log);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].user, None);
        assert!(!entries[0].is_rejected_credentials_of("alice"));
        assert_eq!(entries[1].method, "CONNECT");
        assert_eq!(entries[1].url, "127.0.0.1:39200");
    }
}
