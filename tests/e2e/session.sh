#!/usr/bin/env bash
# Inside the private D-Bus session (see run.sh): unlock a fresh
# gnome-keyring, stand in for the tray host, then run the driver.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$GANGWAY_E2E_WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# A newline is an empty login password: the login keyring is created and
# unlocked (an empty stdin creates none, and every store then fails).
printf '\n' | gnome-keyring-daemon --foreground --unlock --components=secrets >"$GANGWAY_E2E_ARTIFACTS/keyring.log" 2>&1 &
PIDS+=($!)

: >"$WORK/tray-items"
/usr/bin/python3 "$HERE/tray.py" watch "$WORK/tray-items" >"$GANGWAY_E2E_ARTIFACTS/tray-watcher.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q "watcher ready" "$GANGWAY_E2E_ARTIFACTS/tray-watcher.log" && break; sleep 0.1; done

node "$HERE/app.mjs"
