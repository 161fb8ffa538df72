//! The origin's endpoints, one function each.
//!
//! | path            | answer                                                |
//! |-----------------|-------------------------------------------------------|
//! | `/hello`        | `hello from origin`                                   |
//! | `/echo…`        | [`EchoReply`] JSON describing the request (any method) |
//! | `/bytes/N`      | N pattern bytes, streamed, with `Content-Length`      |
//! | `/chunked`      | [`chunked_body`], sent chunked                        |
//! | `/slow/MS`      | `slow MS` after waiting MS milliseconds               |
//! | `/status/CODE`  | that status, body `status CODE` where one is allowed  |
//! | anything else   | 404                                                   |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::body::{FramesBody, PatternBody};
use super::echo::EchoReply;
use crate::pattern::hex;

/// What `GET /hello` answers.
pub const HELLO: &str = "hello from origin";

/// How many lines (one chunk each) `/chunked` sends.
pub const CHUNKED_LINES: usize = 10;

/// Longest wait `/slow/MS` accepts, so a typo cannot park a test forever.
const MAX_SLOW: Duration = Duration::from_secs(120);

/// Every response body the origin sends.
pub type OriginBody = BoxBody<Bytes, Infallible>;

/// The full body of `/chunked`: lines `chunk 0` … `chunk 9`.
pub fn chunked_body() -> String {
    (0..CHUNKED_LINES).map(|i| format!("chunk {i}\n")).collect()
}

/// Routes one request.
pub async fn handle(req: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or_default();
    let rest = segments.next();
    let response = match (first, rest) {
        ("hello", None) => text(StatusCode::OK, HELLO.to_owned()),
        ("echo", _) => echo(req).await,
        ("bytes", Some(n)) => match n.parse::<u64>() {
            Ok(len) => bytes(len),
            Err(_) => text(StatusCode::BAD_REQUEST, format!("bad length {n:?}\n")),
        },
        ("chunked", None) => chunked(),
        ("slow", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => slow(Duration::from_millis(ms)).await,
            Err(_) => text(StatusCode::BAD_REQUEST, format!("bad delay {ms:?}\n")),
        },
        ("status", Some(code)) => status(code),
        _ => text(StatusCode::NOT_FOUND, format!("no endpoint {path}\n")),
    };
    Ok(response)
}

fn text(status: StatusCode, body: String) -> Response<OriginBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("static response parts are valid")
}

/// Reads the whole body as it streams in, hashing it without keeping it.
async fn echo(req: Request<Incoming>) -> Response<OriginBody> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    len += data.len() as u64;
                }
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("request body failed after {len} bytes: {e}\n"),
                );
            }
        }
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let reply = EchoReply {
        method: parts.method.as_str().to_owned(),
        uri: parts.uri.to_string(),
        version: format!("{:?}", parts.version),
        len,
        sha256: hex(&hasher.finalize()),
        headers,
    };
    let json = serde_json::to_vec(&reply).expect("EchoReply serializes");
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json)).boxed())
        .expect("static response parts are valid")
}

fn bytes(len: u64) -> Response<OriginBody> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(PatternBody::new(len).boxed())
        .expect("static response parts are valid")
}

fn chunked() -> Response<OriginBody> {
    let frames = (0..CHUNKED_LINES).map(|i| Bytes::from(format!("chunk {i}\n")));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(FramesBody::new(frames).boxed())
        .expect("static response parts are valid")
}

async fn slow(delay: Duration) -> Response<OriginBody> {
    tokio::time::sleep(delay.min(MAX_SLOW)).await;
    text(StatusCode::OK, format!("slow {}\n", delay.as_millis()))
}

fn status(code: &str) -> Response<OriginBody> {
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return text(StatusCode::BAD_REQUEST, format!("bad status {code:?}\n"));
    };
    if status.is_informational() {
        // A 1xx cannot be a final response.
        return text(
            StatusCode::BAD_REQUEST,
            format!("cannot answer {code} finally\n"),
        );
    }
    // 204 and 304 responses carry no body (RFC 9110 §15.3.5, §15.4.5).
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()).boxed())
            .expect("static response parts are valid");
    }
    text(status, format!("status {code}\n"))
}
