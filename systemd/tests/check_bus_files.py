#!/usr/bin/env python3
"""Checks of the non-unit files in systemd/, run by scripts/check-units.sh.

  check_bus_files.py lint RENDERED
      Static checks of a rendered copy of systemd/: XML well-formed, polkit actions complete,
      D-Bus activation files consistent with the units and users they name, units consistent
      with sysusers.d, no placeholder left.
  check_bus_files.py tmpfiles CONF SYSROOT
      After `systemd-tmpfiles --root=SYSROOT --create CONF`: every `d` (`f`) line made a
      directory (file) with its mode and owner (names resolved through SYSROOT/etc/passwd and group).
  check_bus_files.py bus RENDERED WORKDIR
      Starts a system-bus-style dbus-daemon with the bus policy and the activation files and
      checks, from connections of the real users, who may own and who may call each name,
      that Agent1's unicast signals reach the gateway, and that every name is activatable; then
      a session-style daemon with the --user activation files. Needs root and the users to
      resolve (check-units.sh runs it in a mount namespace over a passwd/group that
      systemd-sysusers filled from sysusers.d/talaria.conf plus two test users).

Python standard library only: the bus client below speaks just enough of the D-Bus wire
protocol (EXTERNAL auth, method calls, signals, replies; basic types) for these checks.
"""

import configparser
import json
import os
import re
import select
import socket
import stat
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

NAMES = ["org.talaria.Agent1", "org.talaria.Executor1", "org.talaria.Gateway1", "org.talaria.Scheduler1"]

# The contract the bus policy must implement (org.talaria.conf says the same in words).
# Test-only users: ADMIN is a member of talaria-admins, OTHER of nothing.
ADMIN = "talaria-check-admin"
OTHER = "talaria-check-other"
MAY_OWN = {
    "root": set(NAMES),
    "talaria": {"org.talaria.Agent1", "org.talaria.Executor1"},
    "talaria-gateway": {"org.talaria.Gateway1"},
    "talaria-scheduler": {"org.talaria.Scheduler1"},
    ADMIN: set(),
    OTHER: set(),
}
MAY_CALL = {
    "org.talaria.Agent1": {"root", "talaria", "talaria-gateway", "talaria-scheduler"},
    "org.talaria.Executor1": {"root", "talaria"},
    "org.talaria.Gateway1": {"root", "talaria", "talaria-scheduler"},
    "org.talaria.Scheduler1": {"root", "talaria", ADMIN},
}
OWNER = {
    "org.talaria.Agent1": "talaria",
    "org.talaria.Executor1": "talaria",
    "org.talaria.Gateway1": "talaria-gateway",
    "org.talaria.Scheduler1": "talaria-scheduler",
}
# A name nobody but root may take, so a squatter cannot pose as a future service.
SQUAT = "org.talaria.Squatter1"

# The default policy of dbus's own system.conf (1.14), which every system bus starts from.
SYSTEM_DEFAULT_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
"""

# dbus-daemon lines that are not complaints about the files under test: this machine's limits,
# and the log of the denials the check provokes on purpose.
NOT_COMPLAINTS = re.compile(r"Failed to set fd limit|Rejected (send|receive) message|is not allowed to own the service")


class CheckFailed(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# A minimal D-Bus client (little-endian, basic types only).

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
F_PATH, F_INTERFACE, F_MEMBER, F_ERROR_NAME, F_REPLY_SERIAL, F_DESTINATION, F_SENDER, F_SIGNATURE = range(1, 9)
FIELD_SIG = {F_PATH: "o", F_INTERFACE: "s", F_MEMBER: "s", F_ERROR_NAME: "s", F_REPLY_SERIAL: "u",
             F_DESTINATION: "s", F_SENDER: "s", F_SIGNATURE: "g"}


class Writer:
    def __init__(self):
        self.buf = bytearray()

    def align(self, n):
        self.buf += b"\0" * (-len(self.buf) % n)

    def put(self, sig, value):
        if sig == "y":
            self.buf += struct.pack("<B", value)
        elif sig in "ub":
            self.align(4)
            self.buf += struct.pack("<I", int(value))
        elif sig in "so":
            data = value.encode()
            self.align(4)
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
        elif sig == "g":
            data = value.encode()
            self.buf += struct.pack("<B", len(data)) + data + b"\0"
        else:
            raise ValueError(f"unsupported type {sig}")


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def align(self, n):
        self.pos += -self.pos % n

    def get(self, sig):
        if sig == "y":
            self.pos += 1
            return self.data[self.pos - 1]
        if sig in "ub":
            self.align(4)
            (v,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            return bool(v) if sig == "b" else v
        if sig in "so":
            self.align(4)
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            v = self.data[self.pos + 4:self.pos + 4 + n].decode()
            self.pos += 4 + n + 1
            return v
        if sig == "g":
            n = self.data[self.pos]
            v = self.data[self.pos + 1:self.pos + 1 + n].decode()
            self.pos += 1 + n + 1
            return v
        if sig == "as":
            self.align(4)
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            end, out = self.pos + n, []
            while self.pos < end:
                out.append(self.get("s"))
            return out
        raise ValueError(f"unsupported type {sig}")


def split_signature(sig):
    out, i = [], 0
    while i < len(sig):
        if sig[i] == "a":
            out.append(sig[i:i + 2])
            i += 2
        else:
            out.append(sig[i])
            i += 1
    return out


class Message:
    def __init__(self, kind, flags, serial, fields, body):
        self.kind, self.flags, self.serial, self.fields, self.body = kind, flags, serial, fields, body

    def __getattr__(self, name):
        codes = {"path": F_PATH, "interface": F_INTERFACE, "member": F_MEMBER, "error_name": F_ERROR_NAME,
                 "reply_serial": F_REPLY_SERIAL, "destination": F_DESTINATION, "sender": F_SENDER,
                 "signature": F_SIGNATURE}
        if name in codes:
            return self.fields.get(codes[name])
        raise AttributeError(name)


class Bus:
    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        uid = str(os.geteuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise CheckFailed("the bus closed the connection during authentication")
            line += chunk
        if not line.startswith(b"OK "):
            raise CheckFailed(f"the bus refused EXTERNAL authentication: {line!r}")
        self.sock.sendall(b"BEGIN\r\n")
        self.sock.settimeout(None)
        self.buf = b""
        self.serial = 0
        self.queue = []
        self.unique_name = self.call_ok("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "Hello")[0]

    def send(self, kind, fields, sig="", args=(), flags=0):
        self.serial += 1
        body = Writer()
        for s, a in zip(split_signature(sig), args):
            body.put(s, a)
        if sig:
            fields = {**fields, F_SIGNATURE: sig}
        head = Writer()
        head.buf += struct.pack("<cBBBII", b"l", kind, flags, 1, len(body.buf), self.serial)
        head.align(4)
        start = len(head.buf)
        head.buf += b"\0\0\0\0"
        head.align(8)
        first = len(head.buf)
        for code, value in fields.items():
            head.align(8)
            head.put("y", code)
            head.put("g", FIELD_SIG[code])
            head.put(FIELD_SIG[code], value)
        struct.pack_into("<I", head.buf, start, len(head.buf) - first)
        head.align(8)
        self.sock.sendall(bytes(head.buf) + bytes(body.buf))
        return self.serial

    def _read_message(self, deadline):
        while True:
            if len(self.buf) >= 16:
                if self.buf[0:1] != b"l":
                    raise CheckFailed("big-endian messages are not supported by this checker")
                body_len, _, fields_len = struct.unpack_from("<III", self.buf, 4)
                header_len = 16 + fields_len + (-(16 + fields_len) % 8)
                if len(self.buf) >= header_len + body_len:
                    data, self.buf = self.buf[:header_len + body_len], self.buf[header_len + body_len:]
                    return self._parse(data, header_len)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CheckFailed("the bus closed the connection")
            self.buf += chunk

    @staticmethod
    def _parse(data, header_len):
        kind, flags = data[1], data[2]
        (serial,) = struct.unpack_from("<I", data, 8)
        r = Reader(data, 12)
        (fields_len,) = struct.unpack_from("<I", data, 12)
        r.pos = 16
        fields = {}
        while r.pos < 16 + fields_len:
            r.align(8)
            code = r.get("y")
            sig = r.get("g")
            fields[code] = r.get(sig)
        body, sig = [], fields.get(F_SIGNATURE, "")
        r = Reader(data, header_len)
        for s in split_signature(sig):
            if s in ("y", "u", "b", "s", "o", "g", "as"):
                body.append(r.get(s))
            else:
                break
        return Message(kind, flags, serial, fields, body)

    def receive(self, timeout):
        if self.queue:
            return self.queue.pop(0)
        return self._read_message(time.monotonic() + timeout)

    def call(self, dest, path, iface, member, sig="", args=(), timeout=5.0):
        """Returns the reply message (METHOD_RETURN or ERROR), or None on timeout."""
        fields = {F_PATH: path, F_MEMBER: member, F_DESTINATION: dest}
        if iface:
            fields[F_INTERFACE] = iface
        serial = self.send(METHOD_CALL, fields, sig, args)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                return None
            if msg.kind in (METHOD_RETURN, ERROR) and msg.reply_serial == serial:
                return msg
            self.queue.append(msg)

    def call_ok(self, *args, **kwargs):
        reply = self.call(*args, **kwargs)
        if reply is None:
            raise CheckFailed(f"no reply to {args[3]}")
        if reply.kind == ERROR:
            raise CheckFailed(f"{args[3]} failed: {reply.error_name}: {reply.body}")
        return reply.body

    def request_name(self, name):
        """1 (primary owner), 3 (exists), or the error name."""
        reply = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                          "RequestName", "su", (name, 4))
        if reply is None:
            raise CheckFailed(f"no reply to RequestName({name})")
        return reply.error_name if reply.kind == ERROR else reply.body[0]


# ---------------------------------------------------------------------------------------------
# Roles run as the test users (this file re-executed through subprocess with user=/group=).

def role_owner(address_path, names):
    """Owns `names`, answers every call with an empty reply, and answers `EmitTurnEvent` by
    also sending a TurnEvent signal to the caller only, as Agent1 does."""
    bus = Bus(address_path)
    for name in names:
        got = bus.request_name(name)
        if got != 1:
            print(json.dumps({"error": f"cannot own {name}: {got}"}), flush=True)
            return 1
    print(json.dumps({"ready": bus.unique_name}), flush=True)
    while True:
        msg = bus.receive(3600)
        if msg is None or msg.kind != METHOD_CALL:
            continue
        if not msg.flags & NO_REPLY_EXPECTED:
            bus.send(METHOD_RETURN, {F_REPLY_SERIAL: msg.serial, F_DESTINATION: msg.sender})
        if msg.member == "EmitTurnEvent":
            bus.send(SIGNAL, {F_PATH: "/org/talaria/Agent1", F_INTERFACE: "org.talaria.Agent1",
                              F_MEMBER: "TurnEvent", F_DESTINATION: msg.sender},
                     "sss", ("turn-1", "done", "{}"))


def role_client(address_path, plan):
    """Runs `plan` (a JSON list of operations) and prints what happened to each."""
    results = []
    for op in json.loads(plan):
        bus = Bus(address_path)
        if op["op"] == "own":
            got = bus.request_name(op["name"])
            results.append("allowed" if got == 1 else "denied" if got == "org.freedesktop.DBus.Error.AccessDenied"
                           else f"unexpected: {got}")
        elif op["op"] == "call":
            reply = bus.call(op["name"], op["path"], op["name"], "Ping", timeout=5.0)
            if reply is None:
                results.append("unexpected: no reply within 5 s")
            elif reply.kind == METHOD_RETURN:
                results.append("allowed")
            elif reply.error_name == "org.freedesktop.DBus.Error.AccessDenied":
                results.append("denied")
            else:
                results.append(f"unexpected: {reply.error_name} {reply.body}")
        elif op["op"] == "turn-event":
            reply = bus.call(op["name"], op["path"], op["name"], "EmitTurnEvent")
            if reply is None or reply.kind != METHOD_RETURN:
                results.append(f"unexpected: EmitTurnEvent failed: {reply and reply.error_name}")
            else:
                deadline, got = time.monotonic() + 3.0, None
                while got is None and time.monotonic() < deadline:
                    msg = bus.receive(max(0.0, deadline - time.monotonic()))
                    if msg is None:
                        break
                    if msg.kind == SIGNAL and msg.member == "TurnEvent":
                        got = msg
                results.append("received" if got else "lost")
        bus.sock.close()
    print(json.dumps(results), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Orchestration (as root).

def read_db(path):
    """name -> list of ':'-separated fields from a passwd or group file."""
    with open(path, encoding="utf-8") as f:
        return {line.split(":")[0]: line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")}


class Identities:
    def __init__(self, passwd="/etc/passwd", group="/etc/group"):
        self.passwd, self.group = read_db(passwd), read_db(group)

    def popen_args(self, user):
        entry = self.passwd.get(user)
        if entry is None:
            raise CheckFailed(f"user {user} does not exist (sysusers.d should have created it)")
        uid, gid = int(entry[2]), int(entry[3])
        extra = [int(g[2]) for g in self.group.values() if len(g) > 3 and user in g[3].split(",")]
        return {"user": uid, "group": gid, "extra_groups": extra}


def spawn_role(ids, user, *args):
    kwargs = {} if user == "root" else ids.popen_args(user)
    return subprocess.Popen([sys.executable, SELF, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/", **kwargs)


def start_daemon(config_path):
    """Starts dbus-daemon; its log goes to a file next to the config, so the denials it logs
    while the checks run can never fill a pipe and stall it."""
    log_path = config_path + ".log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["dbus-daemon", f"--config-file={config_path}", "--nofork", "--nopidfile",
                                 "--print-address=1"], stdout=subprocess.PIPE, stderr=log, text=True)
    proc.log_path = log_path
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("unix:"):
        proc.kill()
        proc.wait()
        raise CheckFailed(f"dbus-daemon refused the configuration:\n{read_log(proc).strip()}")
    return proc


def read_log(proc):
    with open(proc.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def stop_daemon(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    complaints = [l for l in read_log(proc).splitlines() if l.strip() and not NOT_COMPLAINTS.search(l)]
    if complaints:
        raise CheckFailed("dbus-daemon complained about the configuration:\n  " + "\n  ".join(complaints))


def activatable(socket_path):
    bus = Bus(socket_path)
    names = bus.call_ok("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                        "ListActivatableNames")[0]
    bus.sock.close()
    return set(names)


def check_bus(rendered, work):
    ids = Identities()
    failures = []
    os.chmod(work, 0o755)
    system_socket = os.path.join(work, "system_bus_socket")
    config = os.path.join(work, "system.conf")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"""<busconfig>
  <type>system</type>
  <listen>unix:path={system_socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{rendered}/dbus/system-services</servicedir>
{SYSTEM_DEFAULT_POLICY}
  <includedir>{rendered}/dbus/system.d</includedir>
</busconfig>
""")
    daemon = start_daemon(config)
    owners = []
    try:
        missing = set(NAMES) - activatable(system_socket)
        if missing:
            failures.append(f"system bus: not activatable from system-services/: {sorted(missing)}")

        # Ownership first, while the names are free.
        for user, allowed in MAY_OWN.items():
            plan = [{"op": "own", "name": n} for n in NAMES + [SQUAT]]
            want = ["allowed" if n in allowed or (user == "root" and n == SQUAT) else "denied" for n in NAMES + [SQUAT]]
            got = run_client(ids, user, system_socket, plan)
            for op, w, g in zip(plan, want, got):
                report(failures, f"{user} owns {op['name']}", w, g)

        # The real owners take their names, one connection each as in production (a policy
        # rule for a name covers every message to the connection that owns it, so one
        # connection owning Agent1 and Executor1 would let Agent1's callers reach Executor1);
        # then everyone calls everyone.
        for name, user in OWNER.items():
            names = [name]
            proc = spawn_role(ids, user, "owner", system_socket, *names)
            owners.append(proc)
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            line = proc.stdout.readline() if ready else ""
            if '"ready"' not in line:
                raise CheckFailed(f"{user} could not take {names}: {line.strip() or proc.stderr.read()}")
        for user in MAY_OWN:
            plan = [{"op": "call", "name": n, "path": "/" + n.replace(".", "/")} for n in NAMES]
            got = run_client(ids, user, system_socket, plan)
            for op, g in zip(plan, got):
                report(failures, f"{user} calls {op['name']}", "allowed" if user in MAY_CALL[op["name"]] else "denied", g)

        # Agent1's progress signals reach the connections that submitted turns.
        for user in ("talaria-gateway", "talaria-scheduler"):
            got = run_client(ids, user, system_socket,
                             [{"op": "turn-event", "name": "org.talaria.Agent1", "path": "/org/talaria/Agent1"}])
            report(failures, f"{user} receives Agent1's unicast TurnEvent", "received", got[0])
    finally:
        for proc in owners:
            proc.kill()
            proc.wait()
        stop_daemon(daemon)

    session_socket = os.path.join(work, "session_bus_socket")
    config = os.path.join(work, "session.conf")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"""<busconfig>
  <type>session</type>
  <listen>unix:path={session_socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{rendered}/dbus/services</servicedir>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>
""")
    daemon = start_daemon(config)
    try:
        missing = set(NAMES) - activatable(session_socket)
        if missing:
            failures.append(f"session bus: not activatable from services/: {sorted(missing)}")
    finally:
        stop_daemon(daemon)
    return failures


def run_client(ids, user, socket_path, plan):
    proc = spawn_role(ids, user, "client", socket_path, json.dumps(plan))
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise CheckFailed(f"the client running as {user} hung")
    if proc.returncode != 0:
        raise CheckFailed(f"the client running as {user} failed:\n{err.strip()}")
    return json.loads(out)


def report(failures, what, want, got):
    ok = want == got
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: {got}" + ("" if ok else f" (expected {want})"))
    if not ok:
        failures.append(f"{what}: {got}, expected {want}")


# ---------------------------------------------------------------------------------------------
# Static checks.

POLKIT_VALUES = {"no", "yes", "auth_self", "auth_admin", "auth_self_keep", "auth_admin_keep"}


def parse_unit(path):
    """{(section, key): [values]} of a unit file (no continuation lines in ours)."""
    out, section = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def sysusers_names(path):
    users, groups = set(), set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] == "u":
                users.add(fields[1])
                groups.add(fields[1])
            elif fields[0] == "g":
                groups.add(fields[1])
    return users, groups


def lint(rendered):
    failures = []
    for dirpath, _, files in os.walk(rendered):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            left = re.findall(r"@[a-z_]+@", text)
            if left:
                failures.append(f"{path}: placeholder left after rendering: {sorted(set(left))}")
            if name.endswith((".conf", ".policy")) and text.lstrip().startswith("<"):
                try:
                    ET.fromstring(text)
                except ET.ParseError as e:
                    failures.append(f"{path}: not well-formed XML: {e}")

    users, groups = sysusers_names(os.path.join(rendered, "sysusers.d", "talaria.conf"))

    # polkit actions
    policy = os.path.join(rendered, "polkit", "org.talaria.policy")
    try:
        root = ET.parse(policy).getroot()
        if root.tag != "policyconfig":
            failures.append(f"{policy}: root element is {root.tag}, not policyconfig")
        seen = set()
        for action in root.findall("action"):
            aid = action.get("id", "")
            if not re.fullmatch(r"org\.talaria(\.[a-z][a-z0-9-]*)+", aid) or aid in seen:
                failures.append(f"{policy}: bad or duplicate action id {aid!r}")
            seen.add(aid)
            for tag in ("description", "message"):
                if not (action.findtext(tag) or "").strip():
                    failures.append(f"{policy}: {aid} has no <{tag}>")
            defaults = action.find("defaults")
            for tag in ("allow_any", "allow_inactive", "allow_active"):
                value = defaults.findtext(tag) if defaults is not None else None
                if value not in POLKIT_VALUES:
                    failures.append(f"{policy}: {aid} <{tag}> is {value!r}")
        if not seen:
            failures.append(f"{policy}: no actions")
    except ET.ParseError:
        pass  # reported above

    # bus policy: only names and users this suite declares
    conf = os.path.join(rendered, "dbus", "system.d", "org.talaria.conf")
    try:
        for pol in ET.parse(conf).getroot().iter("policy"):
            user, group = pol.get("user"), pol.get("group")
            if user and user != "root" and user not in users:
                failures.append(f"{conf}: policy for user {user}, which sysusers.d does not declare")
            if group and group not in groups:
                failures.append(f"{conf}: policy for group {group}, which sysusers.d does not declare")
    except ET.ParseError:
        pass

    # activation files against the units they start
    for kind, unit_dir in (("system-services", "system"), ("services", "user")):
        directory = os.path.join(rendered, "dbus", kind)
        found = set()
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
            parser.optionxform = str
            try:
                parser.read(path, encoding="utf-8")
            except configparser.Error as e:
                failures.append(f"{path}: {e}")
                continue
            if parser.sections() != ["D-BUS Service"]:
                failures.append(f"{path}: sections {parser.sections()}, expected only [D-BUS Service]")
                continue
            entry = parser["D-BUS Service"]
            bus_name = entry.get("Name", "")
            found.add(bus_name)
            if name != bus_name + ".service":
                failures.append(f"{path}: Name={bus_name} does not match the file name")
            if not entry.get("Exec"):
                failures.append(f"{path}: no Exec=")
            unit = os.path.join(rendered, unit_dir, entry.get("SystemdService", "-"))
            if not os.path.isfile(unit):
                failures.append(f"{path}: SystemdService={entry.get('SystemdService')} is not in {unit_dir}/")
                continue
            keys = parse_unit(unit)
            if keys.get(("Service", "BusName")) != [bus_name]:
                failures.append(f"{path}: {unit} has BusName={keys.get(('Service', 'BusName'))}, not {bus_name}")
            if kind == "system-services":
                if entry.get("User") != (keys.get(("Service", "User")) or [None])[-1]:
                    failures.append(f"{path}: User={entry.get('User')} is not the User= of {unit}")
                if entry.get("User") not in users:
                    failures.append(f"{path}: User={entry.get('User')} is not declared in sysusers.d")
            elif "User" in entry:
                failures.append(f"{path}: a session activation file must not set User=")
        if found != set(NAMES):
            failures.append(f"dbus/{kind}: names {sorted(found)}, expected {NAMES}")

    # every system unit runs as a declared user
    system = os.path.join(rendered, "system")
    for name in sorted(os.listdir(system)):
        keys = parse_unit(os.path.join(system, name))
        for user in keys.get(("Service", "User"), []):
            if user not in users:
                failures.append(f"system/{name}: User={user} is not declared in sysusers.d")
    return failures


def check_tmpfiles(conf, sysroot):
    failures = []
    ids = Identities(os.path.join(sysroot, "etc/passwd"), os.path.join(sysroot, "etc/group"))
    with open(conf, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] not in ("d", "f"):
                failures.append(f"{conf}: line type {fields[0]} is not checked here; extend check_tmpfiles")
                continue
            is_kind = stat.S_ISDIR if fields[0] == "d" else stat.S_ISREG
            path, mode, user, group = fields[1:5]
            target = os.path.join(sysroot, path.lstrip("/"))
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                failures.append(f"{path}: not created")
                continue
            uid = int(ids.passwd[user][2]) if user in ids.passwd else None
            gid = int(ids.group[group][2]) if group in ids.group else None
            got = (is_kind(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid)
            want = (True, oct(int(mode, 8)), uid, gid)
            status = "ok  " if got == want else "FAIL"
            print(f"  {status} {fields[0]} {path} {mode} {user}:{group}")
            if got != want:
                failures.append(f"{path}: (type {fields[0]}, mode, uid, gid) = {got}, expected {want}")
    return failures


SELF = os.path.abspath(__file__)


def main(argv):
    try:
        if argv[:1] == ["owner"]:
            return role_owner(argv[1], argv[2:])
        if argv[:1] == ["client"]:
            return role_client(argv[1], argv[2])
        if argv[:1] == ["lint"] and len(argv) == 2:
            failures = lint(argv[1])
        elif argv[:1] == ["tmpfiles"] and len(argv) == 3:
            failures = check_tmpfiles(argv[1], argv[2])
        elif argv[:1] == ["bus"] and len(argv) == 3:
            failures = check_bus(argv[1], argv[2])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as e:
        failures = [str(e)]
    except OSError as e:
        failures = [f"{e} (the check runs {sys.executable} as the service users: it must be one they can execute)"
                    if isinstance(e, PermissionError) else str(e)]
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
