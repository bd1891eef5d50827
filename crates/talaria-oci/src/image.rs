//! The container's root filesystem from `oci.rootfs`: a plain directory is used as it is; an
//! OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) is unpacked once into a cache
//! directory named after its manifest digest and reused from there.
//!
//! Unpacking verifies the sha256 of every blob it reads (index entries, manifest, layers), so a
//! cached root filesystem is exactly the image the digest names. Layers are `tar` or
//! `tar+gzip`; whiteouts (`.wh.NAME`, `.wh..wh..opq`) are applied; device nodes, FIFOs and
//! extended attributes in layers are skipped (the container gets its devices from the runtime);
//! entries that would land outside the root (`..`, absolute links) are refused by the `tar`
//! crate. An unpack happens in a temporary directory renamed into place, so a crash never
//! leaves a half-unpacked cache entry that later runs would trust.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const INDEX_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("root filesystem {path} does not exist or is not a directory")]
    Missing { path: PathBuf },
    #[error("image {path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("image {path}: blob {digest} does not match its digest")]
    Digest { path: PathBuf, digest: String },
    #[error("image {path}: layer media type {media_type} is not supported (tar or tar+gzip only)")]
    LayerType { path: PathBuf, media_type: String },
    #[error("image {path}: cannot read {what}: {source}")]
    Io {
        path: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    layers: Vec<Descriptor>,
}

/// The directory to use as the container's root: `rootfs` itself, or its unpacked image under
/// `cache`.
///
/// # Errors
/// A missing path, a malformed layout, a digest mismatch, an unsupported layer type, or I/O.
pub fn prepare(rootfs: &Path, cache: &Path) -> Result<PathBuf, ImageError> {
    let rootfs = std::fs::canonicalize(rootfs).map_err(|_| ImageError::Missing {
        path: rootfs.to_owned(),
    })?;
    if !rootfs.is_dir() {
        return Err(ImageError::Missing { path: rootfs });
    }
    if !rootfs.join("oci-layout").is_file() {
        return Ok(rootfs);
    }
    ImageLayout { path: rootfs }.unpack_cached(cache)
}

struct ImageLayout {
    path: PathBuf,
}

impl ImageLayout {
    fn layout_err(&self, message: impl Into<String>) -> ImageError {
        ImageError::Layout {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn io_err(&self, what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
        let path = self.path.clone();
        let what = what.into();
        move |source| ImageError::Io { path, what, source }
    }

    fn unpack_cached(&self, cache: &Path) -> Result<PathBuf, ImageError> {
        let index: Index = serde_json::from_slice(
            &std::fs::read(self.path.join("index.json")).map_err(self.io_err("index.json"))?,
        )
        .map_err(|e| self.layout_err(format!("index.json: {e}")))?;
        let manifest_desc = self.pick_manifest(index.manifests)?;
        // Cached under the manifest's digest: the image it names was verified when unpacked.
        let key = hex_of(&manifest_desc.digest)?;
        let target = cache.join(&key);
        if target.join("rootfs").is_dir() {
            return Ok(target.join("rootfs"));
        }
        let manifest_bytes = self.read_blob(&manifest_desc.digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| self.layout_err(format!("manifest {}: {e}", manifest_desc.digest)))?;
        std::fs::create_dir_all(cache).map_err(self.io_err("the image cache"))?;
        let staging = cache.join(format!(".unpack-{key}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let rootfs = staging.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(self.io_err("the image cache"))?;
        let unpacked = manifest
            .layers
            .iter()
            .try_for_each(|layer| self.apply_layer(layer, &rootfs));
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&staging, &target) {
            let _ = std::fs::remove_dir_all(&staging);
            // Another helper unpacked the same image meanwhile.
            if !target.join("rootfs").is_dir() {
                return Err(self.io_err("the image cache")(e));
            }
        }
        Ok(target.join("rootfs"))
    }

    /// The manifest for this machine: the only one, or the one whose platform matches;
    /// an index is followed one level.
    fn pick_manifest(&self, manifests: Vec<Descriptor>) -> Result<Descriptor, ImageError> {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let mut candidates: Vec<Descriptor> = manifests
            .into_iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_none_or(|p| p.os == "linux" && p.architecture == arch)
            })
            .collect();
        if candidates.len() != 1 {
            return Err(self.layout_err(format!(
                "index.json must name exactly one manifest for linux/{arch}, found {}",
                candidates.len()
            )));
        }
        let desc = candidates.remove(0);
        if INDEX_MEDIA_TYPES.contains(&desc.media_type.as_str()) {
            let nested: Index = serde_json::from_slice(&self.read_blob(&desc.digest)?)
                .map_err(|e| self.layout_err(format!("index {}: {e}", desc.digest)))?;
            let inner = self.pick_manifest(nested.manifests)?;
            if INDEX_MEDIA_TYPES.contains(&inner.media_type.as_str()) {
                return Err(self.layout_err("nested indexes deeper than one level"));
            }
            return Ok(inner);
        }
        if !desc.media_type.is_empty() && !MANIFEST_MEDIA_TYPES.contains(&desc.media_type.as_str())
        {
            return Err(self.layout_err(format!(
                "unsupported manifest media type {}",
                desc.media_type
            )));
        }
        Ok(desc)
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.path.join("blobs").join("sha256").join(hex_of(digest)?))
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let bytes = std::fs::read(self.blob_path(digest)?).map_err(self.io_err(digest))?;
        if format!("sha256:{}", hex(&Sha256::digest(&bytes))) != digest {
            return Err(ImageError::Digest {
                path: self.path.clone(),
                digest: digest.to_owned(),
            });
        }
        Ok(bytes)
    }

    fn apply_layer(&self, layer: &Descriptor, rootfs: &Path) -> Result<(), ImageError> {
        let file =
            File::open(self.blob_path(&layer.digest)?).map_err(self.io_err(&layer.digest))?;
        let mut hashing = HashingReader {
            inner: BufReader::new(file),
            hasher: Sha256::new(),
        };
        let media = layer.media_type.as_str();
        let result = if media.ends_with("tar+gzip") || media.ends_with("tar.gzip") {
            unpack_tar(flate2::read::GzDecoder::new(&mut hashing), rootfs)
        } else if media.ends_with(".tar") || media.ends_with("layer.v1.tar") {
            unpack_tar(&mut hashing, rootfs)
        } else {
            return Err(ImageError::LayerType {
                path: self.path.clone(),
                media_type: layer.media_type.clone(),
            });
        };
        result.map_err(self.io_err(format!("layer {}", layer.digest)))?;
        // Read what the tar reader left (padding), so the digest covers the whole blob.
        io::copy(&mut hashing, &mut io::sink()).map_err(self.io_err(&layer.digest))?;
        if format!("sha256:{}", hex(&hashing.hasher.finalize())) != layer.digest {
            return Err(ImageError::Digest {
                path: self.path.clone(),
                digest: layer.digest.clone(),
            });
        }
        Ok(())
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Apply one layer to `rootfs`.
fn unpack_tar(reader: impl Read, rootfs: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Paths this layer wrote, which an opaque whiteout in the same layer must not remove.
    let mut written: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalized(&entry.path()?)?;
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let parent = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        if name == ".wh..wh..opq" {
            let dir = rootfs.join(&parent);
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children.flatten() {
                    let rel = parent.join(child.file_name());
                    if !written.contains(&rel) {
                        remove_any(&child.path())?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_any(&rootfs.join(&parent).join(hidden))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        // A directory replacing a file or the other way round: remove the old one first.
        let target = rootfs.join(&path);
        if let Ok(meta) = std::fs::symlink_metadata(&target)
            && (meta.is_dir() != kind.is_dir())
        {
            remove_any(&target)?;
        }
        entry.unpack_in(rootfs)?;
        for ancestor in path.ancestors() {
            if !written.insert(ancestor.to_owned()) {
                break;
            }
        }
    }
    Ok(())
}

/// A tar path without `.` and leading `/`; `..` is refused.
fn normalized(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::other(format!(
                    "layer entry {} leaves the root filesystem",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn hex_of(digest: &str) -> Result<String, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err(ImageError::Layout {
            path: PathBuf::new(),
            message: format!("digest {digest:?} is not a sha256 digest"),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The `sha256:…` digest of `bytes`, for writing image layouts (tests, tools).
#[must_use]
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}
