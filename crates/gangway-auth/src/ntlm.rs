//! NTLMv2 (MS-NLMP) over `ntlmclient`, one handshake per upstream connection.
//!
//! PLACEHOLDER API: being implemented; signatures are fixed.

use zeroize::Zeroizing;

use crate::{challenge::Challenge, credentials::Credentials, AuthError};

/// The client side of one NTLM handshake: Type 1 out, Type 2 in, Type 3 out.
#[derive(Debug)]
pub struct NtlmHandshake {
    _private: (),
}

impl NtlmHandshake {
    pub fn new(creds: &Credentials) -> Self {
        let _ = creds;
        NtlmHandshake { _private: () }
    }

    /// `NTLM <base64 Type 1>` (NEGOTIATE_MESSAGE).
    pub fn negotiate(&mut self) -> String {
        String::from("NTLM ")
    }

    /// Given the server's `NTLM <base64 Type 2>` challenge, the
    /// `NTLM <base64 Type 3>` (AUTHENTICATE_MESSAGE) answer.
    pub fn authenticate(
        &mut self,
        creds: &Credentials,
        challenge: &Challenge,
    ) -> Result<Zeroizing<String>, AuthError> {
        let _ = (creds, challenge);
        Err(AuthError::MissingParam {
            scheme: "NTLM",
            param: "token",
        })
    }
}
