// Placeholder for the connection log window (a later issue): shows the
// bridge's status line so the window is not empty.
import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import type { AppStatus } from "./form";

function show(s: AppStatus) {
  const line = document.getElementById("statusLine");
  if (!line) return;
  line.textContent = s.line;
  line.className = `status ${s.health}`;
}

void invoke<AppStatus>("get_status").then(show);
void listen<AppStatus>("status", (ev) => show(ev.payload));
