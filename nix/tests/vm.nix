# NixOS VM test (checks.<system>.vm): the module, its units from the package, and a fake
# OpenAI-compatible model (./fake-model.py). A chat request to the gateway must come back with
# the output of a command the executor ran in its sandbox: the model asks for
# `echo sandboxed-$((6*7))` and then only quotes the tool result, so "sandboxed-42" in the
# answer means the command really ran. Secrets are written at runtime, never into the store.
{ nixosModule }:

let
  modelPort = 8000;
  gatewayPort = 8642;
  # The shipped unit's path (no drop-in), and a path of our own (a LoadCredential= drop-in that
  # must reset the shipped one, or the agent would look for the shipped file and not start).
  gatewayKey = "/etc/talaria/credentials/gateway-key";
  modelKey = "/run/keys/talaria-model-api-key";
  modelLog = "/var/lib/fake-model/requests.jsonl";
in
{
  name = "talaria";

  nodes.machine = { pkgs, ... }: {
    imports = [ nixosModule ];

    virtualisation.memorySize = 2048;
    environment.systemPackages = [ pkgs.curl ];

    systemd.services.fake-model = {
      wantedBy = [ "multi-user.target" ];
      # The fake's own key is test data, not a secret: the agent must present the same value,
      # which it only gets from the model-api-key credential written below at runtime.
      environment = { FAKE_MODEL_API_KEY = "model-secret"; FAKE_MODEL_LOG = modelLog; };
      serviceConfig = {
        ExecStart = "${pkgs.python3}/bin/python3 ${./fake-model.py} ${toString modelPort}";
        StateDirectory = "fake-model";
      };
    };

    services.talaria = {
      enable = true;
      settings.model = {
        base_url = "http://127.0.0.1:${toString modelPort}/v1";
        name = "fake";
      };
      # Strings, not path literals: the files appear at runtime (testScript) and stay out of
      # the store; the module refuses store paths.
      gatewayKeyFile = gatewayKey;
      modelApiKeyFile = modelKey;
      logLevel = "debug";
      # Exercises an ExecStart override (the shipped agent exits after 900 idle seconds).
      agent.idleExit = 600;
    };
  };

  testScript = ''
    import json
    import shlex

    machine.wait_for_unit("multi-user.target")
    machine.wait_for_unit("fake-model.service")
    machine.wait_for_open_port(${toString modelPort})
    machine.wait_for_unit("talaria-gateway.socket")

    with subtest("the units are the package's, with the module's drop-ins"):
        machine.succeed("systemctl cat talaria-gateway.service | grep -qx 'LoadCredential=gateway-key:${gatewayKey}'")
        machine.succeed("systemctl cat talaria-agent.service | grep -qx 'LoadCredential='")
        machine.succeed("systemctl cat talaria-agent.service | grep -qx 'LoadCredential=model-api-key:${modelKey}'")
        machine.succeed("systemctl show -p ExecStart --value talaria-agent.service | grep -q -- '--idle-exit 600 '")
        # Enabled through talaria.target, as the shipped [Install] sections say.
        machine.wait_for_unit("talaria.target")
        machine.wait_for_unit("talaria-scheduler.service")
        machine.succeed("systemctl show -p Listen --value talaria-gateway.socket | grep -q '127.0.0.1:${toString gatewayPort}'")
        machine.succeed("test -L /var/lib/talaria/home/config.toml")
        machine.succeed("grep -q 'base_url' /etc/talaria/config.toml")

    with subtest("secrets are created at runtime, outside the store"):
        machine.succeed(
            "install -d -m 0700 /etc/talaria/credentials /run/keys",
            "head -c 24 /dev/urandom | base64 | tr -d '/+=\\n' > ${gatewayKey}",
            "printf model-secret > ${modelKey}",
            "chmod 0400 ${gatewayKey} ${modelKey}",
        )
        key = machine.succeed("cat ${gatewayKey}").strip()
        assert len(key) >= 16, key

    url = "http://127.0.0.1:${toString gatewayPort}/v1/chat/completions"
    body = json.dumps({
        "model": "talaria",
        "messages": [{"role": "user", "content": "Run the check and tell me what it printed."}],
    })

    with subtest("the gateway refuses a wrong key"):
        code = machine.succeed(
            "curl -s -o /dev/null -w '%{http_code}' --max-time 60 "
            "-H 'Authorization: Bearer wrong-key' -H 'Content-Type: application/json' "
            f"--data-raw {shlex.quote(body)} {url}"
        ).strip()
        assert code in ("401", "403"), f"wrong key answered with HTTP {code}"

    with subtest("a chat request runs a sandboxed command through the executor"):
        answer = machine.succeed(
            "curl -sS --fail-with-body --max-time 300 "
            f"-H {shlex.quote('Authorization: Bearer ' + key)} -H 'Content-Type: application/json' "
            f"--data-raw {shlex.quote(body)} {url}"
        )
        print(f"gateway answered: {answer}")
        assert "sandboxed-42" in answer, f"the answer lacks the command's output: {answer}"

        # The model saw the command's output as a tool result: it came from the executor.
        requests = [json.loads(line) for line in machine.succeed("cat ${modelLog}").splitlines()]
        tool_results = [
            m for r in requests for m in r.get("messages", [])
            if m.get("role") == "tool" and "sandboxed-42" in json.dumps(m.get("content"))
        ]
        assert tool_results, f"no tool result with sandboxed-42 reached the model: {requests}"

        machine.succeed("systemctl is-active talaria-agent.service")
        machine.succeed("systemctl is-active talaria-executor.service")
        machine.succeed("test -n \"$(journalctl -u talaria-executor.service -o cat --no-pager)\"")
        machine.succeed("systemctl show -p User --value talaria-executor.service | grep -qx talaria")
  '';
}
