//! Tauri commands: they translate the settings window's form into
//! controller calls and controller results into what the page shows.
//! Nothing here decides anything.
//!
//! The password travels one way only: in with a save or a test, never out.
//! The page learns where it is stored, not what it is.

use std::sync::Arc;

use gangway_engine::probe::{ProbeReport, Verdict};
use gangway_engine::{Password, ProxyType, SettingsError};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Runtime, State};

use crate::controller::{AppError, AppStatus, Gangway, PasswordChange};
use crate::secrets::{SecretsError, Storage};
use crate::settings_store::{AppSettings, DEFAULT_UPSTREAM_PORT};

/// A form field, so the page can put an error beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    ProxyType,
    UpstreamHost,
    UpstreamPort,
    User,
    Realm,
    Password,
    ListenAddress,
    ListenPort,
    Bypass,
    /// Not about one field.
    Form,
}

/// What the page shows when a command fails; `message` is always words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandError {
    #[error("{message}")]
    Invalid { field: Field, message: String },
    /// No Secret Service / Credential Manager: the page offers "keep for
    /// this session only".
    #[error("{message}")]
    KeyringUnavailable { message: String },
    #[error("{message}")]
    Failed { message: String },
}

impl CommandError {
    fn invalid(field: Field, message: impl Into<String>) -> Self {
        CommandError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<AppError> for CommandError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid(e) => settings_error(e),
            AppError::Secrets(SecretsError::Unavailable(_)) => CommandError::KeyringUnavailable {
                message: e.to_string(),
            },
            AppError::NoUpstream => CommandError::invalid(Field::UpstreamHost, e.to_string()),
            other => CommandError::Failed {
                message: other.to_string(),
            },
        }
    }
}

/// Puts the engine's validation error beside the field it is about, in
/// the window's words rather than the CLI's flags where they differ.
fn settings_error(e: SettingsError) -> CommandError {
    use SettingsError as E;
    let (field, message) = match &e {
        E::ListenAddress(_) | E::NeedsGateway(_) => (Field::ListenAddress, e.to_string()),
        E::Bypass(_) => (Field::Bypass, e.to_string()),
        E::ProxyType(_) => (Field::ProxyType, e.to_string()),
        E::ProxyUrl(_, why) => (Field::UpstreamHost, format!("upstream proxy: {why}")),
        E::TypeWithoutProxy(t) => (
            Field::UpstreamHost,
            format!("{} authentication needs an upstream proxy host", t.as_str()),
        ),
        E::MissingUser(t) => (
            Field::User,
            format!("{} authentication needs a user name", t.as_str()),
        ),
        E::MissingPassword => (
            Field::Password,
            "enter the password: none is stored for this user and upstream".into(),
        ),
        _ => (Field::Form, e.to_string()),
    };
    CommandError::Invalid { field, message }
}

/// The settings as the page edits them. Ports are strings so that a typo
/// gets a message beside the field instead of a deserialization error.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SettingsForm {
    /// `none`, `basic`, `digest`, `ntlm` or `auto`.
    pub proxy_type: String,
    pub upstream_host: String,
    pub upstream_port: String,
    pub user: String,
    pub realm: String,
    /// Empty or absent: keep the stored password.
    pub password: Option<String>,
    /// The user chose "keep for this session only" (no keyring).
    pub session_only: bool,
    pub listen_address: String,
    pub listen_port: String,
    /// Comma-, space- or newline-separated.
    pub bypass: String,
    pub start_at_login: bool,
    pub enable_on_start: bool,
}

impl SettingsForm {
    pub fn parse(self) -> Result<(AppSettings, PasswordChange), CommandError> {
        let proxy_type: ProxyType = self
            .proxy_type
            .parse()
            .map_err(|e: SettingsError| CommandError::invalid(Field::ProxyType, e.to_string()))?;
        let port = |s: &str, field, default: u16| match s.trim() {
            "" => Ok(default),
            t => t.parse::<u16>().map_err(|_| {
                CommandError::invalid(field, format!("`{t}` is not a port number (0–65535)"))
            }),
        };
        let settings = AppSettings {
            proxy_type,
            upstream_host: self.upstream_host.trim().to_owned(),
            upstream_port: port(
                &self.upstream_port,
                Field::UpstreamPort,
                DEFAULT_UPSTREAM_PORT,
            )?,
            user: self.user.trim().to_owned(),
            realm: self.realm.trim().to_owned(),
            listen_address: self.listen_address.trim().to_owned(),
            listen_port: port(
                &self.listen_port,
                Field::ListenPort,
                gangway_engine::settings::DEFAULT_PORT,
            )?,
            bypass: self
                .bypass
                .split([',', ' ', '\n', '\r', '\t', ';'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            start_at_login: self.start_at_login,
            enable_on_start: self.enable_on_start,
        };
        let password = match self.password {
            Some(p) if !p.is_empty() => PasswordChange::Set {
                password: Password::new(p),
                session_only: self.session_only,
            },
            _ => PasswordChange::Keep,
        };
        Ok((settings, password))
    }
}

/// The settings as the page shows them: everything but the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    pub proxy_type: String,
    pub upstream_host: String,
    pub upstream_port: String,
    pub user: String,
    pub realm: String,
    /// Where the password for this user and upstream is kept, if anywhere.
    pub password_stored: Option<Storage>,
    /// Why the keyring could not be asked, in words.
    pub keyring_problem: Option<String>,
    pub listen_address: String,
    pub listen_port: String,
    pub bypass: String,
    pub start_at_login: bool,
    pub enable_on_start: bool,
}

fn view(s: AppSettings, stored: Option<Storage>, problem: Option<SecretsError>) -> SettingsView {
    SettingsView {
        proxy_type: match s.proxy_type {
            ProxyType::Noauth => "none".into(),
            other => other.as_str().into(),
        },
        upstream_host: s.upstream_host,
        upstream_port: s.upstream_port.to_string(),
        user: s.user,
        realm: s.realm,
        password_stored: stored,
        keyring_problem: problem.map(|e| e.to_string()),
        listen_address: s.listen_address,
        listen_port: s.listen_port.to_string(),
        bypass: s.bypass.join(", "),
        start_at_login: s.start_at_login,
        enable_on_start: s.enable_on_start,
    }
}

type Ctl<'a> = State<'a, Arc<Gangway>>;

#[tauri::command]
pub async fn get_settings(ctl: Ctl<'_>) -> Result<SettingsView, CommandError> {
    let settings = ctl.settings().map_err(AppError::from)?;
    let (stored, problem) = ctl.password_storage(&settings).await;
    Ok(view(settings, stored, problem))
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveReply {
    pub settings: SettingsView,
    /// True when the running bridge took the new settings.
    pub applied: bool,
    /// "Start at login" could not be changed, in words.
    pub autostart_problem: Option<String>,
    pub status: AppStatus,
}

#[tauri::command]
pub async fn save_settings<R: Runtime>(
    app: AppHandle<R>,
    ctl: Ctl<'_>,
    form: SettingsForm,
) -> Result<SaveReply, CommandError> {
    let (settings, password) = form.parse()?;
    let start_at_login = settings.start_at_login;
    let outcome = ctl.save(settings.clone(), password).await?;
    Ok(SaveReply {
        settings: view(settings, outcome.password, None),
        applied: outcome.applied,
        autostart_problem: crate::set_autostart(&app, start_at_login).err(),
        status: ctl.status(),
    })
}

/// Checks the form as a save would, for inline errors before saving.
#[tauri::command]
pub async fn check_settings(ctl: Ctl<'_>, form: SettingsForm) -> Result<(), CommandError> {
    let (settings, password) = form.parse()?;
    let new = match &password {
        PasswordChange::Set { password, .. } => Some(password),
        PasswordChange::Keep => None,
    };
    Ok(ctl.check(&settings, new).await?)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeView {
    pub ok: bool,
    /// `accepted`, `rejected`, `unreachable`, … for styling.
    pub verdict: &'static str,
    /// The whole verdict in words.
    pub text: String,
    pub offered: Vec<String>,
}

impl From<ProbeReport> for ProbeView {
    fn from(r: ProbeReport) -> Self {
        let verdict = match r.verdict {
            Verdict::NoAuthNeeded => "no_auth_needed",
            Verdict::Accepted { .. } => "accepted",
            Verdict::Rejected { .. } => "rejected",
            Verdict::NeedsCredentials => "needs_credentials",
            Verdict::Unsupported => "unsupported",
            Verdict::Unreachable { .. } => "unreachable",
            Verdict::Failed { .. } => "failed",
        };
        ProbeView {
            ok: r.ok(),
            verdict,
            text: r.to_string(),
            offered: r.offered,
        }
    }
}

/// "Test connection": the engine's probe with the entered settings and the
/// entered (or stored) password. One authenticated attempt at most.
#[tauri::command]
pub async fn test_connection(ctl: Ctl<'_>, form: SettingsForm) -> Result<ProbeView, CommandError> {
    let (settings, password) = form.parse()?;
    let new = match &password {
        PasswordChange::Set { password, .. } => Some(password),
        PasswordChange::Keep => None,
    };
    Ok(ctl.test_connection(&settings, new).await?.into())
}

#[tauri::command]
pub fn get_status(ctl: Ctl<'_>) -> AppStatus {
    ctl.status()
}

#[tauri::command]
pub async fn set_bridging(ctl: Ctl<'_>, enabled: bool) -> Result<AppStatus, CommandError> {
    let result = if enabled {
        ctl.enable().await
    } else {
        ctl.disable().await
    };
    Ok(result?)
}

#[tauri::command]
pub async fn retry_credentials(ctl: Ctl<'_>) -> Result<AppStatus, CommandError> {
    ctl.retry_credentials().await;
    Ok(ctl.status())
}

pub mod connection_log;

#[cfg(test)]
mod tests;
