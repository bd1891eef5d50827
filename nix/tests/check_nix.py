"""Offline checks of Talaria's Nix files; run by scripts/check-nix.sh (which installs Nix).

Nothing here fetches nixpkgs or builds anything: the module and the flake are evaluated
against the stub in nix/tests/stub/nixpkgs. Each check prints one line; the run ends with
what was not checked. Exits 1 on the first failed check, naming it.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NIX = ROOT / "nix"
SYSTEM = "x86_64-linux"
NOT_CHECKED = []


class CheckFailed(Exception):
    pass


def ok(what):
    print(f"  ok    {what}")


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def nix_eval_case(case, toplevel=False):
    args = ["nix-instantiate", "--eval", "--strict", "--json", "--store", "dummy://",
            str(NIX / "tests/module-eval.nix"), "--argstr", "case", case]
    if toplevel:
        args += ["--arg", "toplevel", "true"]
    return run(args)


def module_case(case):
    r = nix_eval_case(case)
    if r.returncode != 0:
        raise CheckFailed(f"module case {case}: evaluation failed:\n{r.stderr.strip()}")
    out = json.loads(r.stdout)
    pkg = out.pop("packagePath")
    # The package's store path differs per stub; compare against a placeholder.
    return json.loads(json.dumps(out).replace(pkg, "@pkg@"))


# ---- 1. syntax ---------------------------------------------------------------------------------

def check_parse():
    files = sorted(p for p in ROOT.rglob("*.nix")
                   if not {"target", ".git"} & set(p.relative_to(ROOT).parts))
    for f in files:
        r = run(["nix-instantiate", "--store", "dummy://", "--parse", str(f)])
        expect(r.returncode == 0, f"syntax error in {f.relative_to(ROOT)}:\n{r.stderr.strip()}")
    ok(f"nix-instantiate --parse: {len(files)} .nix files")


# ---- 2. flake.lock -----------------------------------------------------------------------------

def check_lock():
    lock = json.loads((ROOT / "flake.lock").read_text())
    expect(lock.get("version") == 7 and lock.get("root") == "root", "flake.lock: version 7, root node 'root'")
    node = lock["nodes"]["nixpkgs"]
    locked, original = node["locked"], node["original"]
    expect(lock["nodes"]["root"]["inputs"] == {"nixpkgs": "nixpkgs"}, "flake.lock: root inputs are exactly nixpkgs")
    expect(locked.get("type") == "github" and locked.get("owner") == "NixOS" and locked.get("repo") == "nixpkgs",
           "flake.lock: nixpkgs is github:NixOS/nixpkgs")
    expect(re.fullmatch(r"[0-9a-f]{40}", locked.get("rev", "")), "flake.lock: rev is 40 hex digits")
    expect(re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked.get("narHash", "")), "flake.lock: narHash is an SRI sha256")
    expect(isinstance(locked.get("lastModified"), int), "flake.lock: lastModified is an integer")
    flake = (ROOT / "flake.nix").read_text()
    url = re.search(r'inputs\.nixpkgs\.url\s*=\s*"github:NixOS/nixpkgs/([^"]+)"', flake)
    expect(url and original == {"owner": "NixOS", "repo": "nixpkgs", "ref": url.group(1), "type": "github"},
           "flake.lock: `original` matches inputs.nixpkgs.url in flake.nix (else Nix re-locks)")
    ok(f"flake.lock well-formed, nixpkgs {original['ref']} @ {locked['rev'][:12]} "
       f"({time.strftime('%Y-%m-%d', time.gmtime(locked['lastModified']))}); narHash NOT verified (no network)")
    NOT_CHECKED.append("flake.lock narHash/rev against GitHub (no network here)")


# ---- 3. the module against the stub lib --------------------------------------------------------

PKG = "talaria-0.1.0"
USERS = {
    "talaria": {"isSystemUser": True, "group": "talaria", "home": "/var/lib/talaria"},
    "talaria-gateway": {"isSystemUser": True, "group": "talaria-gateway", "home": "/var/lib/talaria-gateway"},
    "talaria-scheduler": {"isSystemUser": True, "group": "talaria-scheduler", "home": "/var/lib/talaria-scheduler"},
}
GROUPS = ["talaria", "talaria-admins", "talaria-gateway", "talaria-scheduler"]


def check_module():
    d = module_case("defaults")
    expect(d["failedAssertions"] == [] and d["warnings"] == [], f"defaults: clean, got {d['failedAssertions']} {d['warnings']}")
    expect(d["systemdPackages"] == [PKG] and d["dbusPackages"] == [PKG] and d["tmpfilesPackages"] == [PKG]
           and PKG in d["systemPackages"], "defaults: units, D-Bus files, tmpfiles and polkit actions come from the package")
    expect(d["polkit"] is True, "defaults: polkit enabled")
    expect(d["users"] == USERS and d["groups"] == GROUPS, f"defaults: static users and groups, got {d['users']} {d['groups']}")
    expect(d["targets"] == {"talaria": {"wantedBy": ["multi-user.target"]}}, "defaults: talaria.target wanted by multi-user.target")
    expect(d["sockets"] == {"talaria-gateway": {"enable": True, "wantedBy": ["talaria.target"], "listenStreams": [],
                                                "socketConfig": {}}},
           f"defaults: gateway socket enabled via talaria.target, shipped ListenStream kept, got {d['sockets']}")
    # No drop-in beyond enabling: the executor's PATH, the scheduler's WantedBy.
    expect(sorted(d["services"]) == ["talaria-executor", "talaria-scheduler"],
           f"defaults: only the executor (PATH) and the scheduler (WantedBy) get drop-ins, got {sorted(d['services'])}")
    expect(d["services"]["talaria-scheduler"]["wantedBy"] == ["talaria.target"], "defaults: scheduler wanted by talaria.target")
    for name, svc in d["services"].items():
        expect(svc["serviceConfig"] == {} and svc["environment"] == {}, f"defaults: {name} has no serviceConfig/environment drop-in")
    expect("bash" in d["services"]["talaria-executor"]["path"], "defaults: bash on the executor's PATH (terminal tool)")
    expect(d["etc"] == {} and d["tmpfilesRules"] == [] and d["firewallTCP"] == [],
           "defaults: no config file, no tmpfiles rule, no open port")
    ok("module, defaults: package units enabled as shipped, users, no overrides")

    f = module_case("full")
    expect(f["failedAssertions"] == [] and f["warnings"] == [], f"full: clean, got {f['failedAssertions']} {f['warnings']}")
    agent = f["services"]["talaria-agent"]["serviceConfig"]
    expect(agent.get("LoadCredential") == ["", "model-api-key:/run/keys/model-api-key", "search-api-key:/run/keys/search"],
           f"full: agent LoadCredential reset and restated, got {agent.get('LoadCredential')}")
    expect(agent.get("EnvironmentFile") == "/run/secrets/agent.env", "full: agent EnvironmentFile")
    expect(agent.get("ExecStart") == ["", "@pkg@/bin/talaria-agentd --bus system --deputy-user talaria-scheduler --idle-exit 300 --allow-user talaria-gateway "
                                          "--allow-user talaria-scheduler --allow-user alice --allow-user 1001 --x"],
           f"full: agent ExecStart override (reset first, shipped users kept), got {agent.get('ExecStart')}")
    ex = f["services"]["talaria-executor"]["serviceConfig"]
    expect(ex.get("ExecStart") == ["", '@pkg@/bin/talaria-executord --bus system --agent-user talaria --limit "100%%" "a b"'],
           f"full: executor ExecStart quotes and escapes %, got {ex.get('ExecStart')}")
    gw = f["services"]["talaria-gateway"]["serviceConfig"]
    expect(gw.get("LoadCredential") == ["", "gateway-key:/run/secrets/gateway-key"], f"full: gateway LoadCredential, got {gw}")
    expect(gw.get("ExecStart") == ["", "@pkg@/bin/talaria-gatewayd --bus system --idle-exit 600"], "full: gateway --idle-exit")
    expect(f["services"]["talaria-scheduler"]["serviceConfig"] == {}, "full: empty extraArgs leaves ExecStart alone")
    sock = f["sockets"]["talaria-gateway"]
    expect(sock["listenStreams"] == ["", "[::]:8642", "0.0.0.0:9000", "/run/talaria/gateway.sock"]
           and sock["socketConfig"] == {"IPAddressAllow": ["", "localhost", "192.0.2.0/24"]},
           f"full: gateway.listen and allowedAddresses replace the shipped lists, got {sock}")
    expect(f["firewallTCP"] == [8642, 9000], f"full: openFirewall opens the TCP ports only, got {f['firewallTCP']}")
    expect(f["etc"] == {"talaria/config.toml": "talaria-config.toml", "talaria/policies/ci.toml": "talaria-policy-ci.toml",
                        "talaria/policies/site.toml": "/srv/talaria/site.toml"}, f"full: /etc/talaria files, got {f['etc']}")
    expect(f["tmpfilesRules"] == ["L+ /var/lib/talaria/home/config.toml - - - - /etc/talaria/config.toml"],
           "full: config.toml linked into the agent's home")
    expect("talaria-config.toml" in f["services"]["talaria-agent"]["restartTriggers"]
           and "talaria-policy-ci.toml" in f["services"]["talaria-executor"]["restartTriggers"],
           "full: config and policy changes restart the agent / executor")
    expect(all(svc["environment"] == {"TALARIA_LOG": "debug"} for svc in f["services"].values()), "full: logLevel on every unit")
    ok("module, everything set: LoadCredential, EnvironmentFile, ExecStart, listen, IPAddressAllow, firewall, /etc files")

    n = module_case("no-model-key")
    expect(n["services"]["talaria-agent"]["serviceConfig"] == {
        "LoadCredential": [""],
        "ExecStart": ["", "@pkg@/bin/talaria-agentd --bus system --deputy-user talaria-scheduler --allow-user talaria-gateway --allow-user talaria-scheduler"]},
        f"no-model-key: shipped credential dropped, --idle-exit dropped, got {n['services']['talaria-agent']}")
    g = module_case("gateway-off")
    expect(g["sockets"]["talaria-gateway"]["enable"] is False and g["sockets"]["talaria-gateway"]["wantedBy"] == []
           and g["services"]["talaria-gateway"]["enable"] is False and g["services"]["talaria-scheduler"]["enable"] is False
           and g["firewallTCP"] == [], f"gateway-off: gateway and scheduler masked, no port, got {g['sockets']}")
    o = module_case("overrides")
    expect(o["sockets"]["talaria-gateway"]["listenStreams"] == ["9999"] and o["polkit"] is False,
           "overrides: mkForce and plain definitions beat the module's values")
    lo = module_case("firewall-loopback")
    expect(any("loopback only" in w for w in lo["warnings"]), "firewall-loopback: warns that opening the port is useless")
    rl = module_case("remote-localhost-only")
    expect(any("remote clients are refused" in w for w in rl["warnings"]), "remote-localhost-only: warns about IPAddressAllow")
    ok("module: no model key, gateway/scheduler off (masked), user overrides win, listen/firewall warnings")

    x = module_case("disabled")
    expect(x["services"] == {} and x["sockets"] == {} and x["targets"] == {} and x["users"] == {} and x["groups"] == []
           and x["etc"] == {} and x["systemdPackages"] == [] and x["dbusPackages"] == [] and x["systemPackages"] == []
           and x["tmpfilesRules"] == [] and x["failedAssertions"] == [] and x["warnings"] == [],
           f"disabled: the module adds nothing, got {x}")
    ok("module, disabled: config empty")

    refusals = {
        "store-secret": "services.talaria.gatewayKeyFile (/nix/store/abc-key) is in the Nix store",
        "store-secret-subpath": "services.talaria.credentials.token (/nix/store/0123-secrets/token) is in the Nix store",
        "path-literal-secret": "services.talaria.modelApiKeyFile (",
        "api-key-in-settings": "services.talaria.settings.model.api_key would put the key in the world-readable Nix store",
        "bad-names": "not a valid credential ID",
    }
    for case, message in refusals.items():
        failed = module_case(case)["failedAssertions"]
        expect(any(message in m for m in failed), f"{case}: expected a failed assertion containing {message!r}, got {failed}")
    bad = module_case("bad-names")["failedAssertions"]
    expect(any("not a valid policy name" in m for m in bad) and any("use services.talaria.modelApiKeyFile" in m for m in bad),
           f"bad-names: policy names and credentials.model-api-key are refused, got {bad}")
    ok(f"module refuses: {', '.join(refusals)}")

    r = nix_eval_case("store-secret", toplevel=True)
    expect(r.returncode != 0 and "Failed assertions:" in r.stderr and "gatewayKeyFile" in r.stderr,
           f"store-secret: system.build.toplevel must fail with the assertion, got rc={r.returncode} {r.stderr.strip()}")
    r = nix_eval_case("full", toplevel=True)
    expect(r.returncode == 0 and r.stdout.strip().endswith('.drv"'),
           f"full: system.build.toplevel evaluates, got {r.stderr.strip()}")
    ok("toplevel: fails on a store secret with NixOS' 'Failed assertions' message, evaluates otherwise")

    for case, message in {"stub-unknown-option": "The option `services.talaria.gatway' does not exist",
                          "stub-wrong-type": "is not of type `list of string'"}.items():
        r = nix_eval_case(case)
        expect(r.returncode != 0 and message in r.stderr, f"{case}: the stub must refuse it with {message!r}, got {r.stderr.strip()}")
    ok("stub self-test: unknown options and wrong types are refused")
    return d


# ---- 4. the flake, with nixpkgs replaced by the stub ------------------------------------------

def check_flake(work):
    src = work / "src"
    src.mkdir()
    for name in ["flake.nix", "flake.lock", "Cargo.toml", "Cargo.lock", "crates", "tests", "policies",
                 "scripts", "systemd", "nix"]:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("target", "__pycache__"))
        elif p.exists():
            shutil.copy2(p, src / name)
    stub = src / "nix/tests/stub/nixpkgs"
    common = ["--store", str(work / "store"), "--option", "substituters", "", "--option", "eval-cache", "false",
              "--extra-experimental-features", "nix-command flakes", "--no-write-lock-file",
              "--override-input", "nixpkgs", f"path:{stub}"]
    flake = f"path:{src}"

    r = run(["nix", "flake", "check", "--no-build", *common, flake])
    expect(r.returncode == 0, f"nix flake check --no-build (stub nixpkgs) failed:\n{r.stderr.strip()}")
    ok("nix flake check --no-build: every output of both systems evaluates (stub nixpkgs)")

    def ev(attr, apply=None, impure=False):
        args = ["nix", "eval", "--json", *common, *(["--impure"] if impure else []), f"{flake}#{attr}"]
        if apply:
            args += ["--apply", apply]
        r = run(args)
        expect(r.returncode == 0, f"nix eval {attr} failed:\n{r.stderr.strip()}")
        return json.loads(r.stdout)

    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    pkg = ev(f"packages.{SYSTEM}.default",
             'p: { inherit (p) name pname version postInstall; src = "${p.src}"; '
             'mainProgram = p.meta.mainProgram; inherit (p) binaries unitFiles; }')
    expect(pkg["name"] == f"talaria-{version}", f"package name talaria-{version} (Cargo.toml), got {pkg['name']}")
    expect(pkg["mainProgram"] == "talaria", "package meta.mainProgram = talaria")
    expect("scripts/install-units.sh" in pkg["postInstall"] and '"$out/bin"' in pkg["postInstall"],
           "package postInstall runs scripts/install-units.sh $out $out/bin")
    expect(set(pkg["binaries"]) >= {"talaria", "talaria-gatewayd", "talaria-agentd", "talaria-executord",
                                    "talaria-schedulerd", "talaria-sandbox", "talaria-oci-helper"},
           "package checks for every binary")
    store_src = Path(str(work / "store") + pkg["src"])
    entries = sorted(p.name for p in store_src.iterdir())
    expect(entries == sorted(["Cargo.toml", "Cargo.lock", "crates", "tests", "policies", "scripts", "systemd"]),
           f"package src holds only what the build reads, got {entries}")
    ok(f"packages.{SYSTEM}.default is {pkg['name']}; postInstall renders the units; src = {', '.join(entries)}")

    app = ev(f"apps.{SYSTEM}.default", "a: { inherit (a) type program; }")
    expect(app["type"] == "app" and app["program"].endswith(f"-talaria-{version}/bin/talaria"),
           f"apps.default runs bin/talaria, got {app}")
    expect(ev("nixosModules", "builtins.attrNames") == ["default", "talaria"], "nixosModules.{default,talaria}")
    overlay = ev("overlays.default",
                 f'o: let pkgs = (builtins.getFlake "path:{stub}").legacyPackages.{SYSTEM}; '
                 'final = pkgs // o final pkgs; in final.talaria.name', impure=True)
    expect(overlay == f"talaria-{version}", f"overlays.default adds talaria, got {overlay}")
    ok("apps.default, nixosModules, overlays.default")

    script = ev(f"checks.{SYSTEM}.vm", "t: t.testScript")
    (work / "test_script.py").write_text(script)
    r = run([sys.executable, "-m", "py_compile", str(work / "test_script.py")])
    expect(r.returncode == 0, f"the VM test script does not compile:\n{r.stderr}")
    # The NixOS test driver lints the script with pyflakes; use it when it is installed.
    r = run([sys.executable, "-m", "pyflakes", str(work / "test_script.py")],
            env={**os.environ, "PYFLAKES_BUILTINS": "machine,machines,start_all,subtest,driver,log,retry"})
    if "No module named pyflakes" in r.stderr:
        NOT_CHECKED.append("pyflakes on the VM test script (pyflakes not installed)")
        lint = "compiles (pyflakes not installed)"
    else:
        expect(r.returncode == 0, f"pyflakes on the VM test script:\n{r.stdout}{r.stderr}")
        lint = "compiles, pyflakes clean"
    ok(f"checks.{SYSTEM}.vm: node config evaluates against the stub; test script {lint}")
    return pkg


# ---- 5. the fake model the VM test uses ------------------------------------------------------

def check_fake_model():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FAKE_MODEL_API_KEY": "k"}
    proc = subprocess.Popen([sys.executable, str(NIX / "tests/fake-model.py"), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"

    def post(body, key="k"):
        req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, None, e.read().decode()

    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        user = {"role": "user", "content": "go"}
        expect(post({"messages": [user]}, key="wrong")[0] == 401, "fake model: a wrong key gets 401")
        status, _, body = post({"model": "fake", "messages": [user]})
        call = json.loads(body)["choices"][0]["message"]["tool_calls"][0]
        expect(status == 200 and call["function"]["name"] == "terminal"
               and json.loads(call["function"]["arguments"]) == {"command": "echo sandboxed-$((6*7))"},
               f"fake model: first answer calls terminal, got {body}")
        history = [user, {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": call["id"], "content": "sandboxed-42\n"}]
        status, _, body = post({"model": "fake", "messages": history})
        expect("sandboxed-42" in json.loads(body)["choices"][0]["message"]["content"],
               f"fake model: second answer quotes the tool result, got {body}")
        expect("sandboxed-42" not in post({"messages": [user]})[2], "fake model: never says sandboxed-42 by itself")

        status, ctype, body = post({"model": "fake", "messages": [user], "stream": True,
                                    "stream_options": {"include_usage": True}})
        events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
        expect(ctype == "text/event-stream" and events[-1] == "[DONE]", "fake model: SSE ending in [DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        args = "".join(tc["function"].get("arguments", "") for c in chunks for ch in c["choices"]
                       for tc in ch["delta"].get("tool_calls", []))
        finish = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
        expect(json.loads(args) == {"command": "echo sandboxed-$((6*7))"} and finish == ["tool_calls"]
               and "usage" in chunks[-1], f"fake model: streamed tool call reassembles, got {events}")
        status, _, body = post({"model": "fake", "messages": history, "stream": True})
        text = "".join(ch["delta"].get("content") or "" for e in body.splitlines() if e.startswith("data: {")
                       for ch in json.loads(e[6:])["choices"])
        expect("sandboxed-42" in text, f"fake model: streamed text quotes the tool result, got {text!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    ok("fake model (nix/tests/fake-model.py): auth, tool call, echo of the tool result, JSON and SSE")


# ---- 6. the module against the shipped units -------------------------------------------------

def unit_values(text, key):
    """Every value of KEY= in a unit file (comments and sections ignored)."""
    return [l.split("=", 1)[1].strip() for l in text.splitlines() if l.startswith(f"{key}=")]


def check_units(work, package, defaults):
    system = ROOT / "systemd/system"
    if not system.is_dir():
        NOT_CHECKED.append("the module's assumptions against systemd/ (no systemd/system yet)")
        print("  skip  systemd/system does not exist yet: unit names, ExecStart, credentials not compared")
        return
    expr = ("let s = import " + str(NIX / "units.nix") + "; in { inherit (s) gatewayListen gatewayIPAddressAllow; "
            "units = builtins.mapAttrs (n: u: u // { argv = s.argv n { }; }) s.units; }")
    r = run(["nix-instantiate", "--eval", "--strict", "--json", "--store", "dummy://", "-E", expr])
    expect(r.returncode == 0, f"nix/units.nix: {r.stderr}")
    shipped = json.loads(r.stdout)

    # What the package's postInstall does, minus Nix: render and install into a staging root.
    out = work / "out"
    r = run(["bash", str(ROOT / "scripts/install-units.sh"), str(out), "/nix/store/00000000000000000000000000000000-talaria/bin"],
            env={**os.environ, "PREFIX": ""})
    expect(r.returncode == 0, f"scripts/install-units.sh OUT BINDIR (PREFIX=) failed:\n{r.stderr}")
    missing = [f for f in package["unitFiles"] if not (out / f).is_file()]
    expect(not missing, f"install-units.sh does not install what nix/package.nix checks for: {missing}")
    leftover = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "@bindir@" in p.read_text()]
    expect(not leftover, f"@bindir@ left in {leftover}")
    bindir = "/nix/store/00000000000000000000000000000000-talaria/bin"

    for name, u in shipped["units"].items():
        text = (out / f"lib/systemd/system/{u['unit']}.service").read_text()
        lines = unit_values(text, "ExecStart")
        expect(len(lines) == 1, f"{u['unit']}.service: expected one ExecStart=, got {lines}")
        words = lines[0].split()
        expect(words[0] == f"{bindir}/{u['binary']}", f"{u['unit']}.service runs {words[0]}, nix/units.nix says {u['binary']}")
        expect(words[1:] == u["argv"], f"{u['unit']}.service: ExecStart arguments {words[1:]} differ from nix/units.nix "
                                       f"{u['argv']} (the module restates them when it overrides ExecStart)")
        creds = [f"{k}:{v}" for k, v in u["credentials"].items()]
        expect(unit_values(text, "LoadCredential") == creds,
               f"{u['unit']}.service: LoadCredential {unit_values(text, 'LoadCredential')} differs from nix/units.nix {creds}")
    sock = (out / "lib/systemd/system/talaria-gateway.socket").read_text()
    expect(unit_values(sock, "ListenStream") == shipped["gatewayListen"]
           and unit_values(sock, "IPAddressAllow") == shipped["gatewayIPAddressAllow"],
           "talaria-gateway.socket: ListenStream/IPAddressAllow differ from nix/units.nix (the module's defaults)")

    # [Install] is ignored by NixOS: the module restates it.
    wanted = {"talaria.target": defaults["targets"]["talaria"]["wantedBy"],
              "talaria-gateway.socket": defaults["sockets"]["talaria-gateway"]["wantedBy"],
              "talaria-scheduler.service": defaults["services"]["talaria-scheduler"]["wantedBy"]}
    for unit, by in wanted.items():
        got = unit_values((out / f"lib/systemd/system/{unit}").read_text(), "WantedBy")
        expect(got == by, f"{unit}: shipped WantedBy={got}, the module says {by}")

    sysusers = (out / "lib/sysusers.d/talaria.conf").read_text().splitlines()
    users = {}
    groups = set()
    for line in sysusers:
        fields = re.findall(r'"[^"]*"|\S+', line)
        if fields and fields[0] == "u":
            users[fields[1]] = fields[4]
            groups.add(fields[1])
        elif fields and fields[0] == "g":
            groups.add(fields[1])
    expect(users == {n: u["home"] for n, u in defaults["users"].items()},
           f"sysusers.d users/homes {users} differ from the module's users.users")
    expect(sorted(groups) == defaults["groups"], f"sysusers.d groups {sorted(groups)} differ from the module's {defaults['groups']}")
    ok("module vs systemd/ (rendered by install-units.sh): files, ExecStart, LoadCredential, socket lists, [Install], users")


def main():
    started = time.monotonic()
    print("check-nix: offline checks of flake.nix, flake.lock and nix/")
    work = Path(tempfile.mkdtemp(prefix="check-nix."))
    try:
        check_parse()
        check_lock()
        defaults = check_module()
        package = check_flake(work)
        check_fake_model()
        check_units(work, package, defaults)
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    NOT_CHECKED.extend([
        "building the package (needs nixpkgs and crates.io inside the Nix sandbox)",
        "the NixOS VM test (needs nixpkgs and a VM; checks.<system>.vm)",
        "the module against the real nixpkgs lib and NixOS options (checks.<system>.module-eval does that)",
    ])
    print("not checked here:")
    for what in NOT_CHECKED:
        print(f"  - {what}")
    print(f"check-nix: all checks passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
