//! Root filesystems from OCI image layouts: unpacked once per manifest digest, whiteouts
//! applied, digests verified.

use std::path::Path;

use talaria_oci::image::sha256_digest;

use super::support::{Fixture, build_busybox_rootfs};

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
    digest
}

/// An image layout: busybox as a gzip layer, then an uncompressed layer that deletes `bin/ls`
/// and adds `etc/motd`. Returns the manifest digest.
fn write_layout(layout: &Path) -> Option<String> {
    let staging = tempfile::tempdir().unwrap();
    build_busybox_rootfs(staging.path())?;
    let mut base = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    base.follow_symlinks(false);
    base.append_dir_all(".", staging.path()).unwrap();
    let base = base.into_inner().unwrap().finish().unwrap();

    let mut top = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("bin/.wh.ls", &b""[..]),
        ("etc/motd", &b"from layer two\n"[..]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        top.append_data(&mut header, path, data).unwrap();
    }
    let top = top.into_inner().unwrap();

    let base_digest = write_blob(layout, &base);
    let top_digest = write_blob(layout, &top);
    let config = write_blob(
        layout,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 0},
        "layers": [
            {"mediaType": GZIP_LAYER, "digest": base_digest, "size": base.len()},
            {"mediaType": TAR_LAYER, "digest": top_digest, "size": top.len()},
        ],
    });
    let manifest_digest = write_blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": 0}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    Some(manifest_digest)
}

#[test]
fn an_image_layout_is_unpacked_once_and_runs() {
    let Some(fx) = Fixture::new() else { return };
    let layout = fx.base().join("layout");
    let Some(digest) = write_layout(&layout) else {
        return;
    };
    let mut plan = fx.plan();
    plan.rootfs = layout.clone();
    let mut helper = fx.helper("s");
    let ran = helper.run(
        &plan,
        &fx.sh(
            "cat /etc/motd; [ -e /bin/ls ] && echo ls-present; [ -e /bin/cat ] && echo cat-present",
        ),
    );
    assert_eq!(ran.ok(), "from layer two\ncat-present\n");
    let cached = fx
        .images()
        .join(digest.trim_start_matches("sha256:"))
        .join("rootfs");
    assert!(cached.join("bin/busybox").is_file());
    assert!(!cached.join("bin/ls").exists());

    // A second session uses the cache (the layout's blobs are not read again).
    std::fs::remove_dir_all(layout.join("blobs")).unwrap();
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let blobs_gone_but_cached = fx.helper("t").run(&plan, &fx.sh("echo cached"));
    assert_eq!(blobs_gone_but_cached.ok(), "cached\n");
}

#[test]
fn a_tampered_layer_is_refused() {
    let Some(fx) = Fixture::new() else { return };
    let layout = fx.base().join("layout");
    if write_layout(&layout).is_none() {
        return;
    }
    // Flip a byte of the biggest blob (the busybox layer).
    let blob = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let mut plan = fx.plan();
    plan.rootfs = layout;
    let error = fx.helper("s").refused(&plan, &fx.sh("true"));
    assert!(
        error.contains("does not match its digest") || error.contains("cannot read layer"),
        "{error}"
    );
    assert!(
        std::fs::read_dir(fx.images()).unwrap().count() == 0,
        "a tampered image was cached"
    );
}
