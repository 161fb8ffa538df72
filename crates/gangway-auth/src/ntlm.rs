//! NTLMv2 (MS-NLMP), one [`NtlmHandshake`] per upstream connection.
//!
//! The handshake is three messages on one TCP connection: NEGOTIATE (Type 1)
//! out, CHALLENGE (Type 2) in, AUTHENTICATE (Type 3) out. The engine's 407
//! loop carries them; nothing here touches a socket. Only NTLMv2 responses are
//! ever sent: no LM, no NTLMv1, no NTLM2-session.
//!
//! # What comes from `ntlmclient` and what is written here
//! - From `ntlmclient` 0.2: the flag names ([`Flags`]), the Type 1 encoder
//!   and NTOWFv1, which is MD4 of the password's UTF-16LE code units (right
//!   for any Unicode password; curl and cntlm widen the UTF-8 bytes instead).
//! - Here, because `ntlmclient` gets them wrong for a proxy client:
//!   - Type 2 decoding. Its parser `unwrap()`s on input, needs 56 bytes,
//!     rejects odd-length AV pairs and undecodable target names, and keeps
//!     only a re-serialisation of the AV pairs; the client must echo them.
//!   - NTOWFv2. `ntlm_v2_password_func` wants its `Credentials` (a plain
//!     `String` password) and upper-cases the user with Rust's full mapping
//!     (`ß` → `SS`); Windows and Samba map each UTF-16 unit alone (`ß` stays).
//!   - The NTLMv2 response. `respond_challenge_ntlm_v2` draws its own client
//!     challenge (so the spec vectors can't test it), ignores the server's
//!     MsvAvTimestamp and always sends an LMv2 response.
//!   - Type 3 encoding. `ChallengeResponse::to_message` puts the session base
//!     key, in clear, into EncryptedRandomSessionKey, and its encoder has no
//!     room for a MIC.
//!   - HMAC-MD5, on `md-5` (`hmac` is not a dependency of this crate).
//!
//! # Flags (MS-NLMP §2.2.2.5)
//! The Type 1 asks for UNICODE and OEM (the server picks one; OEM only for
//! ASCII), REQUEST_TARGET (so the Type 2 carries the target info NTLMv2
//! hashes), NTLM, ALWAYS_SIGN and EXTENDED_SESSIONSECURITY (as Windows and
//! curl send them; ESS also rules out LM_KEY), and 128 and 56 (as Windows
//! sends them; harmless, as we never sign or seal). Not KEY_EXCH: we do no
//! key exchange, so the Type 3's EncryptedRandomSessionKey stays empty. Not
//! SIGN or SEAL: HTTP does not use NTLM session security. Not VERSION, and no
//! domain or workstation in the Type 1: both are optional, and the Type 1's
//! strings would have to be OEM. The Type 3 carries the flags both sides
//! agreed to: ours AND the server's.
//!
//! # Names
//! The Type 3 sends the user, domain and workstation exactly as
//! [`Credentials`] holds them, and NTOWFv2 hashes that same user and domain.
//! An empty domain stays empty: the server's target name is not substituted.
//!
//! # MIC
//! When the Type 2 carries an MsvAvTimestamp, the client follows §3.1.5.1.2:
//! it uses that timestamp in its blob, sends Z(24) for the LM response, sets
//! the MIC bit in MsvAvFlags and sends a MIC, HMAC-MD5 over all three
//! messages keyed by the session base key (which, without KEY_EXCH, is the
//! exported session key).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use md5::{Digest, Md5};
use ntlmclient::Flags;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{
    challenge::{Challenge, Scheme},
    credentials::Credentials,
    AuthError,
};

const SCHEME: &str = "NTLM";

/// Standard base64 that does not insist on padding: some servers drop it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The longest Type 2 token accepted, in base64 characters. A Type 2 is a
/// 56-byte header and two u16-sized fields, so real ones are far smaller.
const MAX_CHALLENGE_TOKEN_LEN: usize = 64 * 1024;

/// Every NTLM message starts with this (MS-NLMP §2.2.1).
const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const CHALLENGE_MESSAGE_TYPE: u32 = 2;
const AUTHENTICATE_MESSAGE_TYPE: u32 = 3;

/// What the Type 1 asks for; the module docs say why.
const NEGOTIATE_FLAGS: Flags = Flags::NEGOTIATE_UNICODE
    .union(Flags::NEGOTIATE_OEM)
    .union(Flags::REQUEST_TARGET)
    .union(Flags::NEGOTIATE_NTLM)
    .union(Flags::NEGOTIATE_ALWAYS_SIGN)
    .union(Flags::NEGOTIATE_NTLM2_KEY)
    .union(Flags::NEGOTIATE_128BIT)
    .union(Flags::NEGOTIATE_56BIT);

// AV_PAIR ids and bits (MS-NLMP §2.2.2.1).
const MSV_AV_EOL: u16 = 0x0000;
const MSV_AV_FLAGS: u16 = 0x0006;
const MSV_AV_TIMESTAMP: u16 = 0x0007;
const MSV_AV_FLAG_MIC_PRESENT: u32 = 0x0000_0002;

// AUTHENTICATE_MESSAGE layout (MS-NLMP §2.2.1.3): the six fields'
// (len, maxlen, offset) descriptors, the flags, an all-zero Version, then
// the MIC when there is one, then the payload.
const LM_FIELD: usize = 12;
const NT_FIELD: usize = 20;
const DOMAIN_FIELD: usize = 28;
const USER_FIELD: usize = 36;
const WORKSTATION_FIELD: usize = 44;
const SESSION_KEY_FIELD: usize = 52;
const FLAGS_AT: usize = 60;
const MIC_AT: usize = 72;
const MIC_LEN: usize = 16;

/// 100 ns ticks from 1601-01-01 (FILETIME) to the Unix epoch, in seconds.
const FILETIME_UNIX_EPOCH_SECS: u64 = 11_644_473_600;

/// The client side of one NTLM handshake: Type 1 out, Type 2 in, Type 3 out.
///
/// Holds no secret: the password is read from the [`Credentials`] only while
/// the Type 3 is computed, and every key derived from it is zeroized.
pub struct NtlmHandshake {
    /// The Type 1 exactly as sent: the MIC covers these bytes.
    negotiate: Option<Vec<u8>>,
}

impl NtlmHandshake {
    /// Starts a handshake. Nothing from `creds` goes into the Type 1 (see
    /// the module docs); the Type 3 takes them again.
    pub fn new(_creds: &Credentials) -> Self {
        NtlmHandshake { negotiate: None }
    }

    /// `NTLM <base64 Type 1>` (NEGOTIATE_MESSAGE).
    pub fn negotiate(&mut self) -> String {
        let message = negotiate_message();
        let header = format!("{SCHEME} {}", BASE64.encode(&message));
        self.negotiate = Some(message);
        header
    }

    /// Given the server's `NTLM <base64 Type 2>` challenge, the
    /// `NTLM <base64 Type 3>` (AUTHENTICATE_MESSAGE) answer.
    ///
    /// Call [`negotiate`](Self::negotiate) first on the same connection;
    /// without it the Type 3 can carry no MIC.
    pub fn authenticate(
        &mut self,
        creds: &Credentials,
        challenge: &Challenge,
    ) -> Result<Zeroizing<String>, AuthError> {
        let raw = decode_token(challenge)?;
        let message = ChallengeMessage::parse(&raw)?;
        let mut client_challenge = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut client_challenge);
        let inputs = ResponseInputs {
            client_challenge,
            now: filetime_now(),
        };
        let type3 = authenticate_message(creds, self.negotiate.as_deref(), &message, &inputs)?;

        let mut header = Zeroizing::new(String::with_capacity(
            SCHEME.len() + 1 + type3.len() * 4 / 3 + 4,
        ));
        header.push_str(SCHEME);
        header.push(' ');
        BASE64.encode_string(&type3, &mut header);
        Ok(header)
    }
}

impl fmt::Debug for NtlmHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmHandshake")
            .field("negotiate_sent", &self.negotiate.is_some())
            .finish()
    }
}

/// The NEGOTIATE_MESSAGE: our flags, empty domain and workstation fields.
fn negotiate_message() -> Vec<u8> {
    let message = ntlmclient::Message::Negotiate(ntlmclient::NegotiateMessage {
        flags: NEGOTIATE_FLAGS,
        supplied_domain: String::new(),
        supplied_workstation: String::new(),
        os_version: ntlmclient::OsVersion::default(),
    });
    // ntlmclient fails only when neither UNICODE nor OEM is set; both are.
    message
        .to_bytes()
        .expect("a Type 1 with constant flags and empty strings always encodes")
}

/// The Type 2 bytes from an `NTLM <token>` challenge.
fn decode_token(challenge: &Challenge) -> Result<Vec<u8>, AuthError> {
    if challenge.scheme != Scheme::Ntlm {
        return Err(AuthError::Unsupported {
            scheme: SCHEME,
            what: "scheme",
            value: challenge.scheme.to_string(),
        });
    }
    let token = challenge
        .token
        .as_deref()
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::MissingParam {
            scheme: SCHEME,
            param: "token",
        })?;
    if token.len() > MAX_CHALLENGE_TOKEN_LEN {
        return Err(malformed(format!(
            "token is {} characters, more than {MAX_CHALLENGE_TOKEN_LEN}",
            token.len()
        )));
    }
    BASE64
        .decode(token)
        .map_err(|e| malformed(format!("token is not base64: {e}")))
}

fn malformed(reason: impl Into<String>) -> AuthError {
    AuthError::Malformed {
        scheme: SCHEME,
        reason: reason.into(),
    }
}

/// One AV_PAIR of the server's target info (MS-NLMP §2.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AvPair<'a> {
    id: u16,
    value: &'a [u8],
}

/// What the client needs from a CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2).
#[derive(Debug)]
struct ChallengeMessage<'a> {
    /// The whole message, for the MIC.
    raw: &'a [u8],
    flags: Flags,
    server_challenge: [u8; 8],
    /// The target info's AV pairs in server order, without MsvAvEOL.
    av_pairs: Vec<AvPair<'a>>,
}

impl<'a> ChallengeMessage<'a> {
    /// Decodes a Type 2, checking every length and offset against the
    /// message: malformed input is an error, never a panic.
    fn parse(raw: &'a [u8]) -> Result<Self, AuthError> {
        // Signature, type, TargetNameFields, NegotiateFlags, ServerChallenge.
        const MIN_LEN: usize = 32;
        // ... then Reserved and TargetInfoFields.
        const TARGET_INFO_FIELDS_END: usize = 48;

        if raw.len() < MIN_LEN {
            return Err(malformed(format!(
                "message is {} bytes, shorter than the {MIN_LEN}-byte header",
                raw.len()
            )));
        }
        if raw.get(..8) != Some(&SIGNATURE[..]) {
            return Err(malformed("no NTLMSSP signature"));
        }
        let message_type = read_u32(raw, 8)?;
        if message_type != CHALLENGE_MESSAGE_TYPE {
            return Err(malformed(format!(
                "message type {message_type}, expected {CHALLENGE_MESSAGE_TYPE}"
            )));
        }
        // The target name itself is not needed, but it must lie inside.
        payload_field(raw, 12, "target name")?;
        let flags = Flags::from_bits_retain(read_u32(raw, 20)?);
        let mut server_challenge = [0u8; 8];
        server_challenge.copy_from_slice(slice(raw, 24, 8, "server challenge")?);

        // The TargetInfoFields exist only when the server says so: older,
        // shorter Type 2s have their payload where they would be.
        let av_pairs = if flags.contains(Flags::NEGOTIATE_TARGET_INFO) {
            if raw.len() < TARGET_INFO_FIELDS_END {
                return Err(malformed(
                    "NEGOTIATE_TARGET_INFO set but no target info fields",
                ));
            }
            parse_av_pairs(payload_field(raw, 40, "target info")?)?
        } else {
            Vec::new()
        };

        Ok(ChallengeMessage {
            raw,
            flags,
            server_challenge,
            av_pairs,
        })
    }

    /// The server's MsvAvTimestamp (FILETIME), if any.
    fn timestamp(&self) -> Option<u64> {
        self.av_pairs
            .iter()
            .find(|pair| pair.id == MSV_AV_TIMESTAMP)
            .and_then(|pair| pair.value.try_into().ok())
            .map(u64::from_le_bytes)
    }

    /// The AV pairs the client puts in its NTLMv2 blob: the server's, in
    /// order, with the MIC bit set in MsvAvFlags (added if absent) when a
    /// MIC is sent, and a closing MsvAvEOL (MS-NLMP §3.1.5.1.2).
    fn client_av_pairs(&self, with_mic: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut flags_seen = false;
        for pair in &self.av_pairs {
            match <[u8; 4]>::try_from(pair.value) {
                Ok(value) if pair.id == MSV_AV_FLAGS && with_mic => {
                    flags_seen = true;
                    let bits = u32::from_le_bytes(value) | MSV_AV_FLAG_MIC_PRESENT;
                    push_av_pair(&mut out, MSV_AV_FLAGS, &bits.to_le_bytes());
                }
                _ => push_av_pair(&mut out, pair.id, pair.value),
            }
        }
        if with_mic && !flags_seen {
            push_av_pair(
                &mut out,
                MSV_AV_FLAGS,
                &MSV_AV_FLAG_MIC_PRESENT.to_le_bytes(),
            );
        }
        push_av_pair(&mut out, MSV_AV_EOL, &[]);
        out
    }
}

/// Splits target info into AV pairs, stopping at MsvAvEOL. A missing EOL is
/// tolerated (one is added on the way out); a truncated pair is not.
fn parse_av_pairs(mut info: &[u8]) -> Result<Vec<AvPair<'_>>, AuthError> {
    let mut pairs = Vec::new();
    while !info.is_empty() {
        let (Some(id), Some(len)) = (read_u16(info, 0), read_u16(info, 2)) else {
            return Err(malformed("target info ends inside an AV pair header"));
        };
        let value = info
            .get(4..4 + usize::from(len))
            .ok_or_else(|| malformed(format!("AV pair {id:#06x} runs past the target info")))?;
        let expected_len = match id {
            MSV_AV_EOL => break,
            MSV_AV_FLAGS => Some(4),
            MSV_AV_TIMESTAMP => Some(8),
            _ => None,
        };
        if expected_len.is_some_and(|expected| expected != value.len()) {
            return Err(malformed(format!(
                "AV pair {id:#06x} is {} bytes long",
                value.len()
            )));
        }
        pairs.push(AvPair { id, value });
        info = &info[4 + value.len()..];
    }
    Ok(pairs)
}

fn push_av_pair(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    // Values come from a u16-sized field or are 4 bytes: they always fit.
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let end = at.checked_add(2)?;
    bytes.get(at..end)?.try_into().ok().map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, AuthError> {
    slice(bytes, at, 4, "field")?
        .try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| malformed("truncated field"))
}

fn slice<'a>(bytes: &'a [u8], at: usize, len: usize, what: &str) -> Result<&'a [u8], AuthError> {
    at.checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| malformed(format!("{what} lies outside the message")))
}

/// The payload a (len, maxlen, offset) descriptor at `at` points to.
fn payload_field<'a>(message: &'a [u8], at: usize, what: &str) -> Result<&'a [u8], AuthError> {
    let descriptor = slice(message, at, 8, what)?;
    let len = usize::from(u16::from_le_bytes([descriptor[0], descriptor[1]]));
    if len == 0 {
        return Ok(&[]);
    }
    let offset = u32::from_le_bytes([descriptor[4], descriptor[5], descriptor[6], descriptor[7]]);
    let offset =
        usize::try_from(offset).map_err(|_| malformed(format!("{what} offset overflows")))?;
    slice(message, offset, len, what)
}

/// The random and clock inputs to a Type 3, fixed in tests.
struct ResponseInputs {
    client_challenge: [u8; 8],
    /// Now, as FILETIME; used only when the server sends no timestamp.
    now: u64,
}

/// The AUTHENTICATE_MESSAGE for `challenge` (MS-NLMP §3.1.5.1.2).
fn authenticate_message(
    creds: &Credentials,
    negotiate: Option<&[u8]>,
    challenge: &ChallengeMessage<'_>,
    inputs: &ResponseInputs,
) -> Result<Vec<u8>, AuthError> {
    let flags = agreed_flags(challenge.flags)?;
    let unicode = flags.contains(Flags::NEGOTIATE_UNICODE);
    let domain = encode_text(&creds.domain, unicode, "domain")?;
    let user = encode_text(&creds.user, unicode, "user")?;
    let workstation = encode_text(&creds.workstation, unicode, "workstation")?;

    let server_time = challenge.timestamp();
    // The MIC covers the Type 1 we sent; without one it can't be computed.
    let with_mic = server_time.is_some() && negotiate.is_some();
    let av_pairs = challenge.client_av_pairs(with_mic);

    let response_key = {
        let nt_hash = nt_owf_v1(creds.password.expose());
        nt_owf_v2(&nt_hash, &creds.user, &creds.domain)
    };
    let response = ntlmv2_response(
        &response_key,
        &challenge.server_challenge,
        &inputs.client_challenge,
        server_time.unwrap_or(inputs.now),
        &av_pairs,
    );
    // With a server timestamp the LMv2 response is replaced by Z(24).
    let lm = if server_time.is_some() {
        [0u8; 24]
    } else {
        response.lm
    };

    let mut message = encode_authenticate(&AuthenticateFields {
        flags,
        lm: &lm,
        nt: &response.nt,
        domain: &domain,
        user: &user,
        workstation: &workstation,
        with_mic,
    })?;
    if let Some(negotiate) = negotiate.filter(|_| with_mic) {
        // MIC = HMAC_MD5(ExportedSessionKey, Type 1 ‖ Type 2 ‖ Type 3 with a
        // zero MIC); without KEY_EXCH the exported key is the session base key.
        let mic = hmac_md5(
            &response.session_base_key[..],
            &[negotiate, challenge.raw, &message],
        );
        message[MIC_AT..MIC_AT + MIC_LEN].copy_from_slice(&mic);
    }
    Ok(message)
}

/// The Type 3 flags: what we asked for AND what the server granted, with
/// exactly one of UNICODE and OEM.
fn agreed_flags(server: Flags) -> Result<Flags, AuthError> {
    let mut agreed = NEGOTIATE_FLAGS & server;
    if agreed.contains(Flags::NEGOTIATE_UNICODE) {
        agreed.remove(Flags::NEGOTIATE_OEM);
    } else if !agreed.contains(Flags::NEGOTIATE_OEM) {
        return Err(AuthError::Unsupported {
            scheme: SCHEME,
            what: "character set",
            value: "neither Unicode nor OEM".to_owned(),
        });
    }
    Ok(agreed)
}

/// A Type 3 string: UTF-16LE, or for an OEM-only server plain ASCII (its
/// code page is unknowable, so anything else is refused rather than guessed).
fn encode_text(text: &str, unicode: bool, field: &str) -> Result<Vec<u8>, AuthError> {
    if unicode {
        Ok(utf16le(text))
    } else if text.is_ascii() {
        Ok(text.as_bytes().to_vec())
    } else {
        Err(AuthError::Unsupported {
            scheme: SCHEME,
            what: "OEM-only encoding of non-ASCII",
            value: field.to_owned(),
        })
    }
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The fields of an AUTHENTICATE_MESSAGE.
struct AuthenticateFields<'a> {
    flags: Flags,
    lm: &'a [u8],
    nt: &'a [u8],
    domain: &'a [u8],
    user: &'a [u8],
    workstation: &'a [u8],
    with_mic: bool,
}

/// Encodes a Type 3 (MS-NLMP §2.2.1.3) with a zeroed MIC field when
/// `with_mic`. EncryptedRandomSessionKey is always empty: without KEY_EXCH
/// there is no random session key to send, and the session base key must
/// never travel (ntlmclient's `to_message` sends it in clear).
fn encode_authenticate(fields: &AuthenticateFields<'_>) -> Result<Vec<u8>, AuthError> {
    let payload_start = if fields.with_mic {
        MIC_AT + MIC_LEN
    } else {
        MIC_AT
    };
    let mut message = vec![0u8; payload_start];
    message[..8].copy_from_slice(SIGNATURE);
    message[8..12].copy_from_slice(&AUTHENTICATE_MESSAGE_TYPE.to_le_bytes());
    message[FLAGS_AT..FLAGS_AT + 4].copy_from_slice(&fields.flags.bits().to_le_bytes());
    // Bytes 64..72 are the Version: zero, as NEGOTIATE_VERSION is not set.

    let payload: [(usize, &[u8]); 6] = [
        (DOMAIN_FIELD, fields.domain),
        (USER_FIELD, fields.user),
        (WORKSTATION_FIELD, fields.workstation),
        (LM_FIELD, fields.lm),
        (NT_FIELD, fields.nt),
        (SESSION_KEY_FIELD, &[]),
    ];
    for (at, data) in payload {
        let too_large =
            || malformed("AUTHENTICATE message too large (target info or names too long)");
        let len = u16::try_from(data.len()).map_err(|_| too_large())?;
        let offset = u32::try_from(message.len()).map_err(|_| too_large())?;
        message[at..at + 2].copy_from_slice(&len.to_le_bytes());
        message[at + 2..at + 4].copy_from_slice(&len.to_le_bytes());
        message[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
        message.extend_from_slice(data);
    }
    Ok(message)
}

/// NTOWFv1 = MD4(UTF-16LE(password)) (MS-NLMP §3.3.1), via ntlmclient.
///
/// ntlmclient builds the UTF-16LE copy in a buffer it does not zeroize;
/// hashing with the `md4` crate directly would close that gap.
fn nt_owf_v1(password: &str) -> Zeroizing<[u8; 16]> {
    use md4::{Digest, Md4};
    // MD4 over the UTF-16LE of the password's Unicode characters (not a
    // Latin-1 widening of its bytes), fed unit by unit so that no joined
    // copy of the password outlives this call.
    let mut hasher = Md4::new();
    for unit in password.encode_utf16() {
        hasher.update(unit.to_le_bytes());
    }
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&hasher.finalize());
    out
}

/// NTOWFv2 = HMAC_MD5(NTOWFv1, UTF-16LE(Uppercase(User) ‖ UserDom))
/// (MS-NLMP §3.3.2). The domain keeps its case.
fn nt_owf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> Zeroizing<[u8; 16]> {
    let mut identity = utf16le(&uppercase_user(user));
    identity.extend(utf16le(domain));
    Zeroizing::new(hmac_md5(nt_hash, &[&identity]))
}

/// Uppercase(User) as Windows computes it (RtlUpcaseUnicodeString, which
/// Samba mirrors): each UTF-16 unit maps to one unit or stays, so `ß` stays
/// `ß` where Rust's `to_uppercase` would give `SS`, and characters outside
/// the BMP are left alone.
fn uppercase_user(user: &str) -> String {
    user.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) if c.len_utf16() == 1 && u.len_utf16() == 1 => u,
                _ => c,
            }
        })
        .collect()
}

/// The NTLMv2 responses and session base key (MS-NLMP §3.3.2).
struct Ntlmv2Response {
    /// NtChallengeResponse: NTProofStr ‖ the NTLMv2_CLIENT_CHALLENGE blob.
    nt: Vec<u8>,
    /// LmChallengeResponse (LMv2): HMAC ‖ client challenge.
    lm: [u8; 24],
    session_base_key: Zeroizing<[u8; 16]>,
}

/// ComputeResponse for NTLMv2, with the client challenge and the time
/// passed in so the MS-NLMP §4.2.4 vectors can test it. ResponseKeyLM equals
/// ResponseKeyNT in NTLMv2, so one key serves both.
fn ntlmv2_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    time: u64,
    av_pairs: &[u8],
) -> Ntlmv2Response {
    // NTLMv2_CLIENT_CHALLENGE (§2.2.2.7): RespType 1, HiRespType 1, six
    // reserved zero bytes, TimeStamp, ChallengeFromClient, four reserved
    // zero bytes, the AV pairs, and Z(4) after them (§3.3.2's `temp`).
    let mut blob = Vec::with_capacity(28 + av_pairs.len() + 4);
    blob.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    blob.extend_from_slice(&time.to_le_bytes());
    blob.extend_from_slice(client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(av_pairs);
    blob.extend_from_slice(&[0; 4]);

    let nt_proof = hmac_md5(response_key, &[server_challenge, &blob]);
    let mut nt = Vec::with_capacity(16 + blob.len());
    nt.extend_from_slice(&nt_proof);
    nt.extend_from_slice(&blob);

    let mut lm = [0u8; 24];
    lm[..16].copy_from_slice(&hmac_md5(
        response_key,
        &[server_challenge, client_challenge],
    ));
    lm[16..].copy_from_slice(client_challenge);

    Ntlmv2Response {
        nt,
        lm,
        session_base_key: Zeroizing::new(hmac_md5(response_key, &[&nt_proof])),
    }
}

/// HMAC-MD5 (RFC 2104) over the concatenation of `parts`, on `md-5`. The
/// padded key blocks are zeroized.
fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    const BLOCK: usize = 64;
    let mut key_block = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        key_block[..16].copy_from_slice(&Md5::digest(key));
    } else {
        key_block[..key.len()].copy_from_slice(key);
    }
    let mut pad = Zeroizing::new([0u8; BLOCK]);

    for (p, k) in pad.iter_mut().zip(key_block.iter()) {
        *p = k ^ 0x36;
    }
    let mut inner = Md5::new();
    inner.update(&pad[..]);
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();

    for (p, k) in pad.iter_mut().zip(key_block.iter()) {
        *p = k ^ 0x5c;
    }
    let mut outer = Md5::new();
    outer.update(&pad[..]);
    outer.update(inner);
    outer.finalize().into()
}

/// Now as FILETIME: 100 ns ticks since 1601-01-01 UTC.
fn filetime_now() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_unix
        .as_secs()
        .saturating_add(FILETIME_UNIX_EPOCH_SECS)
        .saturating_mul(10_000_000)
        .saturating_add(u64::from(since_unix.subsec_nanos() / 100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Password;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn creds(login: &str, password: &str) -> Credentials {
        Credentials::new(login, None, Password::from(password), "COMPUTER")
    }

    fn challenge_of(bytes: &[u8]) -> Challenge {
        Challenge {
            scheme: Scheme::Ntlm,
            token: Some(BASE64.encode(bytes)),
            params: vec![],
        }
    }

    fn b64_payload(header: &str) -> Vec<u8> {
        let token = header.strip_prefix("NTLM ").expect("NTLM header");
        BASE64.decode(token).unwrap()
    }

    /// The field a (len, maxlen, offset) descriptor at `at` points to.
    fn field(message: &[u8], at: usize) -> &[u8] {
        payload_field(message, at, "test field").unwrap()
    }

    fn flags_of(message: &[u8], at: usize) -> Flags {
        Flags::from_bits_retain(read_u32(message, at).unwrap())
    }

    /// A Type 2 built by hand: no Version, target name then target info.
    fn type2(flags: Flags, server_challenge: [u8; 8], av_pairs: &[(u16, &[u8])]) -> Vec<u8> {
        let name = utf16le("SERVER");
        let mut info = Vec::new();
        for (id, value) in av_pairs {
            push_av_pair(&mut info, *id, value);
        }
        push_av_pair(&mut info, MSV_AV_EOL, &[]);
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        let name_at = 48u32;
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(&name_at.to_le_bytes());
        m.extend_from_slice(&(flags | Flags::NEGOTIATE_TARGET_INFO).bits().to_le_bytes());
        m.extend_from_slice(&server_challenge);
        m.extend_from_slice(&[0; 8]);
        let info_at = name_at + name.len() as u32;
        m.extend_from_slice(&(info.len() as u16).to_le_bytes());
        m.extend_from_slice(&(info.len() as u16).to_le_bytes());
        m.extend_from_slice(&info_at.to_le_bytes());
        m.extend_from_slice(&name);
        m.extend_from_slice(&info);
        m
    }

    // MS-NLMP §4.2.4: User "User", UserDom "Domain", Password "Password",
    // workstation "COMPUTER", server challenge 0123456789abcdef, client
    // challenge aa×8, time 0. The CHALLENGE_MESSAGE of §4.2.4.3:
    const SPEC_TYPE2: &str = "4e544c4d53535000020000000c000c003800000033828ae2
        0123456789abcdef00000000000000002400240044000000060070170000000f
        53006500720076006500720002000c0044006f006d00610069006e0001000c00
        53006500720076006500720000000000";
    const SPEC_AV_PAIRS: &str =
        "02000c0044006f006d00610069006e0001000c005300650072007600650072000000 0000";
    const SPEC_SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const SPEC_CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];
    const SPEC_RESPONSE_KEY_NT: &str = "0c868a403bfd7a93a3001ef22ef02e3f";
    const SPEC_LMV2_RESPONSE: &str = "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa";
    // §4.2.4.2.2: NTProofStr, then the blob with time 0 and the AV pairs.
    const SPEC_NTLMV2_RESPONSE: &str = "68cd0ab851e51c96aabc927bebef6a1c
        0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000
        02000c0044006f006d00610069006e0001000c00530065007200760065007200
        00000000 00000000";
    const SPEC_SESSION_BASE_KEY: &str = "8de40ccadbc14a82f15cb0ad0de95ca3";

    #[test]
    fn hmac_md5_matches_rfc_2202() {
        assert_eq!(
            hmac_md5(&[0x0b; 16], &[b"Hi There"]).to_vec(),
            hex("9294727a3638bb1c13f48ef8158bfc9d")
        );
        assert_eq!(
            hmac_md5(b"Jefe", &[b"what do ya want ", b"for nothing?"]).to_vec(),
            hex("750c783e6ab0b503eaa86e310a5db738")
        );
        // Test case 6: an 80-byte key is hashed first.
        assert_eq!(
            hmac_md5(
                &[0xaa; 80],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )
            .to_vec(),
            hex("6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd")
        );
    }

    #[test]
    fn nt_owf_matches_ms_nlmp_4_2_4() {
        let nt_hash = nt_owf_v1("Password");
        assert_eq!(nt_hash.to_vec(), hex("a4f49c406510bdcab6824ee7c30fd852"));
        let key = nt_owf_v2(&nt_hash, "User", "Domain");
        assert_eq!(key.to_vec(), hex(SPEC_RESPONSE_KEY_NT));
        // The user is upper-cased, the domain is not.
        assert_eq!(*nt_owf_v2(&nt_hash, "uSeR", "Domain"), *key);
        assert_ne!(*nt_owf_v2(&nt_hash, "User", "DOMAIN"), *key);
    }

    #[test]
    fn ntlmv2_response_matches_ms_nlmp_4_2_4() {
        let key: [u8; 16] = hex(SPEC_RESPONSE_KEY_NT).try_into().unwrap();
        let response = ntlmv2_response(
            &key,
            &SPEC_SERVER_CHALLENGE,
            &SPEC_CLIENT_CHALLENGE,
            0,
            &hex(SPEC_AV_PAIRS),
        );
        assert_eq!(
            response.nt[..16],
            hex("68cd0ab851e51c96aabc927bebef6a1c")[..]
        );
        assert_eq!(response.nt, hex(SPEC_NTLMV2_RESPONSE));
        assert_eq!(response.lm.to_vec(), hex(SPEC_LMV2_RESPONSE));
        assert_eq!(
            response.session_base_key.to_vec(),
            hex(SPEC_SESSION_BASE_KEY)
        );
    }

    #[test]
    fn type3_for_the_spec_challenge() {
        let spec_type2 = hex(SPEC_TYPE2);
        let challenge = ChallengeMessage::parse(&spec_type2).unwrap();
        assert_eq!(challenge.server_challenge, SPEC_SERVER_CHALLENGE);
        assert_eq!(challenge.client_av_pairs(false), hex(SPEC_AV_PAIRS));
        assert_eq!(challenge.timestamp(), None);

        let creds = creds("Domain\\User", "Password");
        let mut handshake = NtlmHandshake::new(&creds);
        handshake.negotiate();
        let inputs = ResponseInputs {
            client_challenge: SPEC_CLIENT_CHALLENGE,
            now: 0,
        };
        let type3 =
            authenticate_message(&creds, handshake.negotiate.as_deref(), &challenge, &inputs)
                .unwrap();

        assert_eq!(&type3[..8], SIGNATURE);
        assert_eq!(read_u32(&type3, 8).unwrap(), 3);
        assert_eq!(field(&type3, LM_FIELD), hex(SPEC_LMV2_RESPONSE));
        assert_eq!(field(&type3, NT_FIELD), hex(SPEC_NTLMV2_RESPONSE));
        assert_eq!(field(&type3, DOMAIN_FIELD), utf16le("Domain"));
        assert_eq!(field(&type3, USER_FIELD), utf16le("User"));
        assert_eq!(field(&type3, WORKSTATION_FIELD), utf16le("COMPUTER"));
        assert_eq!(field(&type3, SESSION_KEY_FIELD).len(), 0);
        // No timestamp in this Type 2, so no MIC: the payload starts at 72.
        assert_eq!(read_u32(&type3, DOMAIN_FIELD + 4).unwrap(), 72);
        // Ours (0xa0088207) AND the server's (0xe28a8233), OEM dropped.
        assert_eq!(flags_of(&type3, FLAGS_AT).bits(), 0xa008_8201);
    }

    #[test]
    fn type3_never_carries_the_session_key() {
        let creds = creds("CORP\\bob", "secret");
        let mut handshake = NtlmHandshake::new(&creds);
        handshake.negotiate();
        for type2 in [
            hex(SPEC_TYPE2),
            type2(NEGOTIATE_FLAGS, [7; 8], &[(MSV_AV_TIMESTAMP, &[1; 8])]),
        ] {
            let header = handshake
                .authenticate(&creds, &challenge_of(&type2))
                .unwrap();
            let type3 = b64_payload(&header);
            assert_eq!(field(&type3, SESSION_KEY_FIELD).len(), 0);
            // ntlmclient's own decoder agrees.
            let decoded = ntlmclient::Message::try_from(type3.as_slice()).unwrap();
            let ntlmclient::Message::Authenticate(decoded) = decoded else {
                panic!("not a Type 3: {decoded:?}");
            };
            assert!(decoded.session_key.is_empty());
            assert!(!decoded.flags.contains(Flags::NEGOTIATE_KEY_EXCHANGE));
            assert_eq!(decoded.user_name, "bob");
            assert_eq!(decoded.domain_name, "CORP");
            assert_eq!(decoded.workstation_name, "COMPUTER");
        }
    }

    #[test]
    fn server_timestamp_brings_a_mic() {
        let creds = creds("CORP\\bob", "secret");
        let mut handshake = NtlmHandshake::new(&creds);
        let type1 = b64_payload(&handshake.negotiate());
        let server_time = 0x01d9_0000_1234_5678u64.to_le_bytes();
        let type2 = type2(
            NEGOTIATE_FLAGS | Flags::NEGOTIATE_KEY_EXCHANGE | Flags::NEGOTIATE_SIGN,
            [9; 8],
            &[(0x0002, &utf16le("CORP")), (MSV_AV_TIMESTAMP, &server_time)],
        );
        let challenge = ChallengeMessage::parse(&type2).unwrap();
        let inputs = ResponseInputs {
            client_challenge: [3; 8],
            now: 42,
        };
        let type3 = authenticate_message(&creds, Some(&type1), &challenge, &inputs).unwrap();

        // Flags: no KEY_EXCH or SIGN, which we never asked for.
        let flags = flags_of(&type3, FLAGS_AT);
        assert!(!flags.intersects(Flags::NEGOTIATE_KEY_EXCHANGE | Flags::NEGOTIATE_SIGN));
        // Payload after Version and MIC; LM is Z(24).
        assert_eq!(read_u32(&type3, DOMAIN_FIELD + 4).unwrap(), 88);
        assert_eq!(field(&type3, LM_FIELD), [0u8; 24]);
        // The blob uses the server's time and flags the MIC.
        let nt = field(&type3, NT_FIELD);
        assert_eq!(nt[24..32], server_time);
        let pairs = parse_av_pairs(&nt[44..]).unwrap();
        assert_eq!(
            pairs,
            [
                AvPair {
                    id: 0x0002,
                    value: &utf16le("CORP")
                },
                AvPair {
                    id: MSV_AV_TIMESTAMP,
                    value: &server_time
                },
                AvPair {
                    id: MSV_AV_FLAGS,
                    value: &MSV_AV_FLAG_MIC_PRESENT.to_le_bytes()
                },
            ]
        );
        // The MIC: HMAC_MD5(session base key, Type 1 ‖ Type 2 ‖ Type 3 with a zero MIC).
        let key = nt_owf_v2(&nt_owf_v1("secret"), "bob", "CORP");
        let session_base_key = hmac_md5(&key[..], &[&nt[..16]]);
        let mut zeroed = type3.clone();
        zeroed[MIC_AT..MIC_AT + MIC_LEN].fill(0);
        let mic = hmac_md5(&session_base_key, &[&type1, &type2, &zeroed]);
        assert_eq!(type3[MIC_AT..MIC_AT + MIC_LEN], mic);
    }

    #[test]
    fn existing_av_flags_get_the_mic_bit() {
        let type2 = type2(
            NEGOTIATE_FLAGS,
            [1; 8],
            &[
                (MSV_AV_FLAGS, &1u32.to_le_bytes()),
                (MSV_AV_TIMESTAMP, &[5; 8]),
            ],
        );
        let challenge = ChallengeMessage::parse(&type2).unwrap();
        let pairs_bytes = challenge.client_av_pairs(true);
        let pairs = parse_av_pairs(&pairs_bytes).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].value, 3u32.to_le_bytes());
    }

    #[test]
    fn no_mic_without_a_type1() {
        let creds = creds("bob", "secret");
        let mut handshake = NtlmHandshake::new(&creds);
        let type2 = type2(NEGOTIATE_FLAGS, [1; 8], &[(MSV_AV_TIMESTAMP, &[5; 8])]);
        let type3 = b64_payload(
            &handshake
                .authenticate(&creds, &challenge_of(&type2))
                .unwrap(),
        );
        assert_eq!(read_u32(&type3, DOMAIN_FIELD + 4).unwrap(), 72);
        assert_eq!(field(&type3, DOMAIN_FIELD), b"");
    }

    #[test]
    fn non_ascii_password_hashes_its_utf16() {
        // MD4 of UTF-16LE "pässwörd" (cross-checked with pyspnego's md4).
        assert_eq!(
            nt_owf_v1("pässwörd").to_vec(),
            hex("0553152250ac01adb4213cb9938663e4")
        );
        // Not what curl and cntlm compute: each UTF-8 byte widened.
        let widened: String = "pässwörd".bytes().map(char::from).collect();
        assert_eq!(
            nt_owf_v1(&widened).to_vec(),
            hex("bba7e76a87f61ff6aa300ea899a0540b")
        );
    }

    #[test]
    fn user_is_upper_cased_unit_by_unit() {
        assert_eq!(uppercase_user("bob.smith"), "BOB.SMITH");
        assert_eq!(uppercase_user("jürgen"), "JÜRGEN");
        assert_eq!(uppercase_user("straße"), "STRAßE");
        assert_eq!(uppercase_user("ﬁx"), "ﬁX");
        assert_eq!(uppercase_user("\u{10428}"), "\u{10428}");
    }

    #[test]
    fn type1_round_trips() {
        let mut handshake = NtlmHandshake::new(&creds("CORP\\bob", "pw"));
        let header = handshake.negotiate();
        let type1 = b64_payload(&header);
        assert_eq!(&type1[..8], SIGNATURE);
        assert_eq!(read_u32(&type1, 8).unwrap(), 1);
        assert_eq!(flags_of(&type1, 12), NEGOTIATE_FLAGS);
        assert_eq!(NEGOTIATE_FLAGS.bits(), 0xa008_8207);
        assert!(!NEGOTIATE_FLAGS.contains(Flags::NEGOTIATE_KEY_EXCHANGE));
        assert_eq!(field(&type1, 16), b"");
        assert_eq!(field(&type1, 24), b"");
        // Header, two empty fields pointing at 40, an all-zero Version.
        // (ntlmclient's own Type 1 decoder wants 44 bytes, so it can't read
        // back what its encoder writes; pyspnego reads it fine.)
        assert_eq!(type1.len(), 40);
        assert_eq!(read_u32(&type1, 20).unwrap(), 40);
        assert_eq!(type1[32..40], [0; 8]);
    }

    #[test]
    fn flags_are_what_both_sides_agreed() {
        assert_eq!(
            agreed_flags(Flags::NEGOTIATE_UNICODE | Flags::NEGOTIATE_OEM | Flags::NEGOTIATE_NTLM),
            Ok(Flags::NEGOTIATE_UNICODE | Flags::NEGOTIATE_NTLM)
        );
        assert_eq!(
            agreed_flags(Flags::NEGOTIATE_OEM | Flags::NEGOTIATE_SEAL),
            Ok(Flags::NEGOTIATE_OEM)
        );
        assert!(agreed_flags(Flags::NEGOTIATE_NTLM).is_err());
    }

    #[test]
    fn oem_only_server_gets_ascii() {
        let oem = NEGOTIATE_FLAGS - Flags::NEGOTIATE_UNICODE;
        let creds_ascii = creds("CORP\\bob", "pässwörd");
        let mut handshake = NtlmHandshake::new(&creds_ascii);
        let header = handshake
            .authenticate(&creds_ascii, &challenge_of(&type2(oem, [1; 8], &[])))
            .unwrap();
        let type3 = b64_payload(&header);
        assert_eq!(field(&type3, USER_FIELD), b"bob");
        assert_eq!(field(&type3, DOMAIN_FIELD), b"CORP");

        let creds_accented = creds("CORP\\jürgen", "pw");
        let err = handshake
            .authenticate(&creds_accented, &challenge_of(&type2(oem, [1; 8], &[])))
            .unwrap_err();
        assert!(matches!(err, AuthError::Unsupported { .. }), "{err:?}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let creds = creds("CORP\\bob", "hunter2");
        let mut handshake = NtlmHandshake::new(&creds);
        handshake.negotiate();
        handshake
            .authenticate(&creds, &challenge_of(&hex(SPEC_TYPE2)))
            .unwrap();
        let shown = format!("{handshake:?} {handshake:#?}");
        assert!(!shown.contains("hunter2"));
        assert_eq!(
            format!("{handshake:?}"),
            "NtlmHandshake { negotiate_sent: true }"
        );
    }

    #[test]
    fn challenge_must_be_an_ntlm_token() {
        let creds = creds("bob", "pw");
        let mut handshake = NtlmHandshake::new(&creds);
        let mut challenge = challenge_of(&hex(SPEC_TYPE2));
        challenge.scheme = Scheme::Negotiate;
        assert!(matches!(
            handshake.authenticate(&creds, &challenge),
            Err(AuthError::Unsupported { .. })
        ));
        for token in [None, Some(""), Some("   ")] {
            let challenge = Challenge {
                scheme: Scheme::Ntlm,
                token: token.map(str::to_owned),
                params: vec![],
            };
            assert_eq!(
                handshake.authenticate(&creds, &challenge),
                Err(AuthError::MissingParam {
                    scheme: "NTLM",
                    param: "token"
                })
            );
        }
        // Padding is optional.
        let unpadded = BASE64
            .encode(hex(SPEC_TYPE2))
            .trim_end_matches('=')
            .to_owned();
        let challenge = Challenge {
            scheme: Scheme::Ntlm,
            token: Some(unpadded),
            params: vec![],
        };
        assert!(handshake.authenticate(&creds, &challenge).is_ok());
    }

    fn assert_malformed(handshake: &mut NtlmHandshake, token: &str, why: &str) {
        let creds = creds("bob", "pw");
        let challenge = Challenge {
            scheme: Scheme::Ntlm,
            token: Some(token.to_owned()),
            params: vec![],
        };
        match handshake.authenticate(&creds, &challenge) {
            Err(AuthError::Malformed { .. }) => {}
            other => panic!("{why}: expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn malformed_type2_is_an_error() {
        let mut handshake = NtlmHandshake::new(&creds("bob", "pw"));
        let spec = hex(SPEC_TYPE2);
        let with = |at: usize, bytes: &[u8]| {
            let mut m = spec.clone();
            m[at..at + bytes.len()].copy_from_slice(bytes);
            BASE64.encode(m)
        };

        assert_malformed(&mut handshake, "!!!not base64!!!", "not base64");
        assert_malformed(&mut handshake, &BASE64.encode(b"NTLMSSP\0"), "short");
        assert_malformed(&mut handshake, &BASE64.encode(&spec[..31]), "31 bytes");
        assert_malformed(&mut handshake, &with(0, b"NTLMSSX\0"), "bad signature");
        assert_malformed(&mut handshake, &with(8, &3u32.to_le_bytes()), "a Type 3");
        assert_malformed(
            &mut handshake,
            &with(44, &0x1000u32.to_le_bytes()),
            "info offset",
        );
        assert_malformed(
            &mut handshake,
            &with(16, &0xffff_fff0u32.to_le_bytes()),
            "name offset",
        );
        assert_malformed(&mut handshake, &with(40, &[0xff, 0xff]), "huge info length");
        assert_malformed(
            &mut handshake,
            &with(12, &[0xff, 0xff, 0xff, 0xff]),
            "huge name length",
        );
        assert_malformed(
            &mut handshake,
            &with(40, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            "huge length and offset",
        );
        // An AV pair longer than the target info.
        assert_malformed(&mut handshake, &with(70, &[0xff, 0x00]), "AV pair length");
        // Target info whose last pair is cut short.
        assert_malformed(
            &mut handshake,
            &with(40, &[0x22, 0x00]),
            "truncated AV pair",
        );
        // Flag says target info, message too short to hold its fields.
        let mut short = spec[..40].to_vec();
        short[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_malformed(&mut handshake, &BASE64.encode(&short), "no info fields");
        // A timestamp of the wrong size.
        let bad_time = type2(NEGOTIATE_FLAGS, [1; 8], &[(MSV_AV_TIMESTAMP, &[1; 6])]);
        assert_malformed(&mut handshake, &BASE64.encode(bad_time), "timestamp size");
        // Far too long a token.
        assert_malformed(
            &mut handshake,
            &"A".repeat(MAX_CHALLENGE_TOKEN_LEN + 4),
            "too long",
        );
    }

    #[test]
    fn minimal_type2_without_target_info_still_gets_ntlmv2() {
        let mut m = hex(SPEC_TYPE2)[..32].to_vec();
        m[12..20].copy_from_slice(&[0, 0, 0, 0, 32, 0, 0, 0]);
        let flags = Flags::NEGOTIATE_UNICODE | Flags::NEGOTIATE_NTLM;
        m[20..24].copy_from_slice(&flags.bits().to_le_bytes());
        let challenge = ChallengeMessage::parse(&m).unwrap();
        assert!(challenge.av_pairs.is_empty());
        let creds = creds("bob", "pw");
        let inputs = ResponseInputs {
            client_challenge: [2; 8],
            now: 77,
        };
        let type3 = authenticate_message(&creds, None, &challenge, &inputs).unwrap();
        let nt = field(&type3, NT_FIELD);
        assert_eq!(nt.len(), 16 + 28 + 4 + 4);
        assert_eq!(nt[24..32], 77u64.to_le_bytes());
        assert_eq!(field(&type3, LM_FIELD).len(), 24);
    }

    #[test]
    fn mangled_type2s_never_panic() {
        // Deterministic mutations of real Type 2s: every byte set to a few
        // values, and every truncation.
        let creds = creds("CORP\\bob", "pw");
        let mut handshake = NtlmHandshake::new(&creds);
        handshake.negotiate();
        let seeds = [
            hex(SPEC_TYPE2),
            type2(
                NEGOTIATE_FLAGS,
                [1; 8],
                &[(MSV_AV_TIMESTAMP, &[5; 8]), (MSV_AV_FLAGS, &[0; 4])],
            ),
        ];
        for seed in &seeds {
            for len in 0..=seed.len() {
                let _ = handshake.authenticate(&creds, &challenge_of(&seed[..len]));
            }
            for at in 0..seed.len() {
                for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                    let mut m = seed.clone();
                    m[at] = value;
                    let _ = handshake.authenticate(&creds, &challenge_of(&m));
                }
            }
        }
    }

    #[test]
    fn filetime_is_after_2020() {
        // 2020-01-01 as FILETIME.
        assert!(filetime_now() > 132_223_104_000_000_000);
    }
}
