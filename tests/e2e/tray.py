#!/usr/bin/python3
"""Stands in for a desktop's tray host, and clicks tray menu items.

On Linux, Tauri's tray is an AppIndicator: a StatusNotifierItem on the
session bus with a com.canonical.dbusmenu menu. With no tray host running
it registers with nobody, so this script owns org.kde.StatusNotifierWatcher
and records who registers. Then it reads and clicks the menu over D-Bus,
exactly as a panel would.

  tray.py watch FILE       serve the watcher, append registrations to FILE
  tray.py menu FILE        print the live item's menu as JSON
  tray.py click FILE LABEL click the item whose label is LABEL
  tray.py pid FILE         print the process id of the live item's owner

Run with Debian's /usr/bin/python3 (python3-gi), inside the test's bus.
"""

import json
import sys

from gi.repository import Gio, GLib

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_XML = """
<node>
  <interface name="org.kde.StatusNotifierWatcher">
    <method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
    <method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
    <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
    <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
    <property name="ProtocolVersion" type="i" access="read"/>
    <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
    <signal name="StatusNotifierHostRegistered"/>
  </interface>
</node>
"""
CALL_TIMEOUT_MS = 5000


def watch(record):
    items = []
    node = Gio.DBusNodeInfo.new_for_xml(WATCHER_XML)

    def on_call(conn, sender, path, iface, method, params, invocation):
        if method == "RegisterStatusNotifierItem":
            arg = params.unpack()[0]
            # AppIndicator passes its object path; others pass a bus name.
            service, obj = (sender, arg) if arg.startswith("/") else (arg, "/StatusNotifierItem")
            items.append(service + obj)
            with open(record, "a") as f:
                f.write(json.dumps({"service": service, "path": obj}) + "\n")
            conn.emit_signal(None, "/StatusNotifierWatcher", WATCHER,
                             "StatusNotifierItemRegistered",
                             GLib.Variant("(s)", (service + obj,)))
        invocation.return_value(None)

    def on_get(conn, sender, path, iface, prop):
        if prop == "RegisteredStatusNotifierItems":
            return GLib.Variant("as", items)
        if prop == "IsStatusNotifierHostRegistered":
            return GLib.Variant("b", True)
        return GLib.Variant("i", 0)

    def on_bus(conn, name):
        conn.register_object("/StatusNotifierWatcher", node.interfaces[0],
                             on_call, on_get, None)

    def on_name(conn, name):
        print("watcher ready", flush=True)

    def on_lost(conn, name):
        sys.exit("could not own " + WATCHER)

    Gio.bus_own_name(Gio.BusType.SESSION, WATCHER, Gio.BusNameOwnerFlags.NONE,
                     on_bus, on_name, on_lost)
    GLib.MainLoop().run()


def bus():
    return Gio.bus_get_sync(Gio.BusType.SESSION, None)


def call(conn, dest, path, iface, method, args, reply_type):
    return conn.call_sync(dest, path, iface, method, args,
                          GLib.VariantType.new(reply_type) if reply_type else None,
                          Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)


def live_item(conn, record):
    """The most recent registration whose owner is still on the bus."""
    try:
        with open(record) as f:
            regs = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        regs = []
    for reg in reversed(regs):
        owned = call(conn, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                     "org.freedesktop.DBus", "NameHasOwner",
                     GLib.Variant("(s)", (reg["service"],)), "(b)").unpack()[0]
        if owned:
            return reg
    sys.exit("no live tray item has registered")


def menu_path(conn, item):
    value = call(conn, item["service"], item["path"], "org.freedesktop.DBus.Properties",
                 "Get", GLib.Variant("(ss)", ("org.kde.StatusNotifierItem", "Menu")),
                 "(v)").unpack()[0]
    return value


def layout(conn, item):
    path = menu_path(conn, item)
    rev, root = call(conn, item["service"], path, "com.canonical.dbusmenu", "GetLayout",
                     GLib.Variant("(iias)", (0, -1, [])), "(u(ia{sv}av))").unpack()
    entries = []

    def walk(node):
        ident, props, children = node
        if ident != 0:
            entries.append({
                "id": ident,
                "label": props.get("label", ""),
                "type": props.get("type", "standard"),
                "enabled": props.get("enabled", True),
                "visible": props.get("visible", True),
                "toggle-type": props.get("toggle-type", ""),
                "toggle-state": props.get("toggle-state", -1),
            })
        for child in children:
            walk(child)

    walk(root)
    return path, entries


def click(conn, item, label):
    path, entries = layout(conn, item)
    matches = [e for e in entries if e["label"].replace("_", "") == label]
    if not matches:
        sys.exit("no menu item labelled %r; menu: %s" % (label, [e["label"] for e in entries]))
    call(conn, item["service"], path, "com.canonical.dbusmenu", "Event",
         GLib.Variant("(isvu)", (matches[0]["id"], "clicked", GLib.Variant("i", 0), 0)), None)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, record = sys.argv[1], sys.argv[2]
    if cmd == "watch":
        watch(record)
        return
    conn = bus()
    item = live_item(conn, record)
    if cmd == "menu":
        print(json.dumps(layout(conn, item)[1]))
    elif cmd == "click" and len(sys.argv) == 4:
        click(conn, item, sys.argv[3])
    elif cmd == "pid":
        pid = call(conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                   "GetConnectionUnixProcessID", GLib.Variant("(s)", (item["service"],)),
                   "(u)").unpack()[0]
        print(pid)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
