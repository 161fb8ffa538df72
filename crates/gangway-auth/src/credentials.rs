//! Who we authenticate as.

use crate::secret::Password;

/// A user name, an optional domain (the NTLM domain, or a Digest realm the
/// user pinned), a password and the workstation name NTLM reports.
///
/// The user may be typed as `DOMAIN\user` or `user@domain`; the domain part
/// is split off once, here. An explicit `domain` (the CLI's `--realm`) wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user exactly as configured (`CORP\bob`, `bob@corp.example` or `bob`).
    pub login: String,
    /// The bare user name, without any domain part.
    pub user: String,
    /// The domain or realm, empty when none was given.
    pub domain: String,
    pub password: Password,
    /// Workstation name sent in NTLM messages (defaults to the host name).
    pub workstation: String,
}

impl Credentials {
    /// Builds credentials, splitting `DOMAIN\user` or `user@domain` unless
    /// `realm` names the domain explicitly.
    pub fn new(login: &str, realm: Option<&str>, password: Password, workstation: &str) -> Self {
        let (split_domain, user) = split_login(login);
        let domain = match realm.map(str::trim).filter(|r| !r.is_empty()) {
            Some(realm) => realm.to_owned(),
            None => split_domain.to_owned(),
        };
        Credentials {
            login: login.to_owned(),
            user: user.to_owned(),
            domain,
            password,
            workstation: workstation.to_owned(),
        }
    }

    /// How the user is shown to people: `CORP\bob`, or `bob` with no domain.
    pub fn display_name(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }
}

/// Splits `DOMAIN\user` and `user@domain` into (domain, user).
fn split_login(login: &str) -> (&str, &str) {
    if let Some((domain, user)) = login.split_once('\\') {
        (domain, user)
    } else if let Some((user, domain)) = login.rsplit_once('@') {
        (domain, user)
    } else {
        ("", login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(login: &str, realm: Option<&str>) -> Credentials {
        Credentials::new(login, realm, Password::from("pw"), "WS")
    }

    #[test]
    fn splits_the_domain_forms() {
        let c = creds("CORP\\bob", None);
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("CORP", "bob"));
        let c = creds("bob@corp.example", None);
        assert_eq!(
            (c.domain.as_str(), c.user.as_str()),
            ("corp.example", "bob")
        );
        let c = creds("bob", None);
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("", "bob"));
        assert_eq!(c.display_name(), "bob");
    }

    #[test]
    fn explicit_realm_wins() {
        let c = creds("CORP\\bob", Some("OTHER"));
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("OTHER", "bob"));
        assert_eq!(c.display_name(), "OTHER\\bob");
        assert_eq!(c.login, "CORP\\bob");
    }
}
