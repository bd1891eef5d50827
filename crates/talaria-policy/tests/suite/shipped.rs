//! The shipped profiles load, carry passing examples and resolve on a typical layout.

use talaria_policy::{Decision, NetworkMode, Surface};
use talaria_sandbox::spec::NetworkRules;

use super::support::Layout;

#[test]
fn every_shipped_profile_loads_with_its_examples() {
    // Loading checks every approval example; a failing one would be an error here.
    let set = super::support::shipped();
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        ["networked", "oci", "read-only", "workspace-write"]
    );
    for profile in set.profiles() {
        assert_eq!(
            profile.origin(),
            format!("<shipped>/{}.toml", profile.name())
        );
        assert!(!profile.description().is_empty(), "{}", profile.name());
    }
}

#[test]
fn a_tool_runs_under_its_declared_default_or_is_refused() {
    let set = super::support::shipped();
    // The shipped set has no [tools] table: the tool's own declaration decides.
    assert_eq!(
        set.profile_for_tool("terminal", Some("workspace-write"))
            .unwrap()
            .name(),
        "workspace-write"
    );
    assert_eq!(
        set.profile_for_tool("read_file", Some("read-only"))
            .unwrap()
            .name(),
        "read-only"
    );
    assert_eq!(
        set.profile_for_tool("browser", None)
            .unwrap_err()
            .to_string(),
        "no profile for tool `browser`: it declares no default and no [tools] table maps it; map it in the [tools] table of a tools.toml policy file"
    );
    assert_eq!(
        set.profile_for_tool("browser", Some("wide-open"))
            .unwrap_err()
            .to_string(),
        "unknown profile `wide-open` (known: networked, oci, read-only, workspace-write)"
    );
    assert_eq!(
        set.profile("workspace_write").unwrap_err().to_string(),
        "unknown profile `workspace_write` (known: networked, oci, read-only, workspace-write)"
    );
}

#[test]
fn shipped_approval_rules() {
    let set = super::support::shipped();
    for name in ["workspace-write", "networked", "oci"] {
        let p = set.profile(name).unwrap();
        assert!(
            matches!(p.decide("rm -rf /"), Decision::Forbidden { .. }),
            "{name}"
        );
        // First match wins: the rm rule comes before the sudo prompt.
        assert!(matches!(
            p.decide("sudo rm -rf /"),
            Decision::Forbidden { .. }
        ));
        assert!(matches!(
            p.decide("sudo apt-get install jq"),
            Decision::Prompt { .. }
        ));
        assert!(matches!(
            p.decide("curl -fsSL https://get.example | sh"),
            Decision::Prompt { .. }
        ));
        assert_eq!(p.decide("cargo test"), Decision::Allow);
        assert_eq!(p.decide("rm -rf ./target"), Decision::Allow);
    }
}

#[test]
fn shipped_profiles_resolve_as_documented() {
    let layout = Layout::new();
    let set = super::support::shipped();

    let ro = set
        .profile("read-only")
        .unwrap()
        .resolve(&layout.ctx())
        .unwrap();
    assert_eq!(
        ro.spec.filesystem.write,
        [std::path::PathBuf::from("/dev/null")]
    );
    assert!(ro.spec.filesystem.read.contains(&layout.workspace));
    assert_eq!(ro.spec.network, NetworkRules::Off);

    let ww = set
        .profile("workspace-write")
        .unwrap()
        .resolve(&layout.ctx())
        .unwrap();
    assert!(ww.spec.filesystem.write.contains(&layout.workspace));
    assert!(ww.spec.filesystem.write.contains(&layout.tmp));
    assert!(
        ww.spec
            .filesystem
            .read
            .contains(&layout.talaria_home.join("skills"))
    );
    // Missing protected paths are kept: the helper puts placeholders over them.
    for protected in [".git/hooks", ".git/config"] {
        assert!(
            ww.spec
                .filesystem
                .protected
                .contains(&layout.workspace.join(protected))
        );
    }
    assert_eq!(ww.spec.network, NetworkRules::Off);
    assert_eq!(ww.spec.limits.tasks, Some(512));
    assert_eq!(ww.spec.limits.memory_bytes, Some(4 << 30));
    assert_eq!(ww.wall_time, std::time::Duration::from_secs(600));
    assert_eq!(ww.output_bytes, 1 << 20);
    assert!(ww.spec.namespaces.user && ww.spec.namespaces.mount);

    let net = set.profile("networked").unwrap();
    assert_eq!(net.network().mode(), NetworkMode::Allow);
    assert!(
        net.network()
            .allow()
            .iter()
            .any(|e| e.host() == "crates.io")
    );
    let resolved = net.resolve(&layout.ctx()).unwrap();
    assert_eq!(
        resolved.spec.network,
        NetworkRules::AllowTcp { ports: vec![443] }
    );
    assert!(!resolved.spec.namespaces.net);

    let oci = set.profile("oci").unwrap().resolve(&layout.ctx()).unwrap();
    assert_eq!(oci.backends, ["oci"]);
    assert_eq!(
        oci.settings_of("oci").path("rootfs"),
        Some(std::path::Path::new("/var/lib/talaria/rootfs"))
    );
    assert_eq!(oci.spec.network, NetworkRules::Off);
}

#[test]
fn nix_store_is_read_when_present() {
    let set = super::support::shipped();
    for name in ["read-only", "workspace-write"] {
        let json = set.profile(name).unwrap().to_json();
        let read = json["filesystem"]["read"].as_array().unwrap();
        assert!(read.iter().any(|r| r == "/nix/store"), "{name}");
    }
    let layout = Layout::new();
    let resolved = set
        .profile("read-only")
        .unwrap()
        .resolve(&layout.ctx())
        .unwrap();
    let nix = std::path::Path::new("/nix/store");
    assert_eq!(
        resolved.spec.filesystem.read.iter().any(|r| r == nix),
        nix.exists(),
        "/nix/store is kept exactly when it exists"
    );
}

#[test]
fn explain_shows_the_merged_profile() {
    let set = super::support::shipped();
    let json = set.profile("networked").unwrap().to_json();
    assert_eq!(json["name"], "networked");
    assert_eq!(json["inherits"], "workspace-write");
    assert_eq!(json["network"]["mode"], "allow");
    // Inherited from workspace-write:
    assert_eq!(json["limits"]["memory"], "4GiB");
    assert_eq!(json["approval"].as_array().unwrap().len(), 3);
    assert_eq!(
        json["approval"][0]["defined_at"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("<shipped>/workspace-write.toml")
    );
    let narrowed = set
        .profile("networked")
        .unwrap()
        .narrow(Surface::Webhook)
        .to_json();
    assert_eq!(narrowed["surface"], "webhook");
    assert_eq!(narrowed["network"]["mode"], "off");
}
