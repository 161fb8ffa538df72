//! "Copy proxy settings for terminals": git, npm, pip and curl read
//! `http_proxy`/`https_proxy`, not the desktop setting, so the tray offers
//! lines to paste into a shell.

use std::net::SocketAddr;

/// bash/zsh `export` lines and PowerShell `$env:` lines pointing at the
/// bridge, with the bypass list as `no_proxy`. Both spellings are set
/// because tools disagree on the case they read.
pub fn proxy_lines(listen: SocketAddr, bypass: &[String]) -> String {
    let url = format!("http://{listen}");
    let no_proxy = bypass.join(",");
    let mut out = String::new();
    out.push_str("# bash / zsh\n");
    for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
        out.push_str(&format!("export {name}={}\n", sh_quote(&url)));
    }
    for name in ["no_proxy", "NO_PROXY"] {
        out.push_str(&format!("export {name}={}\n", sh_quote(&no_proxy)));
    }
    out.push_str("# PowerShell\n");
    for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
        out.push_str(&format!("$env:{name} = {}\n", ps_quote(&url)));
    }
    for name in ["no_proxy", "NO_PROXY"] {
        out.push_str(&format!("$env:{name} = {}\n", ps_quote(&no_proxy)));
    }
    out
}

/// Single quotes: nothing inside is expanded by the shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// PowerShell single-quoted strings escape a quote by doubling it.
fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_for_both_shells() {
        let text = proxy_lines(
            "127.0.0.1:3128".parse().expect("addr"),
            &["localhost".into(), "127.0.0.0/8".into()],
        );
        assert!(text.contains("export https_proxy='http://127.0.0.1:3128'\n"));
        assert!(text.contains("export no_proxy='localhost,127.0.0.0/8'\n"));
        assert!(text.contains("$env:HTTP_PROXY = 'http://127.0.0.1:3128'\n"));
    }
}
