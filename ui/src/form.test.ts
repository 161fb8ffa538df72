import { describe, expect, it } from "vitest";
import { fromView, passwordHint, placeError, toForm, verdictClass, type SettingsView } from "./form";

const view: SettingsView = {
  proxyType: "basic",
  upstreamHost: "proxy.corp",
  upstreamPort: "8080",
  user: "bob",
  realm: "",
  passwordStored: "keyring",
  keyringProblem: null,
  listenAddress: "127.0.0.1",
  listenPort: "3128",
  bypass: "localhost, 127.0.0.0/8",
  startAtLogin: false,
  enableOnStart: true,
};

describe("form values", () => {
  it("never carries a password back from the app", () => {
    expect(fromView(view).password).toBe("");
  });

  it("omits an empty password so the stored one is kept", () => {
    const form = toForm(fromView(view));
    expect("password" in form).toBe(false);
    expect(form.enableOnStart).toBe(true);
    expect(form.upstreamHost).toBe("proxy.corp");
  });

  it("sends a typed password untrimmed", () => {
    const form = toForm({ ...fromView(view), password: " pw " });
    expect(form.password).toBe(" pw ");
  });
});

describe("messages", () => {
  it("says where the password is", () => {
    expect(passwordHint("keyring", true)).toMatch(/Stored in keyring/);
    expect(passwordHint("session", true)).toMatch(/session only/);
    expect(passwordHint(null, true)).toMatch(/No password stored/);
    expect(passwordHint("keyring", false)).toMatch(/Not needed/);
  });

  it("puts errors beside their field and offers session storage without a keyring", () => {
    expect(placeError({ kind: "invalid", field: "user", message: "needs a user" })).toEqual({
      field: "user",
      message: "needs a user",
      offerSession: false,
    });
    expect(placeError({ kind: "keyring_unavailable", message: "no keyring" }).offerSession).toBe(true);
    expect(placeError("boom").field).toBe("form");
  });

  it("colours probe verdicts", () => {
    expect(verdictClass({ ok: true, verdict: "accepted", text: "", offered: [] })).toBe("good");
    expect(verdictClass({ ok: false, verdict: "rejected", text: "", offered: [] })).toBe("bad");
    expect(verdictClass({ ok: false, verdict: "unsupported", text: "", offered: [] })).toBe("warn");
  });
});
