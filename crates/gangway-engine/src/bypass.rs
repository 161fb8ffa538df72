//! The bypass list: hosts that are reached directly instead of through the
//! upstream. Entries are host globs (`*.corp.example`), domains
//! (`corp.example` matches it and every subdomain), IP addresses, CIDR
//! blocks, and `<local>` for plain host names without a dot (the Windows
//! convention).

use std::net::IpAddr;

use crate::net::Cidr;
use crate::settings::SettingsError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Local,
    Net(Cidr),
    /// Lower-case, without a leading dot.
    Domain(String),
    /// Lower-case glob with `*` and `?`.
    Glob(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BypassList {
    entries: Vec<Entry>,
    /// The entries as written, for the PAC file, the status page and the
    /// system proxy's ignore-hosts.
    source: Vec<String>,
}

impl BypassList {
    /// Parses entries; each may itself be a comma- or space-separated list,
    /// as the CLI's `--bypass a,b` and GNOME's ignore-hosts give them.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, SettingsError> {
        let mut list = BypassList::default();
        for raw in items
            .into_iter()
            .flat_map(|s| s.split([',', ' ', ';']))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            list.entries.push(parse_entry(raw)?);
            list.source.push(raw.to_owned());
        }
        Ok(list)
    }

    /// The entries as written.
    pub fn entries(&self) -> &[String] {
        &self.source
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether requests to `host` (a name or an IP literal, brackets allowed)
    /// bypass the upstream.
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| match entry {
            Entry::Local => ip.is_none() && !host.contains('.'),
            Entry::Net(net) => ip.is_some_and(|ip| net.contains(ip)),
            Entry::Domain(d) => {
                host == *d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
            Entry::Glob(g) => glob_match(g.as_bytes(), host.as_bytes()),
        })
    }

    /// The body of a PAC `FindProxyForURL` that returns DIRECT for the
    /// bypass list, then `proxy`.
    pub fn pac_script(&self, proxy: &str) -> String {
        let mut conds = Vec::new();
        for entry in &self.entries {
            match entry {
                Entry::Local => conds.push("isPlainHostName(host)".to_owned()),
                Entry::Net(net) => match net.addr() {
                    IpAddr::V4(a) => {
                        let mask = u32::MAX
                            .checked_shl(32 - u32::from(net.prefix()))
                            .unwrap_or(0);
                        conds.push(format!(
                            "isInNet(host, \"{a}\", \"{}\")",
                            std::net::Ipv4Addr::from(mask)
                        ));
                    }
                    // PAC has no portable IPv6 matching: match the literal.
                    IpAddr::V6(a) => conds.push(format!("host == \"{a}\"")),
                },
                Entry::Domain(d) => {
                    conds.push(format!("host == \"{d}\" || dnsDomainIs(host, \".{d}\")"))
                }
                Entry::Glob(g) => conds.push(format!("shExpMatch(host, \"{g}\")")),
            }
        }
        let mut pac = String::from("function FindProxyForURL(url, host) {\n");
        pac.push_str("  host = host.toLowerCase();\n");
        for cond in conds {
            pac.push_str(&format!("  if ({cond}) return \"DIRECT\";\n"));
        }
        pac.push_str(&format!("  return \"PROXY {proxy}\";\n}}\n"));
        pac
    }
}

fn parse_entry(raw: &str) -> Result<Entry, SettingsError> {
    let bad = || SettingsError::Bypass(raw.to_owned());
    if raw.eq_ignore_ascii_case("<local>") {
        return Ok(Entry::Local);
    }
    if let Ok(net) = raw.parse::<Cidr>() {
        return Ok(Entry::Net(net));
    }
    if raw.contains('/') {
        return Err(bad());
    }
    let lower = raw.to_ascii_lowercase();
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?' | ':');
    if !lower.chars().all(allowed) {
        return Err(bad());
    }
    if lower.contains(['*', '?']) {
        return Ok(Entry::Glob(lower));
    }
    let domain = lower.trim_start_matches('.').trim_end_matches('.');
    if domain.is_empty() {
        return Err(bad());
    }
    Ok(Entry::Domain(domain.to_owned()))
}

/// `*` matches any run (dots included, as in PAC's shExpMatch), `?` one
/// byte. Iterative with one backtrack point: linear in practice, never
/// exponential.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> BypassList {
        BypassList::parse([s]).expect("valid list")
    }

    #[test]
    fn entry_kinds() {
        let l = list("<local>, corp.example, *.internal, 10.0.0.0/8, ::1, 192.168.1.7");
        assert!(l.matches_host("intranet"));
        assert!(l.matches_host("corp.example"));
        assert!(l.matches_host("wiki.CORP.example."));
        assert!(!l.matches_host("notcorp.example"));
        assert!(l.matches_host("a.b.internal"));
        assert!(l.matches_host("10.9.8.7"));
        assert!(l.matches_host("[::1]"));
        assert!(l.matches_host("192.168.1.7"));
        assert!(!l.matches_host("192.168.1.8"));
        assert!(!l.matches_host("example.com"));
        assert!(!l.matches_host("8.8.8.8"));
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(glob_match(b"10.1.*", b"10.1.2.3"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(glob_match(b"*a*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob_match(b"*a*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn invalid_entries_are_refused() {
        for bad in ["10.0.0.0/40", "a b/c", "exa mple/", "\"quote\"", "."] {
            assert!(BypassList::parse([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn pac_sends_the_list_direct() {
        let pac = list("<local>,corp.example,10.0.0.0/8,*.lan").pac_script("127.0.0.1:3128");
        assert!(pac.contains("isPlainHostName(host)"));
        assert!(pac.contains("dnsDomainIs(host, \".corp.example\")"));
        assert!(pac.contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")"));
        assert!(pac.contains("shExpMatch(host, \"*.lan\")"));
        assert!(pac.contains("return \"PROXY 127.0.0.1:3128\""));
    }
}
