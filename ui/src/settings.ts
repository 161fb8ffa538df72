// The settings window: loads the settings (never the password), shows
// inline errors from the engine's validation, tests the connection, saves,
// and follows the bridge's status.

import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import {
  AppStatus,
  Field,
  ProbeView,
  SettingsView,
  Values,
  fromView,
  needsCredentials,
  passwordHint,
  placeError,
  toForm,
  verdictClass,
} from "./form";

const form = document.getElementById("settings") as HTMLFormElement;
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

let stored: SettingsView["passwordStored"] = null;
let status: AppStatus | null = null;

function values(): Values {
  const v: Values = {};
  for (const el of Array.from(form.elements)) {
    if (!(el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement)) continue;
    if (!el.name) continue;
    v[el.name] = el instanceof HTMLInputElement && el.type === "checkbox" ? el.checked : el.value;
  }
  return v;
}

function fill(v: Values) {
  for (const [name, value] of Object.entries(v)) {
    const el = form.elements.namedItem(name);
    if (el instanceof HTMLInputElement && el.type === "checkbox") el.checked = value === true;
    else if (el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement)
      el.value = String(value);
  }
}

function clearErrors() {
  document.querySelectorAll<HTMLElement>("[data-error-for]").forEach((p) => (p.textContent = ""));
  document.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
}

const fieldInput: Partial<Record<Field, string>> = {
  proxy_type: "proxyType",
  upstream_host: "upstreamHost",
  upstream_port: "upstreamPort",
  user: "user",
  realm: "realm",
  password: "password",
  listen_address: "listenAddress",
  listen_port: "listenPort",
  bypass: "bypass",
};

function showError(err: unknown) {
  const placed = placeError(err);
  const slot = document.querySelector<HTMLElement>(`[data-error-for="${placed.field}"]`);
  if (slot) slot.textContent = placed.message;
  const input = fieldInput[placed.field];
  if (input) $(input).classList.add("invalid");
  if (placed.offerSession) $("sessionOnlyRow").hidden = false;
}

function refreshCredentialFields() {
  const type = ($("proxyType") as HTMLSelectElement).value;
  const needs = needsCredentials(type);
  document.querySelectorAll<HTMLElement>(".creds").forEach((el) => el.classList.toggle("disabled", !needs));
  for (const id of ["user", "realm", "password"]) ($(id) as HTMLInputElement).disabled = !needs;
  $("passwordHint").textContent = passwordHint(stored, needs);
  ($("password") as HTMLInputElement).placeholder = stored === "keyring" ? "stored in keyring" : stored === "session" ? "kept for this session" : "";
}

function showStatus(s: AppStatus) {
  status = s;
  const line = $("statusLine");
  line.textContent = s.line;
  line.className = `status ${s.health}`;
  const toggle = $("toggle") as HTMLButtonElement;
  toggle.textContent = s.enabled ? "Disable bridging" : "Enable bridging";
  toggle.classList.toggle("on", s.enabled);
  const notice = $("notice");
  notice.hidden = !s.notice;
  notice.textContent = s.notice ?? "";
}

async function load() {
  try {
    const view = await invoke<SettingsView>("get_settings");
    stored = view.passwordStored;
    fill(fromView(view));
    if (view.keyringProblem) {
      showError({ kind: "keyring_unavailable", message: view.keyringProblem });
    }
  } catch (e) {
    showError(e);
  }
  refreshCredentialFields();
  showStatus(await invoke<AppStatus>("get_status"));
}

// Inline validation: the engine's own check, shortly after typing stops.
let checkTimer: number | undefined;
function scheduleCheck() {
  window.clearTimeout(checkTimer);
  checkTimer = window.setTimeout(async () => {
    try {
      await invoke("check_settings", { form: toForm(values()) });
      clearErrors();
    } catch (e) {
      clearErrors();
      // A missing keyring is shown on save, not while typing.
      if (placeError(e).offerSession) return;
      showError(e);
    }
  }, 400);
}

form.addEventListener("input", (ev) => {
  if ((ev.target as HTMLElement).id === "proxyType") refreshCredentialFields();
  $("saveResult").textContent = "";
  scheduleCheck();
});
$("proxyType").addEventListener("change", refreshCredentialFields);

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  window.clearTimeout(checkTimer);
  clearErrors();
  const button = $("save") as HTMLButtonElement;
  button.disabled = true;
  $("saveResult").textContent = "Saving…";
  try {
    const reply = await invoke<{
      settings: SettingsView;
      applied: boolean;
      autostartProblem: string | null;
      status: AppStatus;
    }>("save_settings", { form: toForm(values()) });
    stored = reply.settings.passwordStored;
    ($("password") as HTMLInputElement).value = "";
    refreshCredentialFields();
    showStatus(reply.status);
    let text = reply.applied ? "Saved and applied to the running bridge." : "Saved.";
    if (reply.autostartProblem) text += ` ${reply.autostartProblem}`;
    $("saveResult").textContent = text;
  } catch (e) {
    $("saveResult").textContent = "";
    showError(e);
  } finally {
    button.disabled = false;
  }
});

$("test").addEventListener("click", async () => {
  const out = $("testResult");
  const button = $("test") as HTMLButtonElement;
  button.disabled = true;
  out.className = "result";
  out.textContent = "Testing… (one attempt with these credentials)";
  try {
    const probe = await invoke<ProbeView>("test_connection", { form: toForm(values()) });
    out.textContent = probe.text;
    out.className = `result ${verdictClass(probe)}`;
  } catch (e) {
    out.textContent = "";
    showError(e);
  } finally {
    button.disabled = false;
  }
});

$("toggle").addEventListener("click", async () => {
  clearErrors();
  try {
    showStatus(await invoke<AppStatus>("set_bridging", { enabled: !(status?.enabled ?? false) }));
  } catch (e) {
    showError(e);
  }
});

void listen<AppStatus>("status", (ev) => showStatus(ev.payload));
void load();
