# A stub of the nixpkgs package set: only the attributes Talaria's Nix files use. Packages are
# real `derivation`s (so `nix flake check --no-build` can instantiate them) whose builder
# always fails: nothing here can be built, and nothing is meant to be.
{ system, lib }:

let
  # A fake package. `extra` attributes are passed to the derivation (strings, paths,
  # derivations, lists of them) so that forcing `drvPath` forces them too.
  mkFake = name: extra:
    let
      drv = derivation ({
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo 'stub nixpkgs: nothing can be built' >&2; exit 1" ];
      } // extra);
    in
    drv // { meta = { }; };

  fake = name: mkFake name { } // { pname = name; };

  # Arguments of builders the stub refuses, as the real builders would.
  require = what: args: names:
    let missing = lib.filter (n: !(args ? ${n})) names;
    in if missing != [ ] then throw "${what}: missing argument `${lib.head missing}'" else true;

  toEnv = v:
    if v == null then ""
    else if lib.isList v then map toEnv v
    else if lib.isAttrs v && !(v ? outPath) then builtins.toJSON v
    else v;

  self = {
    inherit lib system;
    stdenv.hostPlatform.system = system;
    stdenv.isLinux = true;

    callPackage = fn: overrides:
      let f = if builtins.isFunction fn then fn else import fn;
      in f (builtins.intersectAttrs (builtins.functionArgs f) self // overrides);

    rustPlatform.buildRustPackage = args:
      assert require "buildRustPackage" args [ "pname" "version" "src" ];
      let
        lockFile = args.cargoLock.lockFile or (throw "buildRustPackage: give cargoLock.lockFile (or cargoHash)");
        lock = builtins.fromTOML (builtins.readFile lockFile);
        # As nixpkgs' importCargoLock: git dependencies need cargoLock.outputHashes.
        gitDeps = lib.filter (p: lib.hasPrefix "git+" (p.source or "")) (lock.package or [ ]);
        unhashed = lib.filter (p: !((args.cargoLock.outputHashes or { }) ? "${p.name}-${p.version}")) gitDeps;
        name = "${args.pname}-${args.version}";
      in
      if unhashed != [ ] then
        throw "buildRustPackage: no cargoLock.outputHashes for git dependency ${(lib.head unhashed).name}"
      else
        mkFake name
          {
            inherit (args) pname version src;
            cargoLockVersion = builtins.toString lock.version;
            nativeBuildInputs = args.nativeBuildInputs or [ ];
            buildInputs = args.buildInputs or [ ];
            cargoBuildFlags = args.cargoBuildFlags or [ ];
            postInstall = args.postInstall or "";
            doCheck = args.doCheck or true;
          } // {
          inherit (args) pname version;
          meta = args.meta or { };
          passthru = args.passthru or { };
        } // (args.passthru or { });

    mkShell = args: mkFake (args.name or "nix-shell") {
      packages = args.packages or [ ];
      inputsFrom = args.inputsFrom or [ ];
    };

    writeText = name: text: mkFake name { inherit text; };
    writeShellScript = name: text: mkFake name { inherit text; };
    runCommand = name: env: script: mkFake name (lib.mapAttrs (_: toEnv) env // { buildCommand = script; });

    formats.toml = { }: {
      # nixpkgs: a recursive TOML value type; the stub accepts any attribute set.
      type = lib.types.attrsOf lib.types.anything;
      generate = name: value: mkFake name { json = builtins.toJSON value; };
    };

    # pkgs.testers.runNixOSTest, reduced to evaluating each node with the stub NixOS options
    # (so assertions and option types are checked) and keeping the test script as text.
    testers.runNixOSTest = test:
      let
        t = if builtins.isFunction test then test { } else test;
        nodes = lib.mapAttrs
          (name: m: (import ./nixos.nix {
            inherit lib system;
            pkgs = self;
            modules = [ m { networking.hostName = lib.mkDefault name; } ];
          }).config)
          (t.nodes or { });
        testScript =
          if builtins.isFunction t.testScript then t.testScript { inherit nodes; } else t.testScript;
      in
      mkFake "vm-test-run-${t.name}" {
        toplevels = lib.mapAttrsToList (_: c: c.system.build.toplevel) nodes;
        inherit testScript;
      } // { inherit nodes testScript; };

    nixos = modules: import ./nixos.nix { inherit lib system; pkgs = self; modules = lib.toList modules; };
  }
  # Leaf packages the module, the package and the shell refer to.
  // lib.genAttrs [
    "bash" "cacert" "cargo" "cargo-nextest" "clippy" "coreutils" "curl" "dbus" "findutils"
    "gawk" "git" "gitMinimal" "gnugrep" "gnused" "jq" "libseccomp" "pkg-config" "python3"
    "rust-analyzer" "rustc" "rustfmt" "systemd" "util-linux"
  ]
    fake;
in
self
