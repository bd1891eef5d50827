# services.talaria: Talaria's four units on NixOS — the gateway (socket-activated HTTP API),
# the agent and the executor (D-Bus activated) and the scheduler, grouped under talaria.target.
#
# The unit files, D-Bus activation files, bus policy, polkit actions and tmpfiles entries are
# the package's own (rendered from ../systemd when it is built). This module turns them on and
# changes, through drop-ins, only what its options change from the shipped values (./units.nix
# records those): it keeps no second copy of a unit. It must never put a secret into the Nix
# store, which every local user can read.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.talaria;
  inherit (lib) mkOption mkEnableOption mkIf mkMerge types;

  toml = pkgs.formats.toml { };
  shipped = import ./units.nix;
  home = "/var/lib/talaria";

  # ---- secrets --------------------------------------------------------------------------------

  # A path literal (./key) is copied into the store as soon as it is interpolated; a string
  # under the store directory already is there. `toString` never copies.
  inStore = v: builtins.isPath v || lib.hasPrefix "${builtins.storeDir}/" (toString v);
  notInStore = name: value: {
    assertion = value == null || !(inStore value);
    message = "services.talaria.${name} (${toString value}) is in the Nix store, or is a path literal that would be copied there, and every local user can read the store: give the path of a file outside it, as a string (\"/etc/talaria/credentials/...\").";
  };
  credentialLines = lib.mapAttrsToList (id: file: "${id}:${toString file}");

  # LoadCredential= is a list keyed by ID in which the first assignment of an ID wins, so a
  # different file needs the shipped list reset (the empty entry) and restated.
  credentialsOverride = name: wanted:
    mkIf (wanted != credentialLines shipped.units.${name}.credentials) {
      systemd.services.${shipped.units.${name}.unit}.serviceConfig.LoadCredential = [ "" ] ++ wanted;
    };
  agentCredentials =
    lib.optional (cfg.modelApiKeyFile != null) "model-api-key:${toString cfg.modelApiKeyFile}"
    ++ credentialLines cfg.credentials;

  # ---- files in /etc --------------------------------------------------------------------------

  configFile = toml.generate "talaria-config.toml" cfg.settings;
  validPolicyName = name: builtins.match "[A-Za-z0-9_-]+" name != null;
  policyFile = name: value:
    if builtins.isAttrs value && !(value ? outPath)
    # A bad name is reported by an assertion; it must not break the store path first.
    then toml.generate "talaria-policy-${if validPolicyName name then name else "invalid"}.toml" value
    else value;
  policyEtc = lib.mapAttrs'
    (name: value: lib.nameValuePair "talaria/policies/${name}.toml" { source = policyFile name value; })
    cfg.policies;
  policySources = map (e: e.source) (builtins.attrValues policyEtc);

  # ---- ExecStart overrides --------------------------------------------------------------------

  # One ExecStart argument: as is when it is a plain word, else double-quoted with systemd's
  # specifier (%) and variable ($) expansion escaped.
  execArg = a:
    let s = toString a;
    in
    if builtins.match "[A-Za-z0-9_./:@=,+-]+" s != null then s
    else "\"${lib.replaceStrings [ "\\" "\"" "%" "$" ] [ "\\\\" "\\\"" "%%" "$$" ] s}\"";
  wantedArgs = {
    gateway = shipped.argv "gateway" { inherit (cfg.gateway) idleExit extraArgs; };
    agent = shipped.argv "agent" {
      inherit (cfg.agent) idleExit extraArgs;
      moreAllowUsers = cfg.agent.allowUsers;
    };
    executor = shipped.argv "executor" { inherit (cfg.executor) extraArgs; };
    scheduler = shipped.argv "scheduler" { inherit (cfg.scheduler) extraArgs; };
  };
  # Only when the options change the command line. The empty first entry clears the shipped
  # ExecStart (a service has one).
  execStartOverride = name:
    let u = shipped.units.${name};
    in mkIf (wantedArgs.${name} != shipped.argv name { }) {
      systemd.services.${u.unit}.serviceConfig.ExecStart = [
        ""
        (lib.concatMapStringsSep " " execArg ([ "${cfg.package}/bin/${u.binary}" ] ++ wantedArgs.${name}))
      ];
    };

  # ---- the gateway's listeners ----------------------------------------------------------------

  # ListenStream= values: "8642", "0.0.0.0:8642", "[::]:8642" or a socket path (no port).
  listenPort = s:
    let m = builtins.match "(.*:)?([0-9]+)" s;
    in if m == null then null else lib.toInt (builtins.elemAt m 1);
  gatewayPorts = lib.unique (lib.filter (p: p != null) (map listenPort cfg.gateway.listen));
  isLocal = s: lib.hasPrefix "127." s || lib.hasPrefix "[::1]:" s || lib.hasPrefix "localhost:" s
    || lib.hasPrefix "/" s;

  # ---- options --------------------------------------------------------------------------------

  extraArgsOption = what: mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [ "--some-flag" "value" ];
    description = "Arguments appended to the ${what}'s command line (the shipped ExecStart is replaced by the same command plus these).";
  };
  idleExitOption = what: default: mkOption {
    type = types.nullOr types.ints.positive;
    inherit default;
    example = 300;
    description = "Seconds without a request after which the ${what} exits (`--idle-exit`); it is activated again on the next call. Null: it runs until stopped. The default is the shipped unit's.";
  };
  secretFileOption = what: nullable: mkOption {
    type = if nullable then types.nullOr types.path else types.path;
    default = shipped.units.${if what == "gateway-key" then "gateway" else "agent"}.credentials.${what};
    example = "/run/secrets/talaria-${what}";
    description = ''
      File holding the ${what}, read by systemd (as root) and handed to the unit with
      `LoadCredential=${what}:FILE`. Give a string outside the Nix store (the store is
      world-readable); a path literal such as `./key` is refused. The default is the shipped
      unit's; the file must exist when the unit starts.
    '' + lib.optionalString nullable " Null: no ${what} (e.g. a local model server that needs none).";
  };
in
{
  options.services.talaria = {
    enable = mkEnableOption "Talaria, the self-hosted AI agent (gateway, agent, executor and scheduler units)";

    package = mkOption {
      type = types.package;
      default = pkgs.talaria;
      defaultText = lib.literalExpression "pkgs.talaria";
      description = "The Talaria package; its units, D-Bus files, polkit actions and tmpfiles entries are the ones installed.";
    };

    settings = mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''
        {
          model.base_url = "http://127.0.0.1:8080/v1";
          model.name = "qwen3-32b";
          agent.max_iterations = 60;
        }
      '';
      description = ''
        The agent's configuration (`talaria config keys` lists every key), written to
        /etc/talaria/config.toml and linked as ${home}/home/config.toml (the units' Talaria
        home is `home/` under their state directory; sessions work in `workspace/`). It is
        world-readable: never put `model.api_key` here, use
        {option}`services.talaria.modelApiKeyFile`. Empty: ${home}/home/config.toml is left
        alone.
      '';
    };

    policies = mkOption {
      type = types.attrsOf (types.either types.path toml.type);
      default = { };
      example = lib.literalExpression ''
        {
          ci = ./policies/ci.toml;
          site = { description = "…"; backends = [ "landlock" ]; network.mode = "off"; };
        }
      '';
      description = "Sandbox policies installed as /etc/talaria/policies/NAME.toml: a file, or the policy as TOML attributes (format: policies/README.md).";
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/talaria-agent.env";
      description = "One more EnvironmentFile= for the agent (after the shipped, optional /etc/talaria/agent.env), read by systemd as root. Must not be in the Nix store.";
    };
    gatewayKeyFile = secretFileOption "gateway-key" false;
    modelApiKeyFile = secretFileOption "model-api-key" true;
    credentials = mkOption {
      type = types.attrsOf types.path;
      default = { };
      example = { search-api-key = "/run/secrets/search-api-key"; };
      description = "More credentials for the agent: ID → file outside the Nix store, passed as `LoadCredential=ID:FILE` ($CREDENTIALS_DIRECTORY/ID in the unit).";
    };

    logLevel = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "info,talaria_agent=debug";
      description = "TALARIA_LOG of every unit: a level or tracing directives. Null: the daemons' default (info).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the TCP ports of {option}`services.talaria.gateway.listen` in the firewall (see also gateway.allowedAddresses).";
    };

    gateway = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to start the gateway's socket (the OpenAI-compatible HTTP API). Off: the socket and the service are masked.";
      };
      listen = mkOption {
        type = types.listOf types.str;
        default = shipped.gatewayListen;
        example = [ "0.0.0.0:8642" "[::]:8642" ];
        description = "The gateway socket's ListenStream= values; they replace the shipped one.";
      };
      allowedAddresses = mkOption {
        type = types.listOf types.str;
        default = shipped.gatewayIPAddressAllow;
        example = [ "localhost" "192.0.2.0/24" ];
        description = "IPAddressAllow= of the gateway socket (everything else is denied by the shipped IPAddressDeny=any); replaces the shipped list. Widen it with gateway.listen for remote clients.";
      };
      idleExit = idleExitOption "gateway" shipped.units.gateway.idleExit;
      extraArgs = extraArgsOption "gateway";
    };

    agent = {
      allowUsers = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "alice" ];
        description = "Users (names or uids) allowed to call the agent besides the gateway and the scheduler (`--allow-user`). The bus policy must let them through too.";
      };
      idleExit = idleExitOption "agent" shipped.units.agent.idleExit;
      extraArgs = extraArgsOption "agent";
    };

    executor = {
      # No idleExit: background processes live in the executor's cgroup and would die with it.
      extraArgs = extraArgsOption "executor";
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = with pkgs; [ bash coreutils findutils gnugrep gnused gawk gitMinimal ];
        defaultText = lib.literalExpression "with pkgs; [ bash coreutils findutils gnugrep gnused gawk gitMinimal ]";
        description = "Packages on the executor's PATH, i.e. the commands tools can run (the terminal tool runs bash).";
      };
    };

    scheduler = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to start the scheduler with talaria.target. Off: the unit is masked.";
      };
      extraArgs = extraArgsOption "scheduler";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        (notInStore "environmentFile" cfg.environmentFile)
        (notInStore "gatewayKeyFile" cfg.gatewayKeyFile)
        (notInStore "modelApiKeyFile" cfg.modelApiKeyFile)
        {
          assertion = !(cfg.settings ? model && cfg.settings.model ? api_key);
          message = "services.talaria.settings.model.api_key would put the key in the world-readable Nix store: use services.talaria.modelApiKeyFile (or environmentFile).";
        }
        {
          assertion = !(cfg.credentials ? model-api-key);
          message = "services.talaria.credentials.model-api-key: use services.talaria.modelApiKeyFile for that credential.";
        }
        {
          assertion = !cfg.gateway.enable || cfg.gateway.listen != [ ];
          message = "services.talaria.gateway.listen is empty: give an address or set gateway.enable = false.";
        }
      ]
      ++ lib.mapAttrsToList (id: file: notInStore "credentials.${id}" file) cfg.credentials
      ++ lib.mapAttrsToList
        (id: _: {
          assertion = builtins.match "[A-Za-z0-9_.-]+" id != null;
          message = "services.talaria.credentials: `${id}' is not a valid credential ID (letters, digits, _ . -).";
        })
        cfg.credentials
      ++ lib.mapAttrsToList
        (name: _: {
          assertion = validPolicyName name;
          message = "services.talaria.policies: `${name}' is not a valid policy name (letters, digits, _ -).";
        })
        cfg.policies;

      warnings =
        lib.optional (cfg.gateway.enable && cfg.openFirewall && lib.all isLocal cfg.gateway.listen)
          "services.talaria.openFirewall opens ${lib.concatMapStringsSep ", " toString gatewayPorts}, but the gateway listens on loopback only (gateway.listen)."
        ++ lib.optional (cfg.gateway.enable && !(lib.all isLocal cfg.gateway.listen)
          && cfg.gateway.allowedAddresses == shipped.gatewayIPAddressAllow)
          "services.talaria.gateway.listen is not loopback-only, but gateway.allowedAddresses still admits localhost only: remote clients are refused.";

      # The CLI, and share/polkit-1/actions linked into /run/current-system/sw for polkitd.
      environment.systemPackages = [ cfg.package ];
      security.polkit.enable = lib.mkDefault true;
      # share/dbus-1/system.d (bus policy) and system-services (activation of the four names).
      services.dbus.packages = [ cfg.package ];
      # lib/systemd/{system,user}: the units come from the package; below are drop-ins.
      systemd.packages = [ cfg.package ];
      # lib/tmpfiles.d: /etc/talaria/credentials (0700 root) and the state directories.
      systemd.tmpfiles.packages = [ cfg.package ];

      # NixOS does not read sysusers.d by default (systemd.sysusers.enable): the users and
      # groups of the package's lib/sysusers.d/talaria.conf, declared here.
      users.users = {
        talaria = {
          isSystemUser = true;
          group = "talaria";
          inherit home;
          description = "Talaria agent and executor";
        };
        talaria-gateway = {
          isSystemUser = true;
          group = "talaria-gateway";
          home = "/var/lib/talaria-gateway";
          description = "Talaria gateway";
        };
        talaria-scheduler = {
          isSystemUser = true;
          group = "talaria-scheduler";
          home = "/var/lib/talaria-scheduler";
          description = "Talaria scheduler";
        };
      };
      # talaria-admins: people who may manage scheduler jobs (bus policy; polkit still asks).
      users.groups = { talaria = { }; talaria-gateway = { }; talaria-scheduler = { }; talaria-admins = { }; };

      environment.etc = policyEtc;

      # NixOS ignores the [Install] sections of package units: the shipped ones, restated.
      systemd.targets.talaria.wantedBy = [ "multi-user.target" ];

      # The commands tools run are looked up on this PATH (NixOS sets one for every service it
      # knows; without this drop-in the executor would get systemd's FHS default).
      systemd.services.talaria-executor.path = cfg.executor.path;
    }

    # Drop-ins for what the options change, and nothing else: a unit without one is exactly
    # the shipped file.
    (credentialsOverride "agent" agentCredentials)
    (mkIf (cfg.environmentFile != null) {
      systemd.services.talaria-agent.serviceConfig.EnvironmentFile = toString cfg.environmentFile;
    })
    (execStartOverride "agent")
    (execStartOverride "executor")

    (mkIf (cfg.settings != { }) {
      environment.etc."talaria/config.toml".source = configFile;
      # The agent reads <state>/home/config.toml; "L+" replaces whatever is there with the link.
      systemd.tmpfiles.rules = [ "L+ ${home}/home/config.toml - - - - /etc/talaria/config.toml" ];
      systemd.services.talaria-agent.restartTriggers = [ configFile ];
    })

    (mkIf (cfg.policies != { }) {
      systemd.services.talaria-agent.restartTriggers = policySources;
      systemd.services.talaria-executor.restartTriggers = policySources;
    })

    (mkIf (cfg.logLevel != null) {
      systemd.services = lib.genAttrs
        ([ "talaria-agent" "talaria-executor" ]
          ++ lib.optional cfg.gateway.enable "talaria-gateway"
          ++ lib.optional cfg.scheduler.enable "talaria-scheduler")
        (_: { environment.TALARIA_LOG = cfg.logLevel; });
    })

    (mkIf cfg.gateway.enable (mkMerge [
      {
        systemd.sockets.talaria-gateway = {
          wantedBy = [ "talaria.target" ];
          # The empty first entries drop the shipped values; these replace them.
          listenStreams = mkIf (cfg.gateway.listen != shipped.gatewayListen) ([ "" ] ++ cfg.gateway.listen);
          socketConfig = mkIf (cfg.gateway.allowedAddresses != shipped.gatewayIPAddressAllow) {
            IPAddressAllow = [ "" ] ++ cfg.gateway.allowedAddresses;
          };
        };
        networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall gatewayPorts;
      }
      (credentialsOverride "gateway" [ "gateway-key:${toString cfg.gatewayKeyFile}" ])
      (execStartOverride "gateway")
    ]))
    (mkIf (!cfg.gateway.enable) {
      # Masked (linked to /dev/null): nothing starts them, not even a D-Bus activation.
      systemd.sockets.talaria-gateway.enable = false;
      systemd.services.talaria-gateway.enable = false;
    })

    (mkIf cfg.scheduler.enable (mkMerge [
      { systemd.services.talaria-scheduler.wantedBy = [ "talaria.target" ]; }
      (execStartOverride "scheduler")
    ]))
    (mkIf (!cfg.scheduler.enable) {
      systemd.services.talaria-scheduler.enable = false;
    })
  ]);
}
