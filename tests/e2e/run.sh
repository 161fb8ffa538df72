#!/usr/bin/env bash
# End-to-end test of the tray app with real parts: Xvfb, a private D-Bus
# session with a real gnome-keyring and dconf, a real Squid with Basic
# auth, tauri-driver + WebKitWebDriver driving the real window, and the
# tray menu clicked over dbusmenu. Run by `npm run e2e`; needs
# scripts/setup-app-deps. Artifacts (screenshot, logs) go to tests/artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

for tool in Xvfb xclip xwininfo dbus-run-session gnome-keyring-daemon secret-tool gsettings dconf squid htpasswd curl wrk WebKitWebDriver node /usr/bin/python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e: $tool is missing: run scripts/setup-app-deps" >&2; exit 1; }
done
TAURI_DRIVER="$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")"
[ -x "$TAURI_DRIVER" ] || { echo "e2e: tauri-driver is missing: run scripts/setup-app-deps" >&2; exit 1; }

echo "== e2e: building the UI and the app"
npm run --silent build:ui >/dev/null
# GANGWAY_E2E_RELEASE=1 tests the release build, as users run it (slow to
# build from cold on 2 cores; CI tests the debug build).
PROFILE=debug
if [ "${GANGWAY_E2E_RELEASE:-0}" = 1 ]; then PROFILE=release; fi
cargo build --locked --quiet -p gangway-app $([ "$PROFILE" = release ] && echo --release)
APP_TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
APP="$APP_TARGET/$PROFILE/gangway-app"
echo "== e2e: testing the $PROFILE build"

ART="$ROOT/tests/artifacts"
mkdir -p "$ART"
WORK="$(mktemp -d /tmp/gangway-e2e.XXXXXX)"
XVFB_PID=""
cleanup() {
  if [ -n "$XVFB_PID" ]; then kill "$XVFB_PID" 2>/dev/null || true; fi
  # Squid runs as the proxy user; its files are removed as root here.
  rm -rf "$WORK"
}
trap cleanup EXIT

# A display number nobody uses; Xvfb refuses a taken one.
for n in $(seq 90 120); do
  if [ ! -e "/tmp/.X$n-lock" ] && [ ! -e "/tmp/.X11-unix/X$n" ]; then DISPLAY_NUM=$n; break; fi
done
Xvfb ":$DISPLAY_NUM" -screen 0 1280x900x24 -nolisten tcp >"$ART/xvfb.log" 2>&1 &
XVFB_PID=$!
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$DISPLAY_NUM" ] && break; sleep 0.1; done

# Everything the bus starts on demand (dconf-service, gnome-keyring) gets
# the bus daemon's environment, so set it all before dbus-run-session.
# Traversable (not listable) for Squid, which runs as the proxy user.
chmod 711 "$WORK"
mkdir -p "$WORK"/{run,data,config,cache,home}
chmod 700 "$WORK/run"
export DISPLAY=":$DISPLAY_NUM"
export XDG_RUNTIME_DIR="$WORK/run" XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config" XDG_CACHE_HOME="$WORK/cache"
export HOME="$WORK/home"
export GSETTINGS_BACKEND=dconf XDG_CURRENT_DESKTOP=GNOME NO_AT_BRIDGE=1
export GANGWAY_E2E_WORK="$WORK" GANGWAY_E2E_APP="$APP" GANGWAY_E2E_ARTIFACTS="$ART" TAURI_DRIVER
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY all_proxy ALL_PROXY

dbus-run-session -- bash "$ROOT/tests/e2e/session.sh"
