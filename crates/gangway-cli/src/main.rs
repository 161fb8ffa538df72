//! `gangway`: the headless bridge. Parses options (the classic mini_proxy
//! names), reads the password from a safe place, runs the engine until
//! Ctrl-C or SIGTERM. SIGHUP re-reads the config file and allows one more
//! attempt with credentials the upstream rejected.

mod args;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use gangway_engine::{Bridge, Control, Password, SettingsFile};
use zeroize::Zeroize;

use args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Dropped last: writes out what the log writer still holds.
    let _log_guard = init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::ProbeFailed) => ExitCode::FAILURE,
        Err(e) => {
            // The whole cause chain, in words.
            eprintln!("gangway: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// How a run that raised no error ended.
enum Outcome {
    Done,
    /// `--probe` ran and the upstream did not accept the request.
    ProbeFailed,
}

async fn run(cli: Cli) -> Result<Outcome> {
    let file = load_file(&cli)?;
    let layered = file.merge(cli.settings());
    let password = if layered.proxy_type.is_some_and(|t| t.needs_credentials()) {
        Some(read_password(&cli)?)
    } else {
        None
    };
    let settings = layered
        .clone()
        .validate(password.clone())
        .context("invalid settings")?;
    if cli.probe {
        return run_probe(&settings, &cli.probe_url).await;
    }
    let (bridge, control) = Bridge::bind(settings.clone()).await?;
    let shown = match &settings.upstream {
        Some(up) => up.describe(),
        None => "direct".to_owned(),
    };
    println!("gangway listening on {} -> {shown}", bridge.local_addr());
    let _ = std::io::stdout().flush();

    tokio::spawn(handle_signals(control.clone(), cli, password));
    bridge.run().await;
    tracing::info!("gangway stopped");
    Ok(Outcome::Done)
}

async fn run_probe(settings: &gangway_engine::Settings, url: &str) -> Result<Outcome> {
    let Some(upstream) = &settings.upstream else {
        anyhow::bail!("--probe needs an upstream (--proxy http://host:port)");
    };
    let report = gangway_engine::probe::probe(upstream, &settings.timeouts, url).await;
    println!("{report}");
    Ok(if report.ok() {
        Outcome::Done
    } else {
        Outcome::ProbeFailed
    })
}

fn load_file(cli: &Cli) -> Result<SettingsFile> {
    match &cli.config {
        None => Ok(SettingsFile::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            SettingsFile::from_toml(&text).with_context(|| format!("in {}", path.display()))
        }
    }
}

/// The password, from the safest source given: stdin, then the command
/// line (with a warning), then `GANGWAY_PASSWORD`, then a prompt.
fn read_password(cli: &Cli) -> Result<Password> {
    if cli.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let trimmed = line.trim_end_matches(['\r', '\n']).to_owned();
        line.zeroize();
        return Ok(Password::new(trimmed));
    }
    if let Some(p) = &cli.password {
        tracing::warn!(
            "--password on the command line is visible to other local users (ps); prefer --password-stdin or GANGWAY_PASSWORD"
        );
        return Ok(Password::new(p.clone()));
    }
    if let Ok(p) = std::env::var("GANGWAY_PASSWORD") {
        return Ok(Password::new(p));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Upstream proxy password: ")
            .context("reading the password")?;
        return Ok(Password::new(p));
    }
    anyhow::bail!("no password given: use --password-stdin, GANGWAY_PASSWORD, or run in a terminal to be asked")
}

async fn handle_signals(control: Control, cli: Cli, password: Option<Password>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("cannot install signal handlers; Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            control.shutdown();
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => reload(&control, &cli, password.clone()),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (&cli, &password);
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
    control.shutdown();
}

#[cfg(unix)]
fn reload(control: &Control, cli: &Cli, password: Option<Password>) {
    tracing::info!("SIGHUP: reloading settings");
    let result = load_file(cli).and_then(|file| {
        file.merge(cli.settings())
            .validate(password)
            .context("invalid settings")
    });
    match result {
        Ok(settings) => match control.apply(settings) {
            Ok(()) => control.retry_credentials(),
            Err(e) => tracing::error!("settings not applied: {e}"),
        },
        Err(e) => tracing::error!("settings not reloaded: {e:#}"),
    }
}

/// Logs to stderr through a writer thread: the proxy's threads format a
/// line and queue it, the writer thread writes whatever has queued up in one
/// go (a `write` per burst, not per request). Colours only on a terminal.
fn init_logging(verbose: u8) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "gangway=info,gangway_engine=info,gangway_cli=info",
        1 => "gangway=debug,gangway_engine=debug,gangway_cli=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("GANGWAY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    // Not lossy: when stderr can't keep up, logging waits rather than
    // drops lines. The queue is allocated and touched whole at start:
    // 1,024 lines cost 32 KiB, the default 128,000 cost 4 MiB of RSS.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(1024)
        .lossy(false)
        .thread_name("gangway-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    guard
}
