# The Talaria workspace: the CLI, the four unit daemons, the sandbox helpers, and the unit
# files rendered for this package's bin directory (lib/systemd, share/dbus-1, share/polkit-1,
# lib/sysusers.d, lib/tmpfiles.d) — the NixOS module uses these and keeps no copy of its own.
{ lib, rustPlatform, pkg-config, libseccomp, bash }:

let
  workspace = (lib.importTOML ../Cargo.toml).workspace.package;

  # What the NixOS module relies on; the build fails if any is missing rather than producing a
  # package whose units point at nothing.
  binaries = [
    "talaria"
    "talaria-gatewayd"
    "talaria-agentd"
    "talaria-executord"
    "talaria-schedulerd"
    "talaria-sandbox"
    "talaria-oci-helper"
  ];
  unitFiles = [
    "lib/systemd/system/talaria-gateway.service"
    "lib/systemd/system/talaria-gateway.socket"
    "lib/systemd/system/talaria-agent.service"
    "lib/systemd/system/talaria-executor.service"
    "lib/systemd/system/talaria-scheduler.service"
    "lib/systemd/system/talaria.target"
    "share/dbus-1/system.d/org.talaria.conf"
    "share/dbus-1/system-services/org.talaria.Agent1.service"
    "share/dbus-1/system-services/org.talaria.Executor1.service"
    "share/polkit-1/actions/org.talaria.policy"
    "lib/sysusers.d/talaria.conf"
    "lib/tmpfiles.d/talaria.conf"
  ];
in
rustPlatform.buildRustPackage {
  pname = "talaria";
  inherit (workspace) version;

  # Only what the build reads: changes to docs or nix/ do not rebuild, and a local target/
  # never enters the store.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates
      ../tests # a workspace member (the escape suite); cargo needs its manifest
      ../policies # embedded in talaria-policy with include_str!
      ../systemd
      ../scripts
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # Every member but the escape suite, whose binaries (a probe and test copies of the
  # helpers) are test tooling, not part of the product.
  cargoBuildFlags = [ "--workspace" "--exclude" "talaria-escape-suite" ];

  nativeBuildInputs = [ pkg-config ];
  # talaria-oci links libseccomp through youki's libcontainer.
  buildInputs = [ libseccomp ];

  # The suites start loopback servers, D-Bus daemons, namespaces and containers, which the
  # build sandbox does not allow; ./test.sh runs them, and the NixOS VM test (checks) runs the
  # installed units.
  doCheck = false;

  # install-units.sh renders @bindir@ (scripts/render-units.sh) and copies the files; with
  # PREFIX empty they land in $out/lib/systemd/system, $out/share/dbus-1/... rather than
  # $out/usr/... . Its helper is run by path, so its shebang must point into the store.
  postInstall = ''
    patchShebangs scripts
    PREFIX= ${bash}/bin/bash scripts/install-units.sh "$out" "$out/bin"

    for f in ${lib.escapeShellArgs (map (b: "bin/${b}") binaries ++ unitFiles)}; do
      if [ ! -e "$out/$f" ]; then
        echo "talaria: $f is missing from the package (scripts/install-units.sh or the workspace changed?)" >&2
        exit 1
      fi
    done
    if grep -rl '@bindir@' "$out/lib" "$out/share"; then
      echo "talaria: unrendered @bindir@ in the files above" >&2
      exit 1
    fi
  '';

  passthru = { inherit binaries unitFiles; };

  meta = {
    description = "Self-hosted AI agent for Linux servers: gateway, agent, executor and scheduler units over D-Bus";
    homepage = "https://github.com/talaria-agent/talaria";
    license = lib.licenses.asl20;
    mainProgram = "talaria";
    platforms = lib.platforms.linux;
  };
}
