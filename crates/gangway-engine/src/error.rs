//! Every way a request can fail, with the status the client gets and a
//! text body that says what happened in words. Auth failures stay distinct
//! from I/O failures all the way to the client and the connection log.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, ResBody};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("client {0} is not in the allow list")]
    Forbidden(std::net::IpAddr),
    #[error("request loop: this request already passed through this bridge")]
    Loop,
    #[error("too many connections (limit {0})")]
    TooManyConnections(usize),
    #[error("the bridge is out of file descriptors; retry when some connections have closed")]
    OutOfDescriptors,
    #[error("upstream proxy {upstream} is unreachable: {source}")]
    UpstreamUnreachable {
        upstream: String,
        #[source]
        source: io::Error,
    },
    #[error("{target} is unreachable: {source}")]
    OriginUnreachable {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {peer} timed out after {}s", .after.as_secs())]
    ConnectTimeout { peer: String, after: Duration },
    #[error("{peer} did not answer within {}s", .after.as_secs())]
    ResponseTimeout { peer: String, after: Duration },
    #[error("{peer} broke the connection: {reason}")]
    PeerProtocol { peer: String, reason: String },
    #[error("upstream proxy {upstream} rejected the configured credentials for {user} ({scheme}); Gangway will not send them again until they are changed or a retry is requested, so the account does not lock out")]
    CredentialsRejected {
        upstream: String,
        user: String,
        scheme: String,
    },
    #[error("upstream proxy {upstream} requires authentication ({offered}), but Gangway is configured without credentials")]
    AuthNotConfigured { upstream: String, offered: String },
    #[error("upstream proxy {upstream} offers only {offered}, which Gangway cannot do with the configured settings")]
    AuthUnsupported { upstream: String, offered: String },
    #[error("authentication with upstream proxy {upstream} failed: {reason}")]
    AuthFailed { upstream: String, reason: String },
    #[error("the request body was already sent when upstream proxy {upstream} asked to authenticate again; retry the request")]
    BodyNotReplayable { upstream: String },
    #[error("the bridge is shutting down")]
    ShuttingDown,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            Forbidden(_) => StatusCode::FORBIDDEN,
            Loop => StatusCode::LOOP_DETECTED,
            TooManyConnections(_) | OutOfDescriptors | ShuttingDown | BodyNotReplayable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamUnreachable { .. }
            | OriginUnreachable { .. }
            | PeerProtocol { .. }
            | AuthUnsupported { .. }
            | AuthFailed { .. } => StatusCode::BAD_GATEWAY,
            ConnectTimeout { .. } | ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            CredentialsRejected { .. } | AuthNotConfigured { .. } => {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED
            }
        }
    }

    /// Records this error on the request's event and gives the response
    /// the client sees.
    pub fn answer(&self, rec: &mut crate::events::Recorder) -> Response<ResBody> {
        rec.set_status(self.status().as_u16());
        rec.set_error(self.to_string());
        self.to_response()
    }

    /// The response the client sees: the status and this error in words.
    pub fn to_response(&self) -> Response<ResBody> {
        let text = format!("Gangway: {self}\n");
        let mut res = Response::new(body::full(Bytes::from(text)));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            // Clients must not try their own credentials against us: the
            // bridge does the authenticating. A challenge is still required
            // by RFC 9110 §15.5.8; this one names the bridge.
            h.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Gangway: upstream credentials rejected\""),
            );
        }
        if matches!(
            self,
            ProxyError::TooManyConnections(_)
                | ProxyError::OutOfDescriptors
                | ProxyError::ShuttingDown
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}
