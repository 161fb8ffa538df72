//! `Proxy-Authenticate` parsing (RFC 7235 §2.1, §4.1; RFC 9110 §11) and the
//! choice of which offer to answer.
//!
//! The grammar, from RFC 9110 §11.3 and §11.7.1:
//!
//! ```text
//! Proxy-Authenticate = #challenge
//! challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param = token BWS "=" BWS ( token / quoted-string )
//! token68    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! Challenges and their auth-params share one comma-separated list, so a
//! comma either starts the next param of the same challenge (`name=`) or a
//! new challenge (a scheme name followed by a space, a comma or the end).
//! The parser reads bytes, never panics, and on anything it cannot read
//! skips to the next comma outside quotes: one broken piece costs that piece,
//! not the whole header. The input comes straight off the wire from a server
//! we do not control.

use std::fmt;

use crate::digest;

/// An authentication scheme named in a challenge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Basic,
    Digest,
    Ntlm,
    Negotiate,
    /// Any other scheme, as the server spelled it.
    Other(String),
}

impl Scheme {
    /// Scheme names are case-insensitive (RFC 9110 §11.1).
    fn from_name(name: &str) -> Self {
        const KNOWN: [(&str, Scheme); 4] = [
            ("Basic", Scheme::Basic),
            ("Digest", Scheme::Digest),
            ("NTLM", Scheme::Ntlm),
            ("Negotiate", Scheme::Negotiate),
        ];
        KNOWN
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map_or_else(|| Scheme::Other(name.to_owned()), |(_, scheme)| scheme)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Basic => f.write_str("Basic"),
            Scheme::Digest => f.write_str("Digest"),
            Scheme::Ntlm => f.write_str("NTLM"),
            Scheme::Negotiate => f.write_str("Negotiate"),
            Scheme::Other(s) => f.write_str(s),
        }
    }
}

/// One challenge: a scheme with either a token68 (NTLM's base64 blob) or
/// auth-params (name lower-cased, value unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    pub token: Option<String>,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of an auth-param, matched case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in one or more `Proxy-Authenticate` header values.
/// Malformed pieces are skipped, never panicked on.
///
/// Each header value is parsed on its own (RFC 9110 §5.3 lets a list be
/// split over several field lines, but a challenge never spans two), so an
/// unterminated quote in one value cannot swallow the next.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    for value in values {
        parse_value(value, &mut challenges);
    }
    challenges
}

/// Picks the offer to answer: Negotiate, then NTLM, then Digest, then Basic,
/// among the schemes `usable` accepts (it knows what the user configured and
/// what this build can do). Ties go to the server's first offer.
///
/// Between Digest offers (RFC 7616 §3.7 lets a server send one per
/// algorithm), SHA-256 beats MD5. A Digest offer this crate cannot answer
/// (an unknown algorithm, or qop=auth-int only) ranks below Basic: it is
/// still returned when nothing else is on offer, so that the user sees
/// [`DigestSession::new`](crate::digest::DigestSession::new)'s precise
/// reason instead of "no usable scheme". [`Scheme::Other`] is never picked:
/// there is nothing here that could answer it.
pub fn strongest(offers: &[Challenge], usable: impl Fn(&Scheme) -> bool) -> Option<&Challenge> {
    // `max_by_key` keeps the last of equal maxima; reversing first makes that
    // the server's first.
    offers
        .iter()
        .rev()
        .filter(|offer| usable(&offer.scheme))
        .filter_map(|offer| Strength::of(offer).map(|strength| (strength, offer)))
        .max_by_key(|(strength, _)| *strength)
        .map(|(_, offer)| offer)
}

/// How much an offer is worth answering, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    UnanswerableDigest,
    Basic,
    DigestMd5,
    DigestSha256,
    Ntlm,
    Negotiate,
}

impl Strength {
    fn of(offer: &Challenge) -> Option<Self> {
        Some(match offer.scheme {
            Scheme::Negotiate => Strength::Negotiate,
            Scheme::Ntlm => Strength::Ntlm,
            Scheme::Digest => match digest::offered_hash(offer) {
                Some(digest::HashFn::Sha256) => Strength::DigestSha256,
                Some(digest::HashFn::Md5) => Strength::DigestMd5,
                None => Strength::UnanswerableDigest,
            },
            Scheme::Basic => Strength::Basic,
            Scheme::Other(_) => return None,
        })
    }
}

/// Appends the challenges of one header value to `out`.
fn parse_value(value: &str, out: &mut Vec<Challenge>) {
    let mut cursor = Cursor::new(value);
    loop {
        // RFC 9110 §5.6.1: empty list elements are skipped.
        cursor.skip_separators();
        if cursor.at_end() {
            return;
        }
        let start = cursor.pos;
        match parse_challenge(&mut cursor) {
            Some(challenge) => out.push(challenge),
            None => {
                cursor.pos = start;
                cursor.skip_element();
            }
        }
    }
}

/// Reads one challenge starting at a scheme name. Leaves the cursor at a
/// comma, at the end, or at the start of the next challenge. `None` when the
/// element is not a challenge at all; a broken auth-param inside a challenge
/// is dropped and the rest of the challenge kept.
fn parse_challenge(cursor: &mut Cursor<'_>) -> Option<Challenge> {
    let scheme = cursor.token()?;
    let gap = cursor.skip_ows();
    let mut challenge = Challenge {
        scheme: Scheme::from_name(scheme),
        token: None,
        params: Vec::new(),
    };
    match cursor.peek() {
        // A bare scheme, such as `NTLM` or `Negotiate` on the first 407.
        None | Some(b',') => return Some(challenge),
        // `name=value` with no scheme before it: an orphan auth-param.
        Some(b'=') => return None,
        // RFC 9110 §11.3 wants whitespace after the scheme (`Basic"x"`).
        Some(_) if gap == 0 => return None,
        Some(_) => {}
    }
    if let Some(token) = cursor.token68() {
        challenge.token = Some(token.to_owned());
        return Some(challenge);
    }
    loop {
        let start = cursor.pos;
        match cursor.auth_param() {
            Some(param) => challenge.params.push(param),
            None => {
                cursor.pos = start;
                cursor.skip_element();
            }
        }
        if !cursor.next_is_param() {
            return Some(challenge);
        }
    }
}

/// A position in one header value. Every method only moves forward over
/// whole ASCII delimiters or whole quoted strings, and slices with `get`, so
/// no input can make it panic.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// Skips optional whitespace (RFC 9110 §5.6.3), returning how much.
    fn skip_ows(&mut self) -> usize {
        self.skip_while(|b| b == b' ' || b == b'\t')
    }

    /// Skips whitespace and any number of commas: empty list elements.
    fn skip_separators(&mut self) {
        self.skip_while(|b| b == b' ' || b == b'\t' || b == b',');
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A token (RFC 9110 §5.6.2), or `None` (having moved nothing) if there
    /// is none here.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.skip_while(is_tchar) == 0 {
            return None;
        }
        self.text.get(start..self.pos)
    }

    /// A token68 (RFC 9110 §11.2) filling the rest of the list element, or
    /// `None` having moved nothing. It must be followed by a comma or the end,
    /// which tells `abc==` apart from the auth-param `abc=def`.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.skip_while(is_token68_char) > 0 {
            self.skip_while(|b| b == b'=');
            let end = self.pos;
            self.skip_ows();
            if matches!(self.peek(), None | Some(b',')) {
                return self.text.get(start..end);
            }
        }
        self.pos = start;
        None
    }

    /// `token BWS "=" BWS ( token / quoted-string )`, which must fill the
    /// list element. The name is lower-cased, the value unquoted.
    fn auth_param(&mut self) -> Option<(String, String)> {
        let name = self.token()?.to_ascii_lowercase();
        self.skip_ows();
        if self.peek() != Some(b'=') {
            return None;
        }
        self.pos += 1;
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.quoted_string()?
        } else {
            self.token()?.to_owned()
        };
        self.skip_ows();
        matches!(self.peek(), None | Some(b',')).then_some((name, value))
    }

    /// A quoted-string (RFC 9110 §5.6.4) at the cursor, unescaped. `None`
    /// if it is unterminated or holds a control character.
    fn quoted_string(&mut self) -> Option<String> {
        let bytes = self.text.as_bytes();
        let mut value = Vec::new();
        let mut i = self.pos + 1;
        loop {
            match *bytes.get(i)? {
                b'"' => break,
                b'\\' => {
                    // quoted-pair: any non-control byte stands for itself.
                    let escaped = *bytes.get(i + 1)?;
                    if is_ctl(escaped) {
                        return None;
                    }
                    value.push(escaped);
                    i += 2;
                }
                b if is_ctl(b) => return None,
                b => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        self.pos = i + 1;
        // Only ASCII backslashes were removed from valid UTF-8, so this holds;
        // `ok()` keeps it a skip rather than a panic all the same.
        String::from_utf8(value).ok()
    }

    /// After an element: skips the separators and says whether what follows
    /// is another auth-param (`name=`), not the next challenge's scheme.
    fn next_is_param(&mut self) -> bool {
        self.skip_separators();
        let start = self.pos;
        let is_param = self.token().is_some() && {
            self.skip_ows();
            self.peek() == Some(b'=')
        };
        self.pos = start;
        is_param
    }

    /// Recovery: moves to the next comma outside a quoted string, or the end.
    fn skip_element(&mut self) {
        let bytes = self.text.as_bytes();
        let mut quoted = false;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b',' if !quoted => return,
                b'"' => quoted = !quoted,
                // Step over the escaped byte too; a comma is ASCII, so this
                // never stops inside a multi-byte character.
                b'\\' if quoted => self.pos += 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.pos = bytes.len();
    }
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of a token68 before its `=` padding (RFC 9110 §11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Control characters other than HTAB may not appear in a quoted-string.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Vec<Challenge> {
        parse_challenges([value])
    }

    fn challenge(scheme: Scheme, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme,
            token: None,
            params: params
                .iter()
                .map(|&(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    fn with_token(scheme: Scheme, token: &str) -> Challenge {
        Challenge {
            scheme,
            token: Some(token.to_owned()),
            params: Vec::new(),
        }
    }

    #[test]
    fn squid_digest() {
        let got = parse(r#"Digest realm="Squid proxy", nonce="AbC", qop="auth", stale=false"#);
        assert_eq!(
            got,
            [challenge(
                Scheme::Digest,
                &[
                    ("realm", "Squid proxy"),
                    ("nonce", "AbC"),
                    ("qop", "auth"),
                    ("stale", "false"),
                ]
            )]
        );
        assert!(!digest::is_stale(&got[0]));
    }

    #[test]
    fn several_header_values_as_squid_sends_them() {
        let got = parse_challenges([
            "Negotiate",
            "NTLM",
            r#"Digest realm="Squid proxy", nonce="n1", qop="auth", stale=TRUE"#,
            r#"Basic realm="Squid proxy""#,
        ]);
        let schemes: Vec<_> = got.iter().map(|c| c.scheme.clone()).collect();
        assert_eq!(
            schemes,
            [
                Scheme::Negotiate,
                Scheme::Ntlm,
                Scheme::Digest,
                Scheme::Basic
            ]
        );
        assert_eq!(got[0], challenge(Scheme::Negotiate, &[]));
        assert!(digest::is_stale(&got[2]));
        assert_eq!(got[3].param("realm"), Some("Squid proxy"));
    }

    #[test]
    fn several_challenges_in_one_value() {
        // RFC 9110 §11.6.1's example, with params after the first challenge.
        let got = parse(
            r#"Basic realm="simple", Newauth realm="apps", type=1, title="Login to \"apps\"""#,
        );
        assert_eq!(
            got,
            [
                challenge(Scheme::Basic, &[("realm", "simple")]),
                challenge(
                    Scheme::Other("Newauth".into()),
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#)
                    ]
                ),
            ]
        );
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        assert_eq!(
            parse(r#"Basic realm="x, y""#),
            [challenge(Scheme::Basic, &[("realm", "x, y")])]
        );
        // The RFC 7616 §3.9.1 qop list.
        let got = parse(r#"Digest realm="r", qop="auth, auth-int", nonce="n""#);
        assert_eq!(got[0].param("qop"), Some("auth, auth-int"));
        assert_eq!(got[0].param("nonce"), Some("n"));
    }

    #[test]
    fn ntlm_and_negotiate_tokens() {
        assert_eq!(
            parse("NTLM TlRMTVNTUAACAAAADAAMADAAAAA1goriASNFZ4mrze8AAAAAAAAAAGIAYgA8AAAA=="),
            [with_token(
                Scheme::Ntlm,
                "TlRMTVNTUAACAAAADAAMADAAAAA1goriASNFZ4mrze8AAAAAAAAAAGIAYgA8AAAA=="
            )]
        );
        assert_eq!(
            parse("negotiate YIIB+gYGKwYBBQUCoII/7jCCAeqg=  , Basic realm=x"),
            [
                with_token(Scheme::Negotiate, "YIIB+gYGKwYBBQUCoII/7jCCAeqg="),
                challenge(Scheme::Basic, &[("realm", "x")]),
            ]
        );
        assert_eq!(parse("NTLM"), [challenge(Scheme::Ntlm, &[])]);
        assert_eq!(parse("  ntlm  "), [challenge(Scheme::Ntlm, &[])]);
    }

    #[test]
    fn scheme_names_are_case_insensitive() {
        let schemes: Vec<_> = parse("BASIC, digest, Ntlm, NEGOTIATE, Bearer")
            .into_iter()
            .map(|c| c.scheme)
            .collect();
        assert_eq!(
            schemes,
            [
                Scheme::Basic,
                Scheme::Digest,
                Scheme::Ntlm,
                Scheme::Negotiate,
                Scheme::Other("Bearer".into())
            ]
        );
    }

    #[test]
    fn whitespace_around_equals_and_names_lower_cased() {
        assert_eq!(
            parse("Digest Realm = \"r\" ,\tNONCE\t=\tabc"),
            [challenge(
                Scheme::Digest,
                &[("realm", "r"), ("nonce", "abc")]
            )]
        );
    }

    #[test]
    fn escapes_in_quoted_strings() {
        let got = parse(r#"Basic realm="a\"b\\c\d""#);
        assert_eq!(got[0].param("realm"), Some(r#"a"b\cd"#));
        let got = parse("Basic realm=\"caf\u{e9} \\\u{e9}\"");
        assert_eq!(got[0].param("realm"), Some("caf\u{e9} \u{e9}"));
        assert_eq!(parse(r#"Basic realm="""#)[0].param("realm"), Some(""));
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        assert_eq!(
            parse(r#" , ,Basic realm="x",, , charset="UTF-8",,"#),
            [challenge(
                Scheme::Basic,
                &[("realm", "x"), ("charset", "UTF-8")]
            )]
        );
        assert!(parse("").is_empty());
        assert!(parse(" ,, ").is_empty());
    }

    #[test]
    fn broken_params_are_dropped_not_the_challenge() {
        assert_eq!(
            parse(r#"Digest realm="r", nonce=a/b, bad="x"y, qop="auth", Basic realm="b""#),
            [
                challenge(Scheme::Digest, &[("realm", "r"), ("qop", "auth")]),
                challenge(Scheme::Basic, &[("realm", "b")]),
            ]
        );
        // The first param broken: the others still count.
        assert_eq!(
            parse(r#"Digest @@@, realm="r""#),
            [challenge(Scheme::Digest, &[("realm", "r")])]
        );
    }

    #[test]
    fn garbage_is_skipped() {
        assert!(parse(r#""quoted", =x, @@@, realm="orphan", "#).is_empty());
        assert_eq!(
            parse(r#"Basic"x", Basic realm="ok""#),
            [challenge(Scheme::Basic, &[("realm", "ok")])]
        );
        // An unterminated quote takes the rest of its own value only.
        let got = parse_challenges([r#"Basic realm="open, NTLM"#, "NTLM"]);
        assert_eq!(
            got,
            [challenge(Scheme::Basic, &[]), challenge(Scheme::Ntlm, &[])]
        );
        // A control character inside quotes breaks that param.
        assert_eq!(
            parse("Basic realm=\"a\u{1}b\", charset=UTF-8"),
            [challenge(Scheme::Basic, &[("charset", "UTF-8")])]
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let samples = [
            "\\",
            "\"",
            "\"\\",
            "Basic realm=\"\\",
            "Basic realm=\"\\\u{e9}",
            "Basic realm=\"\u{e9}\\",
            "Basic =",
            "Basic ==",
            "Basic a=",
            "Basic a= ,",
            "Basic ,=,=,",
            "\u{e9}\u{e9}, Basic \u{e9}=\u{e9}",
            "Basic realm=\"x\"\"y\"",
            "Digest realm=\"x\",\"",
            "\t\t,\t",
            "=,=,=",
            "NTLM ===",
        ];
        for sample in samples {
            let _ = parse(sample);
        }
        // Every prefix of a real header, cut at every character boundary.
        let full = "Digest realm=\"S\\\"q, \u{fc}id\", nonce=\"AbC\", qop=\"auth,auth-int\", \
                    stale=false, NTLM TlRM==, Basic realm=\"x\"";
        for (i, _) in full.char_indices() {
            let _ = parse(&full[..i]);
            let _ = parse(&full[i..]);
        }
    }

    #[test]
    fn token68_versus_param() {
        // `abc=` followed by a comma is a token68; `abc=def` is a param.
        assert_eq!(
            parse("Foo abc=, Bar"),
            [
                with_token(Scheme::Other("Foo".into()), "abc="),
                challenge(Scheme::Other("Bar".into()), &[]),
            ]
        );
        assert_eq!(
            parse("Foo abc=def"),
            [challenge(Scheme::Other("Foo".into()), &[("abc", "def")])]
        );
    }

    #[test]
    fn duplicate_params_first_wins() {
        let got = parse(r#"Basic realm="one", realm="two""#);
        assert_eq!(got[0].param("REALM"), Some("one"));
    }

    fn schemes_of(header: &[&str], usable: impl Fn(&Scheme) -> bool) -> Option<Challenge> {
        strongest(&parse_challenges(header.iter().copied()), usable).cloned()
    }

    #[test]
    fn strongest_follows_the_strength_order() {
        let all = [
            "Basic realm=\"b\"",
            "Digest realm=\"d\", nonce=\"n\", qop=\"auth\"",
            "NTLM",
            "Negotiate",
            "Bearer",
        ];
        let pick = |usable: &dyn Fn(&Scheme) -> bool| schemes_of(&all, usable).map(|c| c.scheme);
        assert_eq!(pick(&|_| true), Some(Scheme::Negotiate));
        assert_eq!(pick(&|s| *s != Scheme::Negotiate), Some(Scheme::Ntlm));
        assert_eq!(
            pick(&|s| matches!(s, Scheme::Digest | Scheme::Basic)),
            Some(Scheme::Digest)
        );
        assert_eq!(pick(&|s| *s == Scheme::Basic), Some(Scheme::Basic));
        assert_eq!(pick(&|s| matches!(s, Scheme::Other(_))), None);
        assert_eq!(strongest(&[], |_| true), None);
    }

    #[test]
    fn strongest_prefers_sha256_digest() {
        // RFC 7616 §3.9.1: one challenge per algorithm, MD5 first.
        let header = [
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="n", opaque="o""#,
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="n", opaque="o""#,
        ];
        let got = schemes_of(&header, |_| true).expect("a Digest offer");
        assert_eq!(got.param("algorithm"), Some("SHA-256"));
        // Equal offers: the server's first wins.
        let got = schemes_of(&[header[0], header[0], "Basic"], |_| true).expect("an offer");
        assert_eq!(got, parse(header[0])[0]);
    }

    #[test]
    fn strongest_ranks_unanswerable_digest_below_basic() {
        let sha512 = r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#;
        let auth_int = r#"Digest realm="r", nonce="n", qop="auth-int""#;
        let md5 = r#"Digest realm="r", nonce="n""#;
        let got = schemes_of(&[sha512, auth_int, "Basic realm=\"r\""], |_| true);
        assert_eq!(got.map(|c| c.scheme), Some(Scheme::Basic));
        let got = schemes_of(&[sha512, md5], |_| true).expect("an offer");
        assert_eq!(got.param("algorithm"), None);
        // Alone, it is still returned, so the engine can say why it failed.
        let got = schemes_of(&[sha512], |_| true).expect("an offer");
        assert_eq!(got.param("algorithm"), Some("SHA-512-256"));
    }
}
