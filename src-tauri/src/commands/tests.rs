//! The commands through Tauri's real IPC path on the mock runtime, with a
//! controller over temp directories, an in-memory keyring (on purpose:
//! `tests/keyring_real.rs` proves the real one) and a fake system proxy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::controller::Gangway;
use crate::secrets::testing::{MemoryStore, NoKeyring};
use crate::secrets::{SecretStore, Secrets};
use crate::settings_store::SettingsStore;
use crate::sysproxy::testing::FakeBackend;
use crate::sysproxy::SystemProxy;

struct Harness {
    _app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
    dir: tempfile::TempDir,
    proxy: Arc<FakeBackend>,
}

fn harness(store: Arc<dyn SecretStore>) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Arc::new(FakeBackend::with(&[
        ("mode", "auto"),
        ("pac", "http://wpad.corp/proxy.pac"),
        ("host", ""),
        ("port", "0"),
    ]));
    let ctl = Gangway::new(
        SettingsStore::new(&dir.path().join("config")),
        Secrets::new(store),
        Ok(SystemProxy::new(
            Box::new(proxy.clone()),
            &dir.path().join("data"),
        )),
    );
    let app = crate::with_commands(mock_builder())
        .manage(ctl)
        .build(mock_context(noop_assets()))
        .expect("app");
    let window = WebviewWindowBuilder::new(&app, "settings", Default::default())
        .build()
        .expect("window");
    Harness {
        _app: app,
        window,
        dir,
        proxy,
    }
}

impl Harness {
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        get_ipc_response(
            &self.window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().expect("url"),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().expect("json"))
    }

    /// Every file under the temp dirs, as text.
    fn all_files_text(&self) -> String {
        fn walk(dir: &std::path::Path, out: &mut String) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(bytes) = std::fs::read(&p) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        let mut out = String::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

/// A form for an upstream with Basic auth; the listener on a free port.
fn basic_form(upstream_port: u16, password: Option<&str>) -> Value {
    json!({ "form": {
        "proxyType": "basic",
        "upstreamHost": "127.0.0.1",
        "upstreamPort": upstream_port.to_string(),
        "user": "bob",
        "realm": "",
        "password": password,
        "sessionOnly": false,
        "listenAddress": "127.0.0.1",
        "listenPort": "0",
        "bypass": "",
        "startAtLogin": false,
        "enableOnStart": false,
    }})
}

#[test]
fn defaults_are_a_local_proxy_with_no_upstream() {
    let h = harness(Arc::new(MemoryStore::default()));
    let v = h.invoke("get_settings", json!({})).expect("settings");
    assert_eq!(v["proxyType"], "none");
    assert_eq!(v["upstreamHost"], "");
    assert_eq!(v["listenAddress"], "127.0.0.1");
    assert_eq!(v["listenPort"], "3128");
    assert_eq!(v["passwordStored"], Value::Null);
    let s = h.invoke("get_status", json!({})).expect("status");
    assert_eq!(s["enabled"], false);
    assert_eq!(s["health"], "off");
}

#[test]
fn the_password_goes_to_the_keyring_and_never_comes_back() {
    let keyring = Arc::new(MemoryStore::default());
    let h = harness(keyring.clone());
    let reply = h
        .invoke("save_settings", basic_form(3128, Some("s3cret")))
        .expect("saved");
    assert_eq!(reply["settings"]["passwordStored"], "keyring");
    let stored = keyring
        .get("bob@127.0.0.1:3128")
        .expect("get")
        .expect("entry");
    assert_eq!(stored.expose(), "s3cret");

    let view = h.invoke("get_settings", json!({})).expect("settings");
    assert_eq!(view["passwordStored"], "keyring");
    assert_eq!(view["proxyType"], "basic");
    assert!(!view.to_string().contains("s3cret"));
    assert!(!reply.to_string().contains("s3cret"));
    assert!(!h.all_files_text().contains("s3cret"), "no file holds it");

    // Saving again without a password keeps the stored one.
    h.invoke("save_settings", basic_form(3128, None))
        .expect("saved without retyping");
}

#[test]
fn validation_errors_name_their_field() {
    let h = harness(Arc::new(MemoryStore::default()));
    let mut form = basic_form(3128, Some("pw"));
    form["form"]["user"] = json!("");
    let err = h.invoke("save_settings", form).expect_err("no user");
    assert_eq!(err["kind"], "invalid");
    assert_eq!(err["field"], "user");
    assert_eq!(err["message"], "basic authentication needs a user name");

    let err = h
        .invoke("check_settings", basic_form(3128, None))
        .expect_err("no password stored");
    assert_eq!(err["field"], "password");

    let mut form = basic_form(3128, Some("pw"));
    form["form"]["upstreamPort"] = json!("80a");
    let err = h.invoke("save_settings", form).expect_err("port");
    assert_eq!(err["field"], "upstream_port");

    let mut form = basic_form(3128, Some("pw"));
    form["form"]["bypass"] = json!("good.example, bad_host!");
    let err = h.invoke("save_settings", form).expect_err("bypass");
    assert_eq!(err["field"], "bypass");

    let mut form = basic_form(3128, Some("pw"));
    form["form"]["listenAddress"] = json!("0.0.0.0");
    let err = h.invoke("save_settings", form).expect_err("exposed");
    assert_eq!(err["field"], "listen_address");

    // Nothing was saved by any of these.
    let view = h.invoke("get_settings", json!({})).expect("settings");
    assert_eq!(view["proxyType"], "none");
}

#[test]
fn no_keyring_is_said_plainly_and_session_memory_is_a_choice() {
    let h = harness(Arc::new(NoKeyring));
    let err = h
        .invoke("save_settings", basic_form(3128, Some("s3cret")))
        .expect_err("no keyring");
    assert_eq!(err["kind"], "keyring_unavailable");
    assert!(err["message"]
        .as_str()
        .is_some_and(|m| m.contains("no keyring is available")));
    assert!(!h.dir.path().join("config/settings.json").exists());

    let mut form = basic_form(3128, Some("s3cret"));
    form["form"]["sessionOnly"] = json!(true);
    let reply = h.invoke("save_settings", form).expect("session only");
    assert_eq!(reply["settings"]["passwordStored"], "session");
    assert!(!h.all_files_text().contains("s3cret"));
}

#[test]
fn enabling_switches_the_system_proxy_and_disabling_restores_it() {
    let h = harness(Arc::new(MemoryStore::default()));
    let mut form = basic_form(3128, None);
    form["form"]["proxyType"] = json!("none");
    form["form"]["upstreamHost"] = json!("");
    h.invoke("save_settings", form).expect("saved");

    let on = h
        .invoke("set_bridging", json!({ "enabled": true }))
        .expect("enabled");
    assert_eq!(on["enabled"], true);
    assert_eq!(on["health"], "on");
    let listen: std::net::SocketAddr = on["listen"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("listen address");
    assert!(on["line"]
        .as_str()
        .is_some_and(|l| l.starts_with(&format!("Bridging {listen} -> direct"))));
    assert_eq!(h.proxy.get("mode").as_deref(), Some("manual"));
    assert_eq!(
        h.proxy.get("port"),
        Some(listen.port().to_string()),
        "the fake desktop points at the bridge"
    );
    assert!(std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(2)).is_ok());

    let off = h
        .invoke("set_bridging", json!({ "enabled": false }))
        .expect("disabled");
    assert_eq!(off["enabled"], false);
    assert_eq!(h.proxy.get("mode").as_deref(), Some("auto"));
    assert_eq!(
        h.proxy.get("pac").as_deref(),
        Some("http://wpad.corp/proxy.pac")
    );
    assert_eq!(h.proxy.get("port").as_deref(), Some("0"));
}

/// A tiny upstream that wants Basic `bob:s3cret` and counts the requests
/// that carry credentials.
fn basic_upstream() -> (
    u16,
    Arc<std::sync::atomic::AtomicUsize>,
    std::thread::JoinHandle<()>,
) {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let seen = count.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            // Bounded: the probe makes at most a few connections.
            for _ in 0..4 {
                let Ok(Ok((mut s, _))) =
                    tokio::time::timeout(Duration::from_secs(5), listener.accept()).await
                else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    for _ in 0..8 {
                        let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await
                        else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            if head.to_ascii_lowercase().contains("\r\nproxy-authorization:") {
                                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            let answer = if head.contains("Basic Ym9iOnMzY3JldA==") {
                                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                            } else {
                                "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n"
                            };
                            if s.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    });
    (port, count, thread)
}

#[test]
fn test_connection_gives_the_verdict_in_words_with_one_attempt() {
    let h = harness(Arc::new(MemoryStore::default()));
    let (port, _count, _thread) = basic_upstream();
    let ok = h
        .invoke("test_connection", basic_form(port, Some("s3cret")))
        .expect("probe ran");
    assert_eq!(ok["verdict"], "accepted", "{ok}");
    assert_eq!(ok["ok"], true);
    assert!(ok["text"].as_str().is_some_and(|t| t.contains("accepted")));

    let (port, count, _thread) = basic_upstream();
    let bad = h
        .invoke("test_connection", basic_form(port, Some("wrong")))
        .expect("probe ran");
    assert_eq!(bad["verdict"], "rejected", "{bad}");
    assert!(bad["text"]
        .as_str()
        .is_some_and(|t| t.contains("credentials rejected")));
    // Exactly one attempt with the password: no lockout from testing.
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let down = h
        .invoke("test_connection", basic_form(closed, Some("s3cret")))
        .expect("probe ran");
    assert_eq!(down["verdict"], "unreachable", "{down}");

    let mut form = basic_form(port, None);
    form["form"]["upstreamHost"] = json!("");
    form["form"]["proxyType"] = json!("none");
    let err = h.invoke("test_connection", form).expect_err("no upstream");
    assert_eq!(err["field"], "upstream_host");
}
