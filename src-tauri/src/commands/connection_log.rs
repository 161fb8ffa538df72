//! The connection log window's commands: listen to the feed, stop
//! listening, and save an export. The window builds the export itself
//! (it holds the rows and the filter); the app only writes the file, where
//! the window cannot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::{AppHandle, Manager, Runtime, State};

use super::CommandError;
use crate::connection_log::LogBatch;
use crate::controller::Gangway;

/// What the window needs besides the feed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogWindowInfo {
    /// The rotating log file's directory, shown in the window.
    pub log_dir: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Json,
}

impl ExportFormat {
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        }
    }
}

/// Starts the feed: batches of rows and counters on `channel`, at most four
/// times a second and only when something changed, until the window closes or calls
/// [`unwatch_connection_log`].
#[tauri::command]
pub async fn watch_connection_log(
    ctl: State<'_, Arc<Gangway>>,
    channel: Channel<LogBatch>,
) -> Result<LogWindowInfo, CommandError> {
    ctl.watch_log(move |batch| channel.send(batch).map_err(|e| e.to_string()))
        .await;
    Ok(LogWindowInfo {
        log_dir: crate::log_dir().map(|d| d.display().to_string()),
    })
}

#[tauri::command]
pub async fn unwatch_connection_log(ctl: State<'_, Arc<Gangway>>) -> Result<(), CommandError> {
    ctl.unwatch_log().await;
    Ok(())
}

/// Writes an export the window built to the Downloads folder (or the
/// app's data folder when there is none) and returns its path.
/// `stamp` is the window's local time, e.g. `20261125-190102`.
#[tauri::command]
pub async fn export_connection_log<R: Runtime>(
    app: AppHandle<R>,
    format: ExportFormat,
    stamp: String,
    contents: String,
) -> Result<String, CommandError> {
    let dir = app
        .path()
        .download_dir()
        .ok()
        .filter(|d| d.is_dir())
        .or_else(|| app.path().app_data_dir().ok().map(|d| d.join("exports")))
        .ok_or_else(|| failed("there is no folder to save the export in"))?;
    let path = write_export(&dir, format, &stamp, &contents)?;
    Ok(path.display().to_string())
}

fn failed(message: impl Into<String>) -> CommandError {
    CommandError::Failed {
        message: message.into(),
    }
}

/// Writes `contents` to `dir/gangway-connections-<stamp>.<ext>`, never
/// over an existing file.
pub fn write_export(
    dir: &Path,
    format: ExportFormat,
    stamp: &str,
    contents: &str,
) -> Result<PathBuf, CommandError> {
    let stamp_ok = !stamp.is_empty()
        && stamp.len() <= 32
        && stamp.chars().all(|c| c.is_ascii_digit() || c == '-');
    if !stamp_ok {
        return Err(failed("the export's time stamp must be digits and dashes"));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    for n in 0..100u32 {
        let name = match n {
            0 => format!("gangway-connections-{stamp}.{}", format.extension()),
            n => format!("gangway-connections-{stamp}-{n}.{}", format.extension()),
        };
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        match file {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(contents.as_bytes())
                    .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(failed(format!("cannot write {}: {e}", path.display()))),
        }
    }
    Err(failed(format!(
        "too many exports named {stamp} in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_never_overwrite_and_refuse_odd_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write_export(dir.path(), ExportFormat::Csv, "20261125-190102", "a").expect("first");
        let b =
            write_export(dir.path(), ExportFormat::Csv, "20261125-190102", "b").expect("second");
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "a");
        assert_eq!(std::fs::read_to_string(&b).expect("read"), "b");
        assert!(b.to_string_lossy().ends_with("-1.csv"));
        assert!(write_export(dir.path(), ExportFormat::Json, "../../etc/x", "c").is_err());
        assert!(write_export(dir.path(), ExportFormat::Json, "", "c").is_err());
    }
}
