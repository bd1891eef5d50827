{
  description = "Talaria: a self-hosted, self-improving AI agent for Linux servers";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        talaria = pkgs.rustPlatform.buildRustPackage {
          pname = "talaria";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "-p" "talaria" ];
          # The test suite starts loopback servers and child processes; ./test.sh runs it.
          doCheck = false;
          meta = {
            description = "Self-hosted AI agent for Linux servers";
            mainProgram = "talaria";
            platforms = pkgs.lib.platforms.linux;
          };
        };
        default = talaria;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt pkgs.cargo-nextest ];
        };
      });
    };
}
