# A stub of the part of nixpkgs' `lib` that Talaria's Nix files use, for checks on a machine
# that cannot fetch nixpkgs (scripts/check-nix.sh). It is NOT nixpkgs: where the module relies
# on the real semantics it follows them — option priorities (mkDefault, mkForce, option
# defaults), mkIf/mkMerge/mkOverride pushed down to the options they set, type checks with
# the option named in the error, `apply`, submodules with `name`, "option does not exist",
# "used but not defined" — and nothing more. When a real nixpkgs is at hand the flake's
# `checks` are the authority.
let
  inherit (builtins)
    all any attrNames concatLists concatStringsSep elem filter foldl' functionArgs genList
    hasAttr head intersectAttrs isAttrs isBool isFloat isFunction isInt isList isPath
    isString length listToAttrs map mapAttrs match removeAttrs replaceStrings stringLength
    substring tail toJSON typeOf;

  lib = rec {
    inherit all any attrNames concatLists concatStringsSep elem filter foldl' genList head
      isAttrs isBool isFunction isInt isList isString length listToAttrs map mapAttrs
      replaceStrings tail toJSON;
    inherit (builtins) attrValues elemAt hasAttr isPath removeAttrs toString;

    # ---- lists, attrsets, strings ------------------------------------------------------------
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: as: if cond then as else { };
    optionalString = cond: s: if cond then s else "";
    concatMap = f: xs: concatLists (map f xs);
    concatMapStrings = f: xs: concatStringsSep "" (map f xs);
    concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
    flatten = x: if isList x then concatMap flatten x else [ x ];
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    last = xs: builtins.elemAt xs (length xs - 1);
    toList = x: if isList x then x else [ x ];
    id = x: x;
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    filterAttrs = pred: set:
      listToAttrs (concatMap (n: optional (pred n set.${n}) { name = n; value = set.${n}; })
        (attrNames set));
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    recursiveUpdate = a: b:
      a // mapAttrs (n: v:
        if isAttrs v && a ? ${n} && isAttrs a.${n} then recursiveUpdate a.${n} v else v) b;
    attrByPath = path: default: set:
      if path == [ ] then set
      else if isAttrs set && set ? ${head path} then attrByPath (tail path) default set.${head path}
      else default;
    hasPrefix = pre: s: substring 0 (stringLength pre) s == pre;
    hasSuffix = suf: s:
      let n = stringLength s; m = stringLength suf;
      in n >= m && substring (n - m) m s == suf;
    removePrefix = pre: s:
      if hasPrefix pre s then substring (stringLength pre) (stringLength s) s else s;
    toInt = s:
      if match "0|[1-9][0-9]*" s != null then builtins.fromJSON s
      else throw "lib.toInt: ${s} is not a decimal integer";
    boolToString = b: if b then "true" else "false";
    isDerivation = x: isAttrs x && x ? type && x.type == "derivation";
    # As nixpkgs: a direct child of the store directory (not a path below one).
    isStorePath = x:
      let s = builtins.toString x;
      in (isString x || isPath x || (isAttrs x && x ? outPath))
        && substring 0 1 s == "/" && dirOf s == builtins.storeDir;
    # As nixpkgs: leave "safe" words alone, single-quote the rest.
    escapeShellArg = arg:
      let s = builtins.toString arg;
      in if match "[[:alnum:],._+:@%/-]+" s != null then s
      else "'${replaceStrings [ "'" ] [ "'\\''" ] s}'";
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
    getExe = drv: "${drv}/bin/${drv.meta.mainProgram or drv.pname or drv.name}";
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    licenses.asl20 = { spdxId = "Apache-2.0"; shortName = "asl20"; };
    platforms.linux = [ "x86_64-linux" "aarch64-linux" "i686-linux" "armv7l-linux" "riscv64-linux" ];

    # lib.fileset, reduced to what a package source needs: the union of some files and
    # directories under `root`, copied to the store with nothing else.
    fileset = {
      unions = paths: { _type = "fileset"; inherit paths; };
      toSource = { root, fileset }:
        let
          keep = map builtins.toString (if isPath fileset then [ fileset ] else fileset.paths);
          missing = filter (p: !builtins.pathExists p) keep;
        in
        if missing != [ ] then throw "lib.fileset.toSource: ${head missing} does not exist"
        else builtins.path {
          path = root;
          name = "source";
          filter = path: _type:
            any (k: path == k || hasPrefix "${k}/" path || hasPrefix "${path}/" k) keep;
        };
    };

    # ---- the module system ---------------------------------------------------------------------
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
    };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    literalMD = text: { _type = "literalMD"; inherit text; };
    mdDoc = s: s;

    showOption = loc: concatStringsSep "." loc;
    isOption = x: isAttrs x && (x._type or null) == "option";
    isProperty = x: isAttrs x && elem (x._type or null) [ "if" "merge" "override" ];

    # mkIf/mkMerge/mkOverride around an attribute set become the same properties around each
    # of its attributes, so the set of defined names is known without forcing a condition
    # (which may depend on the config being computed).
    pushDownProperties = loc: v:
      if !(isAttrs v) then
        throw "The option `${showOption loc}' is not a leaf option; it must be defined by an attribute set, not ${typeOf v}."
      else if (v._type or null) == "merge" then concatMap (pushDownProperties loc) v.contents
      else if (v._type or null) == "if" then
        map (mapAttrs (_: mkIf v.condition)) (pushDownProperties loc v.content)
      else if (v._type or null) == "override" then
        map (mapAttrs (_: mkOverride v.priority)) (pushDownProperties loc v.content)
      else [ v ];

    # The definitions that survive their conditions, each with its priority.
    dischargeProperties = loc: prio: file: v:
      if (v._type or null) == "merge" then
        concatMap (dischargeProperties loc prio file) v.contents
      else if (v._type or null) == "if" then
        if !(isBool v.condition) then
          throw "The condition of a mkIf for `${showOption loc}' is not a Boolean (in ${file})."
        else if v.condition then dischargeProperties loc prio file v.content
        else [ ]
      else if (v._type or null) == "override" then
        dischargeProperties loc v.priority file v.content
      else [{ inherit file; priority = prio; value = v; }];

    showValue = v:
      if isString v then "\"${v}\""
      else if isPath v then builtins.toString v
      else if isAttrs v && v ? outPath then "<derivation ${v.name or "?"}>"
      else if isAttrs v then "{ ${concatStringsSep "; " (attrNames v)} }"
      else if isList v then "[ ${concatStringsSep " " (map showValue v)} ]"
      else if isFunction v then "<function>"
      else if v == null then "null"
      else builtins.toString v;

    # Merge the definitions `defs` ([{ file; value; }], properties not yet discharged) of a
    # value of type `type` at `loc`. `default`, when given, has the option-default priority.
    mergeDefinitions = loc: type: defs: extra:
      let
        discharged = concatMap (d: dischargeProperties loc 100 d.file d.value) defs
          ++ optional (extra ? default) { file = "the option's default"; priority = 1500; value = extra.default; };
        best = foldl' (m: d: if d.priority < m then d.priority else m) 9999 discharged;
        chosen = filter (d: d.priority == best) discharged;
        bad = filter (d: !(type.check d.value)) chosen;
      in
      {
        isDefined = chosen != [ ];
        value =
          if chosen == [ ] then
            throw "The option `${showOption loc}' is used but not defined."
          else if bad != [ ] then
            throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition value: ${showValue (head bad).value} (in ${(head bad).file})"
          else type.merge loc chosen;
      };

    evalOptionValue = loc: opt: defs:
      let
        merged = (mergeDefinitions loc (opt.type or types.unspecified) defs opt).value;
      in
      if opt ? apply then opt.apply merged else merged;

    # Options tree + definitions → config tree.
    evalNode = loc: opts: defs:
      if isOption opts then evalOptionValue loc opts defs
      else
        let
          pushed = concatMap (d: map (value: { inherit (d) file; inherit value; })
            (pushDownProperties loc d.value)) defs;
          undeclared = filter (d: any (n: !(opts ? ${n})) (attrNames d.value)) pushed;
          firstBad = head undeclared;
          badName = head (filter (n: !(opts ? ${n})) (attrNames firstBad.value));
        in
        if undeclared != [ ] then
          throw "The option `${showOption (loc ++ [ badName ])}' does not exist. Definition in ${firstBad.file}."
        else
          mapAttrs
            (name: sub: evalNode (loc ++ [ name ]) sub
              (concatMap (d: optional (d.value ? ${name}) { inherit (d) file; value = d.value.${name}; }) pushed))
            opts;

    mergeOptionDecls = loc: a: b:
      a // mapAttrs
        (n: v:
          if !(a ? ${n}) then v
          else if isOption v || isOption a.${n} then
            throw "The option `${showOption (loc ++ [ n ])}' is declared more than once."
          else mergeOptionDecls (loc ++ [ n ]) a.${n} v)
        b;

    # evalModules { modules; specialArgs; } → { config; options; }.
    evalModules = { modules, specialArgs ? { }, prefix ? [ ] }:
      let
        args = { inherit lib config options; } // specialArgs;
        # Like nixpkgs: a module function is called with every module argument; one it names
        # that nobody provides fails when used, naming the argument.
        applyModule = f:
          f (mapAttrs (n: _: throw "A module argument `${n}' is used but no module provides it.")
            (functionArgs f) // args);
        collect = file: m:
          let
            isFile = isPath m || isString m;
            file' = if isFile then builtins.toString m else file;
            raw = if isFile then import m else m;
            v = if isFunction raw then applyModule raw else raw;
            explicit = v ? options || v ? config;
            file'' = v._file or file';
            unknown = filter (n: !(elem n [ "imports" "options" "config" "_file" "key" "meta" ])) (attrNames v);
            self = {
              file = file'';
              options = v.options or { };
              config =
                if !explicit then removeAttrs v [ "imports" "_file" "key" "meta" ]
                else if unknown != [ ] then
                  throw "Module `${file''}' has an unsupported attribute `${head unknown}' next to `config'/`options'."
                else v.config or { };
            };
          in
          [ self ] ++ concatMap (collect file'') (v.imports or [ ]);
        collected = concatLists (genList (i: collect "<module ${builtins.toString i}>" (builtins.elemAt modules i)) (length modules));
        options = foldl' (mergeOptionDecls prefix) { } (map (m: m.options) collected);
        config = evalNode prefix options (map (m: { inherit (m) file; value = m.config; }) collected);
      in
      { inherit config options; };

    mergeEqualOption = loc: defs:
      let first = head defs;
      in
      if all (d: d.value == first.value) defs then first.value
      else throw "The option `${showOption loc}' has conflicting definition values: ${concatStringsSep ", " (map (d: "${showValue d.value} (in ${d.file})") defs)}.";

    mergeOneOption = loc: defs:
      if length defs == 1 then (head defs).value
      else mergeEqualOption loc defs;

    mkOptionType = { name, description ? name, check ? (_: true), merge ? mergeEqualOption, ... }@t:
      t // { inherit name description check merge; _type = "option-type"; };

    types = rec {
      bool = mkOptionType { name = "bool"; description = "boolean"; check = isBool; };
      int = mkOptionType { name = "int"; description = "signed integer"; check = isInt; };
      float = mkOptionType { name = "float"; check = isFloat; };
      ints = {
        positive = mkOptionType { name = "positiveInt"; description = "positive integer, meaning >0"; check = v: isInt v && v > 0; };
        unsigned = mkOptionType { name = "unsignedInt"; description = "unsigned integer, meaning >=0"; check = v: isInt v && v >= 0; };
      };
      port = mkOptionType {
        name = "port";
        description = "16 bit unsigned integer";
        check = v: isInt v && v >= 0 && v <= 65535;
      };
      str = mkOptionType { name = "str"; description = "string"; check = isString; };
      nonEmptyStr = mkOptionType {
        name = "nonEmptyStr";
        description = "non-empty string";
        check = v: isString v && match "[[:space:]]*" v == null;
      };
      lines = mkOptionType {
        name = "lines";
        description = "strings concatenated with \"\\n\"";
        check = isString;
        merge = _: defs: concatStringsSep "\n" (map (d: d.value) defs);
      };
      path = mkOptionType {
        name = "path";
        description = "path";
        check = v:
          isPath v || (isAttrs v && v ? outPath)
          || (isString v && substring 0 1 v == "/");
      };
      package = mkOptionType {
        name = "package";
        description = "package";
        check = v: isDerivation v || isStorePath v;
        merge = mergeOneOption;
      };
      attrs = mkOptionType {
        name = "attrs";
        description = "attribute set";
        check = isAttrs;
        merge = _: defs: foldl' (a: d: a // d.value) { } defs;
      };
      raw = mkOptionType { name = "raw"; merge = mergeOneOption; };
      unspecified = anything;
      anything = mkOptionType {
        name = "anything";
        description = "anything";
        merge = loc: defs:
          let values = map (d: d.value) defs;
          in
          if all (v: isAttrs v && !(isDerivation v) && !(v ? outPath)) values then
            (attrsOf anything).merge loc defs
          else if all isList values then concatLists values
          else if any isFunction values then
            (if length defs == 1 then head values
            else throw "The option `${showOption loc}' has conflicting function definitions.")
          else mergeEqualOption loc defs;
      };
      enum = values: mkOptionType {
        name = "enum";
        description = "one of ${concatStringsSep ", " (map showValue values)}";
        check = v: elem v values;
      };
      nullOr = t: mkOptionType {
        name = "nullOr";
        description = "null or ${t.description}";
        check = v: v == null || t.check v;
        merge = loc: defs:
          let nulls = filter (d: d.value == null) defs;
          in
          if nulls == defs then null
          else if nulls == [ ] then t.merge loc defs
          else throw "The option `${showOption loc}' is defined both null and not null.";
        nestedTypes.elemType = t;
      };
      either = a: b: mkOptionType {
        name = "either";
        description = "${a.description} or ${b.description}";
        check = v: a.check v || b.check v;
        merge = loc: defs:
          if all (d: a.check d.value) defs then a.merge loc defs
          else if all (d: b.check d.value) defs then b.merge loc defs
          else throw "The option `${showOption loc}' has definitions of different types.";
      };
      oneOf = ts: foldl' either (head ts) (tail ts);
      listOf = t: mkOptionType {
        name = "listOf";
        description = "list of ${t.description}";
        check = isList;
        merge = loc: defs:
          let
            elems = concatMap (d: genList (i: { inherit (d) file; value = builtins.elemAt d.value i; })
              (length d.value)) defs;
            bad = filter (e: !(t.check e.value)) elems;
          in
          if bad != [ ] then
            throw "A definition for option `${showOption loc}' is not of type `list of ${t.description}'. Element: ${showValue (head bad).value} (in ${(head bad).file})"
          else map (e: t.merge (loc ++ [ "*" ]) [ e ]) elems;
        nestedTypes.elemType = t;
      };
      attrsOf = t: mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${t.description}";
        check = isAttrs;
        merge = loc: defs:
          let
            names = unique (concatMap (d: attrNames d.value) defs);
            merged = map
              (n: {
                name = n;
                r = mergeDefinitions (loc ++ [ n ]) t
                  (concatMap (d: optional (d.value ? ${n}) { inherit (d) file; value = d.value.${n}; }) defs)
                  { };
              })
              names;
          in
          # Like nixpkgs' attrsOf: a name whose definitions all vanished (mkIf false) is absent.
          listToAttrs (map (m: { inherit (m) name; value = m.r.value; }) (filter (m: m.r.isDefined) merged));
        nestedTypes.elemType = t;
      };
      lazyAttrsOf = attrsOf;
      submoduleWith = { modules, specialArgs ? { } }: mkOptionType {
        name = "submodule";
        description = "submodule";
        check = v: isAttrs v || isFunction v;
        merge = loc: defs:
          (evalModules {
            modules = modules ++ map (d: { _file = d.file; config = d.value; }) defs;
            specialArgs = specialArgs // { name = lib.last loc; };
            prefix = loc;
          }).config;
      };
      submodule = m: submoduleWith { modules = toList m; };
    };
  };
in
lib
