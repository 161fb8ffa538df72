// Pure helpers for the settings page: no DOM, no Tauri, so they are unit
// tested with vitest. The shapes mirror src-tauri/src/commands.rs.

export type ProxyType = "none" | "basic" | "digest" | "ntlm" | "auto";
export type Storage = "keyring" | "session";

/** What `get_settings` returns: everything but the password. */
export interface SettingsView {
  proxyType: ProxyType;
  upstreamHost: string;
  upstreamPort: string;
  user: string;
  realm: string;
  passwordStored: Storage | null;
  keyringProblem: string | null;
  listenAddress: string;
  listenPort: string;
  bypass: string;
  startAtLogin: boolean;
  enableOnStart: boolean;
}

/** What `save_settings`, `check_settings` and `test_connection` take. */
export interface SettingsForm {
  proxyType: string;
  upstreamHost: string;
  upstreamPort: string;
  user: string;
  realm: string;
  /** Omitted when the field is empty: the stored password is kept. */
  password?: string;
  sessionOnly: boolean;
  listenAddress: string;
  listenPort: string;
  bypass: string;
  startAtLogin: boolean;
  enableOnStart: boolean;
}

export type Field =
  | "proxy_type"
  | "upstream_host"
  | "upstream_port"
  | "user"
  | "realm"
  | "password"
  | "listen_address"
  | "listen_port"
  | "bypass"
  | "form";

export type CommandError =
  | { kind: "invalid"; field: Field; message: string }
  | { kind: "keyring_unavailable"; message: string }
  | { kind: "failed"; message: string };

export type Health = "off" | "on" | "attention";

export interface AppStatus {
  enabled: boolean;
  health: Health;
  line: string;
  listen: string | null;
  notice: string | null;
}

export interface ProbeView {
  ok: boolean;
  verdict: string;
  text: string;
  offered: string[];
}

/** Field values as the page holds them (inputs give strings and booleans). */
export type Values = Record<string, string | boolean>;

const str = (v: Values, k: string): string => {
  const x = v[k];
  return typeof x === "string" ? x : "";
};
const bool = (v: Values, k: string): boolean => v[k] === true;

/** Builds the command argument from the page's values. */
export function toForm(v: Values): SettingsForm {
  const form: SettingsForm = {
    proxyType: str(v, "proxyType") || "none",
    upstreamHost: str(v, "upstreamHost").trim(),
    upstreamPort: str(v, "upstreamPort").trim(),
    user: str(v, "user").trim(),
    realm: str(v, "realm").trim(),
    sessionOnly: bool(v, "sessionOnly"),
    listenAddress: str(v, "listenAddress").trim(),
    listenPort: str(v, "listenPort").trim(),
    bypass: str(v, "bypass"),
    startAtLogin: bool(v, "startAtLogin"),
    enableOnStart: bool(v, "enableOnStart"),
  };
  // Never trimmed: spaces can be part of a password.
  const password = str(v, "password");
  if (password !== "") form.password = password;
  return form;
}

/** The page's values from a view; the password field always starts empty. */
export function fromView(view: SettingsView): Values {
  return {
    proxyType: view.proxyType,
    upstreamHost: view.upstreamHost,
    upstreamPort: view.upstreamPort,
    user: view.user,
    realm: view.realm,
    password: "",
    sessionOnly: view.passwordStored === "session",
    listenAddress: view.listenAddress,
    listenPort: view.listenPort,
    bypass: view.bypass,
    startAtLogin: view.startAtLogin,
    enableOnStart: view.enableOnStart,
  };
}

/** The words under the password field. */
export function passwordHint(stored: Storage | null, needsPassword: boolean): string {
  if (!needsPassword) return "Not needed without authentication.";
  switch (stored) {
    case "keyring":
      return "Stored in keyring. Leave empty to keep it, or type a new one.";
    case "session":
      return "Kept in memory for this session only. Leave empty to keep it.";
    default:
      return "No password stored for this user and proxy yet.";
  }
}

/** Whether the proxy type uses credentials at all. */
export function needsCredentials(proxyType: string): boolean {
  return proxyType !== "none" && proxyType !== "";
}

/** Where an error goes on the page and what it says. */
export function placeError(err: unknown): { field: Field; message: string; offerSession: boolean } {
  if (typeof err === "string") return { field: "form", message: err, offerSession: false };
  if (err && typeof err === "object" && "kind" in err) {
    const e = err as CommandError;
    switch (e.kind) {
      case "invalid":
        return { field: e.field, message: e.message, offerSession: false };
      case "keyring_unavailable":
        return { field: "password", message: e.message, offerSession: true };
      case "failed":
        return { field: "form", message: e.message, offerSession: false };
    }
  }
  return { field: "form", message: `Unexpected error: ${String(err)}`, offerSession: false };
}

/** The CSS class for a probe verdict. */
export function verdictClass(p: ProbeView): "good" | "bad" | "warn" {
  if (p.ok) return "good";
  return p.verdict === "unreachable" || p.verdict === "rejected" ? "bad" : "warn";
}
