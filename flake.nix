{
  description = "Talaria: a self-hosted, self-improving AI agent for Linux servers";

  # The lock pins a revision of this branch; see nix/README.md for how it was chosen and
  # what was (not) verified. The workspace needs rustc >= 1.89 (edition 2024), which rules
  # out nixos-24.11 and older.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # The module with the package of this flake as its default (built with this flake's
      # nixpkgs, as tested here); `services.talaria.package` still overrides it.
      nixosModule = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.talaria.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.talaria;
      };
    in
    {
      packages = forAllSystems (_: pkgs: rec {
        talaria = pkgs.callPackage ./nix/package.nix { };
        default = talaria;
      });

      apps = forAllSystems (system: _: rec {
        talaria = {
          type = "app";
          program = "${self.packages.${system}.talaria}/bin/talaria";
          meta.description = "The talaria command (chat, serve, sessions, config, doctor)";
        };
        default = talaria;
      });

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${system}.talaria ]; # cargo, rustc, pkg-config, libseccomp
          # dbus: the bus tests start private dbus-daemons.
          packages = with pkgs; [ clippy rustfmt cargo-nextest rust-analyzer dbus ];
        };
      });

      nixosModules.default = nixosModule;
      nixosModules.talaria = nixosModule;

      overlays.default = final: _prev: {
        talaria = final.callPackage ./nix/package.nix { };
      };

      checks = forAllSystems (system: pkgs: {
        package = self.packages.${system}.talaria;

        # Cheap: evaluates a NixOS system with every option of the module set (assertions,
        # option types, unit drop-ins) and builds nothing but a text file. Its derivation
        # records the system's .drv path without depending on it.
        module-eval =
          let
            nixos = lib.nixosSystem {
              modules = [
                self.nixosModules.default
                {
                  nixpkgs.hostPlatform = system;
                  boot.isContainer = true;
                  system.stateVersion = "25.05";
                  services.talaria = {
                    enable = true;
                    settings.model = { base_url = "http://127.0.0.1:8000/v1"; name = "fake"; };
                    policies.ci = { description = "ci"; backends = [ "landlock" ]; };
                    gatewayKeyFile = "/run/keys/talaria-gateway-key";
                    modelApiKeyFile = "/run/keys/talaria-model-api-key";
                    environmentFile = "/run/keys/talaria.env";
                    credentials.search-api-key = "/run/keys/search-api-key";
                    gateway = { listen = [ "[::]:8642" ]; idleExit = 600; };
                    openFirewall = true;
                    agent.allowUsers = [ "alice" ];
                    executor.extraArgs = [ "--some-flag" "100%" ];
                    logLevel = "debug";
                  };
                }
              ];
            };
          in
          pkgs.runCommand "talaria-module-eval"
            {
              toplevel = builtins.unsafeDiscardStringContext nixos.config.system.build.toplevel.drvPath;
            } ''echo "$toplevel" > "$out"'';

        # The whole suite in a VM: gateway → agent → executor → sandboxed command → model.
        vm = pkgs.testers.runNixOSTest (import ./nix/tests/vm.nix { nixosModule = self.nixosModules.default; });
      });
    };
}
