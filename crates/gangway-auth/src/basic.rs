//! Basic authentication (RFC 7617), always encoded as UTF-8 (§2.1).

use base64::prelude::{Engine, BASE64_STANDARD};
use zeroize::Zeroizing;

use crate::credentials::Credentials;

/// The `Proxy-Authorization` value for Basic: the login exactly as the user
/// typed it (Basic has no domain field), a colon, the password.
pub fn authorization(creds: &Credentials) -> Zeroizing<String> {
    let mut pair = Zeroizing::new(String::with_capacity(
        creds.login.len() + 1 + creds.password.expose().len(),
    ));
    pair.push_str(&creds.login);
    pair.push(':');
    pair.push_str(creds.password.expose());
    let mut value = Zeroizing::new(String::from("Basic "));
    BASE64_STANDARD.encode_string(pair.as_bytes(), &mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Password;

    #[test]
    fn rfc7617_example() {
        // RFC 7617 §2: Aladdin / open sesame.
        let c = Credentials::new("Aladdin", None, Password::from("open sesame"), "");
        assert_eq!(
            authorization(&c).as_str(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn utf8_charset() {
        // RFC 7617 §2.1: "test" / "123£" encodes the pound sign as UTF-8.
        let c = Credentials::new("test", None, Password::from("123\u{A3}"), "");
        assert_eq!(authorization(&c).as_str(), "Basic dGVzdDoxMjPCow==");
    }
}
