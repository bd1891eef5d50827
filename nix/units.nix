# What the shipped system units (../systemd/system) contain that the module must restate when
# it overrides a line: an ExecStart= override replaces the whole command, and a LoadCredential=
# reset drops every shipped credential. scripts/check-nix.sh renders the shipped ExecStart
# lines with `argv` and compares them with the unit files, word for word.
rec {
  units = {
    gateway = {
      unit = "talaria-gateway";
      binary = "talaria-gatewayd";
      args = [ "--bus" "system" ];
      idleExit = null;
      allowUsers = [ ];
      credentials = { gateway-key = "/etc/talaria/credentials/gateway-key"; };
    };
    agent = {
      unit = "talaria-agent";
      binary = "talaria-agentd";
      # The scheduler runs each job for the person who created it (on_behalf_of).
      args = [ "--bus" "system" "--deputy-user" "talaria-scheduler" ];
      idleExit = 900;
      # The bus policy (org.talaria.conf) lets the same users call Agent1.
      allowUsers = [ "talaria-gateway" "talaria-scheduler" ];
      credentials = { model-api-key = "/etc/talaria/credentials/model-api-key"; };
    };
    # No idle exit, by design: background processes live in the executor's cgroup.
    executor = {
      unit = "talaria-executor";
      binary = "talaria-executord";
      args = [ "--bus" "system" "--agent-user" "talaria" ];
      idleExit = null;
      allowUsers = [ ];
      credentials = { };
    };
    # No idle exit, by design: an exited scheduler could not fire the next job.
    scheduler = {
      unit = "talaria-scheduler";
      binary = "talaria-schedulerd";
      args = [ "--bus" "system" ];
      idleExit = null;
      # The agent creates jobs the model asks for; people go through polkit.
      allowUsers = [ "talaria" ];
      credentials = { };
    };
  };

  # The gateway socket's shipped [Socket] lists.
  gatewayListen = [ "127.0.0.1:8642" ];
  gatewayIPAddressAllow = [ "localhost" ];

  # A daemon's arguments after the binary, in the shipped units' order. With no overrides this
  # is exactly the shipped ExecStart.
  argv = name: { idleExit ? units.${name}.idleExit, moreAllowUsers ? [ ], extraArgs ? [ ] }:
    let u = units.${name};
    in
    u.args
    ++ (if idleExit == null then [ ] else [ "--idle-exit" (toString idleExit) ])
    ++ builtins.concatLists (map (user: [ "--allow-user" user ]) (u.allowUsers ++ moreAllowUsers))
    ++ extraArgs;
}
