# Evaluates nix/module.nix against the stub lib and NixOS options (./stub/nixpkgs) for one of
# the cases below and returns what the module produced, as JSON-able data. Driven by
# scripts/check-nix.sh:
#   nix-instantiate --eval --strict --json --store dummy:// nix/tests/module-eval.nix --argstr case full
# `toplevel = true` instead forces the stub system.build.toplevel, which throws on failed
# assertions as NixOS does.
{ case, toplevel ? false }:

let
  lib = import ./stub/nixpkgs/lib.nix;
  stubPkgs = import ./stub/nixpkgs/pkgs.nix { inherit lib; system = "x86_64-linux"; };
  # The module's default package is pkgs.talaria (the flake's overlay provides it).
  package = (derivation {
    name = "talaria-0.1.0";
    system = "x86_64-linux";
    builder = "/bin/sh";
  }) // { pname = "talaria"; version = "0.1.0"; meta.mainProgram = "talaria"; };
  pkgs = stubPkgs // { talaria = package; };

  cases = {
    defaults = { services.talaria.enable = true; };

    full = {
      services.talaria = {
        enable = true;
        settings = {
          model = { base_url = "http://127.0.0.1:8000/v1"; name = "fake"; };
          agent.max_iterations = 20;
        };
        policies = {
          ci = { description = "ci"; backends = [ "landlock" ]; network.mode = "off"; };
          site = "/srv/talaria/site.toml";
        };
        environmentFile = "/run/secrets/agent.env";
        gatewayKeyFile = "/run/secrets/gateway-key";
        modelApiKeyFile = "/run/keys/model-api-key";
        credentials.search-api-key = "/run/keys/search";
        gateway = {
          listen = [ "[::]:8642" "0.0.0.0:9000" "/run/talaria/gateway.sock" ];
          allowedAddresses = [ "localhost" "192.0.2.0/24" ];
          idleExit = 600;
        };
        openFirewall = true;
        agent = { allowUsers = [ "alice" "1001" ]; idleExit = 300; extraArgs = [ "--x" ]; };
        executor.extraArgs = [ "--limit" "100%" "a b" ];
        scheduler.extraArgs = [ ];
        logLevel = "debug";
      };
    };

    # No model key (a local server), and an agent that never exits on idle.
    no-model-key = {
      services.talaria = { enable = true; modelApiKeyFile = null; agent.idleExit = null; };
    };

    remote-localhost-only = {
      services.talaria = { enable = true; gateway.listen = [ "0.0.0.0:8642" ]; };
    };

    gateway-off = {
      services.talaria = {
        enable = true;
        gateway.enable = false;
        scheduler.enable = false;
        openFirewall = true;
      };
    };

    # A user's mkForce beats the module's value; the module's mkDefault loses to a plain one.
    overrides = { lib, ... }: {
      services.talaria.enable = true;
      security.polkit.enable = false;
      systemd.sockets.talaria-gateway.listenStreams = lib.mkForce [ "9999" ];
    };

    firewall-loopback = { services.talaria = { enable = true; openFirewall = true; }; };

    disabled = { services.talaria.enable = false; };

    store-secret = {
      services.talaria = { enable = true; gatewayKeyFile = "/nix/store/abc-key"; };
    };
    store-secret-subpath = {
      services.talaria = { enable = true; credentials.token = "/nix/store/0123-secrets/token"; };
    };
    path-literal-secret = {
      services.talaria = { enable = true; modelApiKeyFile = ./fake-model.py; };
    };
    api-key-in-settings = {
      services.talaria = { enable = true; settings.model.api_key = "sk-123"; };
    };
    bad-names = {
      services.talaria = {
        enable = true;
        credentials."bad/id" = "/run/keys/x";
        policies."../escape" = { };
        credentials.model-api-key = "/run/keys/m";
      };
    };

    # The stub itself must refuse what NixOS refuses, or the cases above prove nothing.
    stub-unknown-option = { services.talaria = { enable = true; gatway.enable = false; }; };
    stub-wrong-type = { services.talaria = { enable = true; gateway.listen = "127.0.0.1:1"; }; };
  };

  eval = import ./stub/nixpkgs/nixos.nix {
    inherit lib pkgs;
    system = "x86_64-linux";
    modules = [ ../module.nix cases.${case} ];
  };
  inherit (eval) config;

  isOurs = name: lib.hasPrefix "talaria" name;
  ours = set: lib.filterAttrs (n: _: isOurs n) set;
  nameOf = p: if lib.isAttrs p && p ? name then p.name else toString p;

  summary = {
    packagePath = "${package}";
    failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
    inherit (config) warnings;
    services = lib.mapAttrs
      (_: s: {
        inherit (s) enable wantedBy environment serviceConfig;
        path = map nameOf s.path;
        restartTriggers = map nameOf s.restartTriggers;
      })
      (ours config.systemd.services);
    sockets = lib.mapAttrs (_: s: { inherit (s) enable wantedBy listenStreams socketConfig; }) (ours config.systemd.sockets);
    targets = lib.mapAttrs (_: t: { inherit (t) wantedBy; }) (ours config.systemd.targets);
    users = lib.mapAttrs (_: u: { inherit (u) isSystemUser group home; }) (ours config.users.users);
    groups = builtins.attrNames (ours config.users.groups);
    etc = lib.mapAttrs (_: e: nameOf e.source)
      (lib.filterAttrs (n: _: lib.hasPrefix "talaria/" n) config.environment.etc);
    tmpfilesRules = config.systemd.tmpfiles.rules;
    tmpfilesPackages = map nameOf config.systemd.tmpfiles.packages;
    systemdPackages = map nameOf config.systemd.packages;
    dbusPackages = map nameOf config.services.dbus.packages;
    systemPackages = map nameOf config.environment.systemPackages;
    polkit = config.security.polkit.enable;
    firewallTCP = config.networking.firewall.allowedTCPPorts;
  };
in
if toplevel then config.system.build.toplevel.drvPath else summary
