//! Secrets audit: one unique password goes through every flow the `gangway`
//! CLI has (Basic and Digest to a real Squid, NTLM to the pyspnego peer, a
//! rejected password, `--probe` right and wrong), with `GANGWAY_LOG=trace`,
//! and then nothing the bridge wrote or served may contain it in any form:
//! the password itself, its Base64 forms, its NT hash, the Digest HA1, or
//! any `Proxy-Authorization` value the upstream received.
//!
//! Searched: every run's stdout and stderr (a panic would print there too),
//! the status page, `/status.json` and `/proxy.pac` of each bridge, and
//! every file in the `--config` directory and the runs' output directories.
//!
//! A failure names the artifact and the form that matched, never the
//! secret itself.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gangway_testkit::squid::digest_ha1;
use gangway_testkit::{
    status_json, status_page, Curl, Gangway, GangwayBuilder, NtlmPeer, NtlmUser, Origin, Squid,
    SquidConfig,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

const USER: &str = "auditor";
const DOMAIN: &str = "CORP";
/// How long a `--probe` run may take.
const PROBE_LIMIT: Duration = Duration::from_secs(60);

/// A secret in one of its forms, and what to call it in a failure.
struct Form {
    name: String,
    value: String,
}

/// Everything collected: (artifact name, text).
#[derive(Default)]
struct Artifacts(Vec<(String, String)>);

impl Artifacts {
    fn add(&mut self, name: impl Into<String>, text: impl Into<String>) {
        self.0.push((name.into(), text.into()));
    }

    /// Every file under `dir`, read lossily.
    fn add_dir(&mut self, label: &str, dir: &Path) {
        for path in files_under(dir) {
            let bytes = std::fs::read(&path).unwrap_or_default();
            self.add(
                format!("{label}: {}", path.display()),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        }
    }

    /// A bridge's output, its pages, and its output directory.
    fn add_bridge(&mut self, label: &str, gw: &Gangway) {
        self.add(format!("{label} stdout"), gw.stdout());
        self.add(format!("{label} stderr"), gw.stderr());
        self.add(format!("{label} status page"), status_page(gw.addr()));
        self.add(
            format!("{label} /status.json"),
            status_json(gw.addr()).to_string(),
        );
        let pac = Curl::new().url(format!("{}/proxy.pac", gw.url())).run();
        assert_eq!(pac.code(), 200, "{label}: /proxy.pac");
        self.add(format!("{label} /proxy.pac"), pac.text());
        self.add_dir(&format!("{label} output dir"), gw.dir());
    }
}

/// Which (artifact, form) pairs leak: names only.
fn leaks(artifacts: &Artifacts, forms: &[Form]) -> Vec<String> {
    let mut found = Vec::new();
    for (artifact, text) in &artifacts.0 {
        for form in forms {
            if text.contains(&form.value) {
                found.push(format!("{} in {artifact}", form.name));
            }
        }
    }
    found
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// `Zq7-<16 random hex digits>-gränd`: unique to this run, non-ASCII, and
/// free of `:` (Squid's digest file splits on it).
fn unique_password() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("Zq7-{:016x}-gränd", hasher.finish())
}

/// The NT hash (MD4 of the UTF-16LE password), uppercase hex, from the
/// NTLM peer's own `hash-user` (pyspnego's MD4, not ours).
fn nt_hash_upper(password: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/peers/ntlm_proxy.py"))
        .args(["hash-user", DOMAIN, USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ntlm_proxy.py hash-user (run scripts/setup-test-deps)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(password.as_bytes())
        .expect("write to hash-user");
    let out = child.wait_with_output().expect("wait for hash-user");
    assert!(out.status.success(), "hash-user failed");
    // DOMAIN\user:0:LM:NT:[U]:LCT-…
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let nt = line.split(':').nth(3).unwrap_or_default().to_owned();
    assert_eq!(nt.len(), 32, "hash-user printed no NT hash");
    nt
}

/// `Proxy-Authorization` values in a Squid access log written with
/// `log_mime_hdrs on` (headers %-escaped, lines joined by `%0D%0A`).
fn proxy_authorizations(log: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in percent_decode(log).lines() {
        for piece in line.split("Proxy-Authorization: ").skip(1) {
            let value = piece.split(['\r', ']']).next().unwrap_or_default().trim();
            if !value.is_empty() {
                values.push(value.to_owned());
            }
        }
    }
    values
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard Base64 with padding (RFC 4648 §4), as Basic credentials use.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A bridge to `upstream` as `user` with the password on stdin, logging
/// everything, its non-secret settings in `config`.
fn bridge(upstream: &str, kind: &str, user: &str, password: &str, config: &Path) -> GangwayBuilder {
    Gangway::builder(GANGWAY)
        .env("GANGWAY_LOG", "trace")
        .arg("--config")
        .arg(config)
        .upstream(upstream)
        .proxy_type(kind)
        .user(user)
        .no_bypass()
        .password_stdin(password)
}

/// A GET and a CONNECT through `gw`, both expected to give `status`.
fn use_bridge(gw: &Gangway, origin: &Origin, tls_origin: &Origin, status: u16, label: &str) {
    let get = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(get.code(), status, "{label}: GET");
    let tunnel = Curl::via(gw.addr())
        .cacert(tls_origin.ca_file())
        .url(tls_origin.url("/hello"))
        .run();
    if status == 200 {
        assert_eq!(tunnel.code(), 200, "{label}: CONNECT");
    }
}

#[test]
fn the_search_finds_a_secret_where_there_is_one() {
    let forms = [Form {
        name: "password".into(),
        value: "Zq7-0123-gränd".into(),
    }];
    let mut artifacts = Artifacts::default();
    artifacts.add("clean", "nothing to see");
    assert!(leaks(&artifacts, &forms).is_empty());
    artifacts.add("dirty", "log: pw=Zq7-0123-gränd end");
    assert_eq!(leaks(&artifacts, &forms), ["password in dirty"]);
    assert_eq!(
        proxy_authorizations("GET [Host: a%0D%0AProxy-Authorization: Basic YWJj%0D%0A] [x]"),
        ["Basic YWJj"]
    );
    assert_eq!(base64(b"alice:wonder"), "YWxpY2U6d29uZGVy");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
}

#[test]
fn no_flow_reveals_the_password_in_any_form() {
    let password = unique_password();
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let config_dir = tempfile::tempdir().expect("config dir");
    let config = config_dir.path().join("gangway.toml");
    std::fs::write(&config, "connect_timeout = 5\n").expect("write the config file");

    let nt = nt_hash_upper(&password);
    let mut forms = vec![
        Form {
            name: "the password".into(),
            value: password.clone(),
        },
        Form {
            name: "Base64 of user:password".into(),
            value: base64(format!("{USER}:{password}").as_bytes()),
        },
        Form {
            name: "Base64 of DOMAIN\\user:password".into(),
            value: base64(format!("{DOMAIN}\\{USER}:{password}").as_bytes()),
        },
        Form {
            name: "Base64 of the password".into(),
            value: base64(password.as_bytes()),
        },
        Form {
            name: "NT hash (lower hex)".into(),
            value: nt.to_lowercase(),
        },
        Form {
            name: "NT hash (upper hex)".into(),
            value: nt.to_uppercase(),
        },
    ];
    let mut artifacts = Artifacts::default();
    let mut squids = Vec::new();

    // Basic and Digest, right password: GET and CONNECT succeed.
    for kind in ["basic", "digest"] {
        let squid_config = if kind == "basic" {
            SquidConfig::basic(USER, &password)
        } else {
            SquidConfig::digest(USER, &password)
        };
        let squid = Squid::start(squid_config.directive("log_mime_hdrs on"));
        if kind == "digest" {
            let ha1 = digest_ha1(USER, squid.realm(), &password);
            forms.push(Form {
                name: "Digest HA1 (lower hex)".into(),
                value: ha1.to_lowercase(),
            });
            forms.push(Form {
                name: "Digest HA1 (upper hex)".into(),
                value: ha1.to_uppercase(),
            });
        }
        let gw = bridge(&squid.url(), kind, USER, &password, &config).start();
        use_bridge(&gw, &origin, &tls_origin, 200, kind);
        artifacts.add_bridge(kind, &gw);
        squids.push((kind, squid));
    }

    // A rejected password: the client gets 407, Squid sees one attempt.
    let strict = Squid::start(SquidConfig::basic(USER, "Other-Pw-4").directive("log_mime_hdrs on"));
    let gw = bridge(&strict.url(), "basic", USER, &password, &config).start();
    use_bridge(&gw, &origin, &tls_origin, 407, "wrong password");
    strict.flush_access_log();
    assert_eq!(
        strict.count_rejected_credentials(USER),
        1,
        "a rejected password must be tried once"
    );
    artifacts.add_bridge("wrong password", &gw);
    drop(gw);

    // NTLM to the pyspnego peer.
    let peer = NtlmPeer::start(&[NtlmUser::new(DOMAIN, USER, &password)]);
    let ntlm_user = format!("{DOMAIN}\\{USER}");
    let gw = bridge(&peer.url(), "ntlm", &ntlm_user, &password, &config).start();
    use_bridge(&gw, &origin, &tls_origin, 200, "ntlm");
    artifacts.add_bridge("ntlm", &gw);
    drop(gw);

    // --probe, accepted and rejected.
    for (label, upstream) in [
        ("probe, right password", &squids[0].1),
        ("probe, wrong password", &strict),
    ] {
        let run = bridge(&upstream.url(), "basic", USER, &password, &config)
            .arg("--probe")
            .arg("--probe-url")
            .arg(origin.url("/hello"))
            .run_to_exit(PROBE_LIMIT);
        let expect_ok = label.contains("right");
        assert_eq!(run.status.success(), expect_ok, "{label}: exit status");
        artifacts.add(format!("{label} stdout"), run.stdout);
        artifacts.add(format!("{label} stderr"), run.stderr);
    }
    artifacts.add_dir("config dir", config_dir.path());

    // What the upstreams received, as forms to look for.
    for (kind, squid) in squids
        .iter()
        .map(|(k, s)| (*k, s))
        .chain([("wrong", &strict)])
    {
        squid.flush_access_log();
        let received = proxy_authorizations(&squid.access_log());
        assert!(
            !received.is_empty(),
            "{kind}: Squid logged no Proxy-Authorization (log_mime_hdrs)"
        );
        for (i, value) in received.into_iter().enumerate() {
            forms.push(Form {
                name: format!("Proxy-Authorization #{i} Squid ({kind}) received"),
                value,
            });
        }
    }

    let panics: Vec<&String> = artifacts
        .0
        .iter()
        .filter(|(_, text)| text.contains("panicked at"))
        .map(|(name, _)| name)
        .collect();
    assert!(panics.is_empty(), "a run panicked: {panics:?}");
    let found = leaks(&artifacts, &forms);
    assert!(
        found.is_empty(),
        "secrets leaked (values not shown):\n{}",
        found.join("\n")
    );
}
