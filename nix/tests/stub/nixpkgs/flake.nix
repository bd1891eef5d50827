# A stand-in for nixpkgs, for `scripts/check-nix.sh` on machines that cannot fetch it:
#   nix eval --override-input nixpkgs path:nix/tests/stub/nixpkgs …
# It provides `lib` (with `nixosSystem`) and `legacyPackages.<system>`; see ./lib.nix.
{
  description = "stub nixpkgs for offline evaluation checks (nothing builds)";

  outputs = { self }:
    let
      lib = import ./lib.nix // {
        nixosSystem = { modules, system ? null, specialArgs ? { }, ... }:
          import ./nixos.nix { inherit lib modules system specialArgs; };
      };
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ]
        (system: import ./pkgs.nix { inherit lib system; });
    };
}
