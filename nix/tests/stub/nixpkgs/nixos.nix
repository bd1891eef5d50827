# A stub NixOS: declarations of the NixOS options Talaria's module and VM test set, with the
# types NixOS gives them (as far as the module's use goes), and a `system.build.toplevel`
# that fails on failed assertions the way NixOS does. Options not declared here are refused
# ("does not exist"), so a typo in an option name fails the check.
{ lib, modules, pkgs ? null, system ? null, specialArgs ? { } }:

let
  inherit (lib) mkOption types;

  # NixOS' `unitOption`: a primitive or a list of them; lists from several definitions are
  # concatenated, anything else must agree.
  isPrimitive = v: builtins.isBool v || builtins.isInt v || builtins.isString v
    || builtins.isPath v || lib.isDerivation v;
  unitOption = lib.mkOptionType {
    name = "systemd option";
    check = v: isPrimitive v || (builtins.isList v && builtins.all isPrimitive v);
    merge = loc: defs:
      if builtins.any (d: builtins.isList d.value) defs
      then builtins.concatMap (d: lib.toList d.value) defs
      else lib.mergeEqualOption loc defs;
  };

  listOfStr = mkOption { type = types.listOf types.str; default = [ ]; };

  commonUnitOptions = {
    enable = mkOption { type = types.bool; default = true; };
    description = mkOption { type = types.str; default = ""; };
    wantedBy = listOfStr;
    requiredBy = listOfStr;
    wants = listOfStr;
    requires = listOfStr;
    after = listOfStr;
    before = listOfStr;
    partOf = listOfStr;
    restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
    overrideStrategy = mkOption {
      type = types.enum [ "asDropinIfExists" "asDropin" ];
      default = "asDropinIfExists";
    };
  };

  stubOptions = { config, ... }: {
    options = {
      assertions = mkOption {
        type = types.listOf (types.submodule {
          options.assertion = mkOption { type = types.bool; };
          options.message = mkOption { type = types.str; };
        });
        default = [ ];
      };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };

      nixpkgs.hostPlatform = mkOption {
        type = types.either types.str types.attrs;
        default = if system != null then system
          else throw "Neither nixpkgs.hostPlatform nor the legacy option nixpkgs.system has been set.";
      };
      system.stateVersion = mkOption { type = types.str; default = "25.05"; };
      system.build = mkOption { type = types.lazyAttrsOf types.unspecified; default = { }; };
      boot.isContainer = mkOption { type = types.bool; default = false; };
      networking.hostName = mkOption { type = types.str; default = "nixos"; };
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      # The VM test sets a few virtualisation knobs; their types are not checked here.
      virtualisation = mkOption { type = types.attrsOf types.anything; default = { }; };

      environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule ({ name, ... }: {
          options = {
            target = mkOption { type = types.str; default = name; };
            source = mkOption { type = types.nullOr types.path; default = null; };
            text = mkOption { type = types.nullOr types.lines; default = null; };
            mode = mkOption { type = types.str; default = "symlink"; };
            user = mkOption { type = types.str; default = "+0"; };
            group = mkOption { type = types.str; default = "+0"; };
          };
        }));
        default = { };
      };

      security.polkit.enable = mkOption { type = types.bool; default = false; };
      services.dbus.packages = mkOption { type = types.listOf types.path; default = [ ]; };

      users.users = mkOption {
        type = types.attrsOf (types.submodule ({ name, ... }: {
          options = {
            name = mkOption { type = types.str; default = name; };
            isSystemUser = mkOption { type = types.bool; default = false; };
            isNormalUser = mkOption { type = types.bool; default = false; };
            group = mkOption { type = types.str; default = ""; };
            extraGroups = listOfStr;
            home = mkOption { type = types.path; default = "/var/empty"; };
            createHome = mkOption { type = types.bool; default = false; };
            description = mkOption { type = types.str; default = ""; };
            uid = mkOption { type = types.nullOr types.int; default = null; };
          };
        }));
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule ({ name, ... }: {
          options = {
            name = mkOption { type = types.str; default = name; };
            gid = mkOption { type = types.nullOr types.int; default = null; };
            members = listOfStr;
          };
        }));
        default = { };
      };

      systemd.packages = mkOption { type = types.listOf types.package; default = [ ]; };
      systemd.tmpfiles.packages = mkOption { type = types.listOf types.package; default = [ ]; };
      systemd.tmpfiles.rules = listOfStr;
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule {
          options = commonUnitOptions // {
            serviceConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
            environment = mkOption {
              type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
              default = { };
            };
            path = mkOption { type = types.listOf (types.either types.package types.str); default = [ ]; };
            script = mkOption { type = types.lines; default = ""; };
          };
        });
        default = { };
      };
      systemd.targets = mkOption {
        type = types.attrsOf (types.submodule { options = commonUnitOptions; });
        default = { };
      };
      systemd.sockets = mkOption {
        type = types.attrsOf (types.submodule {
          options = commonUnitOptions // {
            listenStreams = listOfStr;
            listenDatagrams = listOfStr;
            socketConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
          };
        });
        default = { };
      };
    };

    # As NixOS: building the system fails on failed assertions; warnings are printed.
    config.system.build.toplevel =
      let
        failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
        shown = lib.foldl' (acc: w: builtins.trace "warning: ${w}" acc) true config.warnings;
      in
      if failed != [ ] then
        throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
      else
        builtins.seq shown (derivation {
          name = "nixos-system-${config.networking.hostName}";
          system = if builtins.isString config.nixpkgs.hostPlatform then config.nixpkgs.hostPlatform else "x86_64-linux";
          builder = "/bin/sh";
          args = [ "-c" "exit 1" ];
          # Forces every unit override, user and /etc entry to evaluate.
          units = builtins.toJSON {
            services = config.systemd.services;
            sockets = config.systemd.sockets;
            targets = config.systemd.targets;
            users = config.users;
            etc = config.environment.etc;
            tmpfiles = config.systemd.tmpfiles;
            packages = config.systemd.packages;
            dbus = config.services.dbus.packages;
            firewall = config.networking.firewall.allowedTCPPorts;
          };
        });
  };

  eval = lib.evalModules {
    modules = [ stubOptions ] ++ modules;
    specialArgs = {
      # NixOS' pkgs follows nixpkgs.hostPlatform; lazily, so modules may set it.
      pkgs = if pkgs != null then pkgs
        else import ./pkgs.nix { inherit lib; system = eval.config.nixpkgs.hostPlatform; };
      modulesPath = "/stub/nixos/modules";
    } // specialArgs;
  };
in
eval
