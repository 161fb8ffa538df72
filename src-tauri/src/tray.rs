//! The tray icon and its menu. On Linux the tray is an AppIndicator, which
//! delivers no clicks on the icon itself, so every action is a menu item.
//! Items are identified by [`TrayAction`]; ids are fixed names, never data.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

use crate::controller::{AppStatus, Health};

/// Everything the tray menu can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrayAction {
    ToggleBridging,
    Settings,
    ConnectionLog,
    CopyForTerminals,
    Quit,
}

impl TrayAction {
    pub const ALL: [TrayAction; 5] = [
        TrayAction::ToggleBridging,
        TrayAction::Settings,
        TrayAction::ConnectionLog,
        TrayAction::CopyForTerminals,
        TrayAction::Quit,
    ];

    /// The menu id: a fixed name per action.
    pub fn id(self) -> &'static str {
        match self {
            TrayAction::ToggleBridging => "toggle-bridging",
            TrayAction::Settings => "settings",
            TrayAction::ConnectionLog => "connection-log",
            TrayAction::CopyForTerminals => "copy-for-terminals",
            TrayAction::Quit => "quit",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    pub fn label(self) -> &'static str {
        match self {
            TrayAction::ToggleBridging => "Enable bridging",
            TrayAction::Settings => "Settings…",
            TrayAction::ConnectionLog => "Connection log…",
            TrayAction::CopyForTerminals => "Copy proxy settings for terminals",
            TrayAction::Quit => "Quit",
        }
    }
}

/// The id of the status line, which is not an action.
const STATUS_ID: &str = "status";

/// The parts of the tray that change with the status.
pub struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    toggle: CheckMenuItem<R>,
    status: MenuItem<R>,
}

fn icon_for(health: Health) -> tauri::Result<Image<'static>> {
    let bytes: &'static [u8] = match health {
        Health::Off => include_bytes!("../../icons/tray-off.png"),
        Health::On => include_bytes!("../../icons/tray-on.png"),
        Health::Attention => include_bytes!("../../icons/tray-attention.png"),
    };
    Image::from_bytes(bytes)
}

/// Builds the tray; `on_action` runs on the main thread for each click.
pub fn build<R: Runtime>(
    app: &AppHandle<R>,
    on_action: impl Fn(&AppHandle<R>, TrayAction) + Send + Sync + 'static,
) -> tauri::Result<Tray<R>> {
    let toggle = CheckMenuItem::with_id(
        app,
        TrayAction::ToggleBridging.id(),
        TrayAction::ToggleBridging.label(),
        true,
        false,
        None::<&str>,
    )?;
    let status = MenuItem::with_id(app, STATUS_ID, "Bridging is off", false, None::<&str>)?;
    let item = |a: TrayAction| MenuItem::with_id(app, a.id(), a.label(), true, None::<&str>);
    let (settings, log, copy, quit) = (
        item(TrayAction::Settings)?,
        item(TrayAction::ConnectionLog)?,
        item(TrayAction::CopyForTerminals)?,
        item(TrayAction::Quit)?,
    );
    let (sep1, sep2) = (
        PredefinedMenuItem::separator(app)?,
        PredefinedMenuItem::separator(app)?,
    );
    let items: [&dyn IsMenuItem<R>; 8] = [
        &toggle, &status, &sep1, &settings, &log, &copy, &sep2, &quit,
    ];
    let menu = Menu::with_items(app, &items)?;
    let icon = TrayIconBuilder::with_id("gangway")
        .icon(icon_for(Health::Off)?)
        .tooltip("Gangway")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(
            move |app, event| match TrayAction::from_id(event.id().as_ref()) {
                Some(action) => on_action(app, action),
                None => tracing::debug!("tray: ignoring menu id {:?}", event.id()),
            },
        )
        .build(app)?;
    Ok(Tray {
        icon,
        toggle,
        status,
    })
}

impl<R: Runtime> Tray<R> {
    /// Shows `status`: check mark, status line, icon and tooltip.
    pub fn show(&self, status: &AppStatus) {
        let results = [
            self.toggle.set_checked(status.enabled),
            self.status.set_text(&status.line),
            icon_for(status.health).and_then(|i| self.icon.set_icon(Some(i))),
            self.icon
                .set_tooltip(Some(format!("Gangway: {}", status.line))),
        ];
        for r in results {
            if let Err(e) = r {
                tracing::warn!("tray update failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for a in TrayAction::ALL {
            assert_eq!(TrayAction::from_id(a.id()), Some(a));
        }
        assert_eq!(TrayAction::from_id(STATUS_ID), None);
        assert_eq!(TrayAction::from_id("quit_now"), None);
    }
}
