//! Images shipped over SSH instead of pulled from a registry (the Pis have none): what a
//! node holds (the record of which archive each image came from, read by a shell command
//! that starts no `docker`; the image itself, asked through the Engine API), the platforms
//! an archive provides as each image store reads it, how a daemon's answers about its
//! image store and its images are read, the record written after a load, and `teardown
//! --purge`'s removal. The load itself is a request of [`crate::docker::api`]
//! (`POST /images/load`, `POST /images/create`); shipping (which node, in parallel) is
//! `deploy`'s: see `crate::deploy::images`.
//!
//! Two image stores: the classic one (graph drivers, the default up to Docker 28) loads a
//! `docker save` archive by its `manifest.json`, one image of one platform; the containerd
//! one (the default from Docker 29, `"features": {"containerd-snapshotter": true}` in 28)
//! imports the archive's OCI index, every platform it holds, and unpacks only the node's
//! own. There an image of another platform loads without an error, and inspecting it
//! answers with no architecture: so an image is present on a node only when the daemon
//! has it for the node's platform ([`usable`]), and a load is judged by the same test.
//! Image ids differ between the stores (the config's digest; the manifest's or index's):
//! rpiprov never compares them, only the archive's sha256 it records.

use std::collections::HashMap;

use serde::Deserialize;

use crate::docker::paths::{image_record, images_dir};
use crate::shell::quote;

/// An image to check or load on a node.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
}

/// What an image record holds: the archive's sha256 and the image name.
pub fn image_record_line(sha256: &str, image: &str) -> String {
    format!("{sha256} {image}")
}

/// One round trip per node, no `docker` process: each image's record, by index, as
/// `record I TEXT` (`TEXT` empty when there is none). Read by [`parse_recorded`].
pub fn images_recorded(images: &[ImageRef<'_>]) -> String {
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            format!(
                "printf 'record {i} %s\\n' \"$(cat {rec} 2>/dev/null)\"",
                rec = quote(&image_record(img.name)),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads [`images_recorded`]'s answer: whether each image's record names the same
/// archive.
pub fn parse_recorded(output: &str, images: &[ImageRef<'_>]) -> Result<Vec<bool>, String> {
    let mut seen: Vec<Option<bool>> = vec![None; images.len()];
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("record ") else {
            continue;
        };
        let (i, text) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Some(i) = i.parse::<usize>().ok().filter(|i| *i < images.len()) {
            let img = images[i];
            seen[i] = Some(text.trim() == image_record_line(img.sha256, img.name));
        }
    }
    seen.iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| format!("the image check did not answer for image {i}")))
        .collect()
}

/// After a load that gave the node the image: records which archive it came from.
pub fn image_recorded(img: &ImageRef<'_>) -> String {
    format!(
        "mkdir -p {dir} && printf '%s\\n' {line} > {rec}",
        dir = quote(&images_dir()),
        line = quote(&image_record_line(img.sha256, img.name)),
        rec = quote(&image_record(img.name)),
    )
}

/// The platform an image is built for, as Docker names it: `amd64`, `arm64`, `arm` ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub arch: String,
    /// `v7`, `v6`, `v8`, or empty.
    pub variant: String,
    /// Where it was read: `the image config` or `ELF header of bin/busybox`.
    pub from: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.variant.is_empty() {
            write!(f, "{}", self.arch)
        } else {
            write!(f, "{}/{}", self.arch, self.variant)
        }
    }
}

/// Docker's architecture for a node's userland (`dpkg --print-architecture`, or
/// `uname -m` where there is no dpkg).
pub fn docker_arch(node: &str) -> &str {
    match node {
        "armhf" | "armel" | "armv7l" | "armv6l" => "arm",
        "aarch64" => "arm64",
        "x86_64" => "amd64",
        "i386" | "i686" => "386",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

/// Whether a node of this userland architecture runs an image of this platform.
pub fn runs_on(image: &Platform, node_arch: &str) -> bool {
    docker_arch(node_arch) == image.arch
}

/// The platforms an image archive provides, as each image store reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePlatforms {
    /// What the classic store loads: the image `manifest.json` names first (a `docker
    /// save` archive), or what the binaries of a root file system are built for.
    pub classic: Option<Platform>,
    /// What the containerd store can unpack: each image of the OCI index (`index.json`,
    /// nested indexes followed) whose manifest and config the archive holds.
    pub indexed: Vec<Platform>,
}

impl ArchivePlatforms {
    /// The platforms a node of this store would get from the archive (none: unknown).
    pub fn loaded_by(&self, containerd: bool) -> Vec<&Platform> {
        if containerd && !self.indexed.is_empty() {
            self.indexed.iter().collect()
        } else {
            self.classic.iter().collect()
        }
    }
}

/// The platforms in words: `arm64 (the image config), arm/v7 (the OCI index)`.
pub fn describe(platforms: &[&Platform]) -> String {
    platforms
        .iter()
        .map(|p| format!("{p} ({})", p.from))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most of an archive's small files kept to read its manifests and configs.
const KEPT: usize = 64 << 20;
/// A file larger than this is a layer, never a manifest or a config.
const SMALL: u64 = 4 << 20;

/// Reads the platforms of an image archive: for a `docker save` archive (Docker's format
/// or an OCI layout, both as `docker save` writes them since Docker 25), the
/// `architecture` of the config `manifest.json` names first, and of each image of its OCI
/// index; for a root file system, the ELF header of its first binary (those under `bin/`
/// and `sbin/` first). Gzipped archives are read too. Empty when the archive does not
/// tell.
pub fn archive_platforms(
    format: crate::config::ImageFormat,
    bytes: &[u8],
) -> Result<ArchivePlatforms, String> {
    use std::io::Read;
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut kept = 0usize;
    let mut elf: Option<(bool, String, Vec<u8>)> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read the archive: {e}"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        match format {
            crate::config::ImageFormat::DockerSave => {
                let wanted = path.ends_with(".json") || path.starts_with("blobs/");
                if wanted && entry.size() < SMALL && kept + (entry.size() as usize) <= KEPT {
                    let mut buf = Vec::new();
                    entry
                        .read_to_end(&mut buf)
                        .map_err(|e| format!("cannot read {path}: {e}"))?;
                    kept += buf.len();
                    files.insert(path, buf);
                }
            }
            crate::config::ImageFormat::Rootfs => {
                let preferred = ["bin/", "sbin/", "usr/bin/", "usr/sbin/"]
                    .iter()
                    .any(|d| path.starts_with(d));
                if elf.as_ref().is_some_and(|(p, _, _)| *p || !preferred) {
                    continue;
                }
                let mut head = [0u8; 20];
                if entry.size() >= 20
                    && entry.read_exact(&mut head).is_ok()
                    && head.starts_with(b"\x7fELF")
                {
                    elf = Some((preferred, path, head.to_vec()));
                }
            }
        }
    }
    match format {
        crate::config::ImageFormat::DockerSave => Ok(ArchivePlatforms {
            classic: classic_platform(&files)?,
            indexed: indexed_platforms(&files),
        }),
        crate::config::ImageFormat::Rootfs => Ok(ArchivePlatforms {
            classic: elf.and_then(|(_, path, head)| {
                elf_arch(&head).map(|arch| Platform {
                    arch: arch.into(),
                    variant: String::new(),
                    from: format!("the ELF header of {path}"),
                })
            }),
            indexed: vec![],
        }),
    }
}

/// An image config's platform (`architecture`, `variant`).
#[derive(Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: String,
}

/// The platform of the config `manifest.json` names first.
fn classic_platform(files: &HashMap<String, Vec<u8>>) -> Result<Option<Platform>, String> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
    }
    let Some(manifest) = files.get("manifest.json") else {
        return Ok(None);
    };
    let list: Vec<Entry> =
        serde_json::from_slice(manifest).map_err(|e| format!("cannot read manifest.json: {e}"))?;
    let Some(first) = list.first() else {
        return Ok(None);
    };
    let Some(config) = files.get(first.config.trim_start_matches("./")) else {
        return Ok(None);
    };
    let c: ConfigPlatform =
        serde_json::from_slice(config).map_err(|e| format!("cannot read {}: {e}", first.config))?;
    Ok((!c.architecture.is_empty()).then(|| Platform {
        arch: c.architecture,
        variant: c.variant,
        from: "the image config".into(),
    }))
}

/// An OCI descriptor, as far as platforms go.
#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    platform: Option<ConfigPlatform>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

/// The blob of a descriptor (`blobs/sha256/HEX`), when the archive holds it.
fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &str) -> Option<&'a [u8]> {
    let (algo, hex) = digest.split_once(':')?;
    files.get(&format!("blobs/{algo}/{hex}")).map(Vec::as_slice)
}

/// Each image of `index.json` the archive holds whole enough to run (its manifest and
/// config), with its platform; attestations (`unknown/unknown`) left out.
fn indexed_platforms(files: &HashMap<String, Vec<u8>>) -> Vec<Platform> {
    fn walk(
        files: &HashMap<String, Vec<u8>>,
        descs: &[Descriptor],
        depth: u8,
        out: &mut Vec<Platform>,
    ) {
        for d in descs {
            let Some(bytes) = blob(files, &d.digest) else {
                continue;
            };
            let nested =
                d.media_type.contains("image.index") || d.media_type.contains("manifest.list");
            if nested {
                if depth < 3
                    && let Ok(index) = serde_json::from_slice::<Index>(bytes)
                {
                    walk(files, &index.manifests, depth + 1, out);
                }
                continue;
            }
            let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
                continue;
            };
            let Some(config) = blob(files, &m.config.digest) else {
                continue;
            };
            let c = match &d.platform {
                Some(p) if !p.architecture.is_empty() => ConfigPlatform {
                    architecture: p.architecture.clone(),
                    variant: p.variant.clone(),
                },
                _ => match serde_json::from_slice::<ConfigPlatform>(config) {
                    Ok(c) => c,
                    Err(_) => continue,
                },
            };
            if c.architecture.is_empty() || c.architecture == "unknown" {
                continue;
            }
            let p = Platform {
                arch: c.architecture,
                variant: c.variant,
                from: "the OCI index".into(),
            };
            if !out
                .iter()
                .any(|o| o.arch == p.arch && o.variant == p.variant)
            {
                out.push(p);
            }
        }
    }
    let Some(index) = files
        .get("index.json")
        .and_then(|b| serde_json::from_slice::<Index>(b).ok())
    else {
        return vec![];
    };
    let mut out = Vec::new();
    walk(files, &index.manifests, 0, &mut out);
    out
}

/// What a daemon says of its image store: the platform it runs images of, and whether
/// its images are containerd's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageStore {
    /// The daemon's architecture as Docker names platforms (`amd64`, `arm64`, `arm`):
    /// `Arch` of `GET /version`; empty when it did not say.
    pub arch: String,
    /// The containerd image store (`DriverStatus` of `GET /info` names the
    /// `io.containerd.snapshotter.v1` driver type).
    pub containerd: bool,
}

impl ImageStore {
    /// Reads `GET /version` and `GET /info`.
    pub fn parse(version: &[u8], info: &[u8]) -> Result<ImageStore, String> {
        #[derive(Deserialize)]
        struct Version {
            #[serde(rename = "Arch", default)]
            arch: String,
        }
        #[derive(Deserialize)]
        struct Info {
            #[serde(
                rename = "DriverStatus",
                default,
                deserialize_with = "crate::docker::null_as_default"
            )]
            driver_status: Vec<Vec<String>>,
        }
        let v: Version = serde_json::from_slice(version)
            .map_err(|e| format!("cannot read the daemon's version: {e}"))?;
        let i: Info = serde_json::from_slice(info)
            .map_err(|e| format!("cannot read the daemon's info: {e}"))?;
        let containerd = i.driver_status.iter().any(|kv| {
            kv.first().is_some_and(|k| k == "driver-type")
                && kv
                    .get(1)
                    .is_some_and(|v| v.starts_with("io.containerd.snapshotter"))
        });
        Ok(ImageStore {
            arch: v.arch,
            containerd,
        })
    }

    /// The store in words, for messages.
    pub fn name(&self) -> &'static str {
        if self.containerd {
            "containerd image store"
        } else {
            "image store"
        }
    }
}

/// What `GET /images/NAME/json` says of an image's platform: on the containerd store, the
/// image for the daemon's own platform, empty when it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Inspected {
    #[serde(rename = "Architecture", default)]
    pub architecture: String,
    #[serde(rename = "Variant", default)]
    pub variant: String,
}

pub fn parse_inspected(body: &[u8]) -> Result<Inspected, String> {
    serde_json::from_slice(body).map_err(|e| format!("cannot read the image's inspect: {e}"))
}

/// Whether the node can run the image it holds: of its own architecture (an image
/// without one runs on the classic store, which loaded it as it came; on the containerd
/// store it is one of another platform only).
pub fn usable(image: &Inspected, store: &ImageStore) -> bool {
    if image.architecture.is_empty() {
        return !store.containerd;
    }
    store.arch.is_empty() || docker_arch(&image.architecture) == docker_arch(&store.arch)
}

/// Which images a node lacks, by index: those without a record of the same archive, that
/// Docker does not have (`None`: it answered 404), or has for another platform only.
pub fn missing(recorded: &[bool], held: &[Option<Inspected>], store: &ImageStore) -> Vec<usize> {
    (0..recorded.len())
        .filter(|&i| {
            !recorded[i]
                || !held
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|img| usable(img, store))
        })
        .collect()
}

/// Reads the JSON stream a load or an import answers with (status 200 even when it
/// failed): the lines it printed, or the error it ended with. A containerd store that
/// imported the archive but could not unpack an image says so in a line of its own.
pub fn parse_progress(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        stream: String,
        #[serde(default)]
        status: String,
        #[serde(default)]
        error: String,
        #[serde(rename = "errorDetail", default)]
        error_detail: Option<Detail>,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        message: String,
    }
    let mut said = Vec::new();
    let text = String::from_utf8_lossy(body);
    for raw in serde_json::Deserializer::from_str(&text).into_iter::<Line>() {
        let line = raw.map_err(|e| format!("cannot read the daemon's answer: {e}"))?;
        let error = line
            .error_detail
            .map(|d| d.message)
            .filter(|m| !m.is_empty())
            .unwrap_or(line.error);
        if !error.is_empty() {
            return Err(error.trim().to_string());
        }
        for l in line.stream.lines().chain(line.status.lines()) {
            let l = l.trim();
            if l.starts_with("Error unpacking image") {
                return Err(l.to_string());
            }
            if !l.is_empty() {
                said.push(l.to_string());
            }
        }
    }
    Ok(said)
}

/// An image name as `POST /images/create` takes it: the repository and the tag
/// (`latest` when none; a registry's port is not a tag).
pub fn repo_and_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// Docker's architecture from an ELF header's class, byte order and machine.
pub fn elf_arch(head: &[u8]) -> Option<&'static str> {
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return None;
    }
    let big = head[5] == 2;
    let machine = if big {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    let bits64 = head[4] == 2;
    Some(match (machine, bits64, big) {
        (3, false, _) => "386",
        (62, true, _) => "amd64",
        (40, false, _) => "arm",
        (183, true, _) => "arm64",
        (21, true, false) => "ppc64le",
        (22, true, _) => "s390x",
        (243, true, _) => "riscv64",
        _ => return None,
    })
}

/// `teardown --purge` on a node: removes each shipped image whose record is there, then
/// the record. Images without a record were not shipped by rpiprov and are left alone.
/// Prints `purged I` per image removed; read by [`parse_purged`].
pub fn images_purge(names: &[&str]) -> String {
    let mut s = String::from("set -e");
    for (i, name) in names.iter().enumerate() {
        s.push_str(&format!(
            "\nif [ -e {rec} ]; then if docker image inspect {n} >/dev/null 2>&1; then docker image rm {n} >/dev/null; fi; rm -f {rec}; echo 'purged {i}'; fi",
            rec = quote(&image_record(name)),
            n = quote(name),
        ));
    }
    s
}

/// The images [`images_purge`] removed, from its output and the names it was given.
pub fn parse_purged<'a>(output: &str, names: &'a [String]) -> Vec<&'a str> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("purged "))
        .filter_map(|i| i.trim().parse::<usize>().ok())
        .filter_map(|i| names.get(i).map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageFormat::{DockerSave, Rootfs};
    use crate::docker::api;
    use crate::testing::script::{ScratchHost, syntax_ok};

    const IMG: ImageRef<'static> = ImageRef {
        name: "lab/httpd:1",
        sha256: "ab12",
    };

    #[test]
    fn image_commands() {
        assert_eq!(
            images_recorded(&[IMG, IMG]),
            "printf 'record 0 %s\\n' \"$(cat /var/lib/rpiprov/images/lab_httpd_1.sha256 2>/dev/null)\"; printf 'record 1 %s\\n' \"$(cat /var/lib/rpiprov/images/lab_httpd_1.sha256 2>/dev/null)\""
        );
        assert_eq!(
            image_recorded(&IMG),
            "mkdir -p /var/lib/rpiprov/images && printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert_eq!(
            images_purge(&["lab/httpd:1"]),
            "set -e\nif [ -e /var/lib/rpiprov/images/lab_httpd_1.sha256 ]; then if docker image inspect lab/httpd:1 >/dev/null 2>&1; then docker image rm lab/httpd:1 >/dev/null; fi; rm -f /var/lib/rpiprov/images/lab_httpd_1.sha256; echo 'purged 0'; fi"
        );
        for s in [
            images_recorded(&[IMG, IMG]),
            image_recorded(&IMG),
            images_purge(&["a", "b c"]),
        ] {
            syntax_ok(&s);
        }
        // The record is read without a docker process.
        assert_eq!(
            crate::remote::stats::docker_calls(&images_recorded(&[IMG])),
            0
        );
    }

    /// The requests of a load, an import and an inspect, as they go on the wire.
    #[test]
    fn image_requests() {
        // Built unversioned; the engine puts the negotiated version on them (`api::at`).
        assert_eq!(api::image_load(vec![]).path, "/images/load?quiet=1");
        let text = |r: api::Request| String::from_utf8(api::at(&r, api::OLDEST).encode()).unwrap();
        assert_eq!(
            text(api::image_load(b"TAR".to_vec())),
            "POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: rpiprov\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\nTAR"
        );
        let import = text(api::image_import(
            "registry.lan:5000/lab/httpd:1",
            &["httpd".into(), "-f".into(), "it's".into()],
            b"ROOTFS".to_vec(),
        ));
        assert!(
            import.starts_with("POST /v1.41/images/create?fromSrc=-&repo=registry.lan%3A5000%2Flab%2Fhttpd&tag=1&changes=CMD%20%5B%22httpd%22%2C%22-f%22%2C%22it%27s%22%5D HTTP/1.1\r\n"),
            "{import}"
        );
        assert!(
            import.ends_with("Content-Length: 6\r\n\r\nROOTFS"),
            "{import}"
        );
        assert!(text(api::image_import("lab/a", &[], vec![])).starts_with(
            "POST /v1.41/images/create?fromSrc=-&repo=lab%2Fa&tag=latest HTTP/1.1\r\n"
        ));
        assert!(
            text(api::image_inspect("registry.lan:5000/lab/httpd:1"))
                .starts_with("GET /v1.41/images/registry.lan:5000/lab/httpd:1/json HTTP/1.1\r\n")
        );
        assert!(
            String::from_utf8(api::at(&api::image_inspect("lab/a:1"), api::NEWEST).encode())
                .unwrap()
                .starts_with("GET /v1.55/images/lab/a:1/json HTTP/1.1\r\n")
        );
        assert_eq!(repo_and_tag("lab/a:1"), ("lab/a", "1"));
        assert_eq!(repo_and_tag("host:5000/a"), ("host:5000/a", "latest"));
    }

    #[test]
    fn records_name_the_archive() {
        let d = ScratchHost::new();
        let read =
            |img: ImageRef<'_>| parse_recorded(&d.run(&images_recorded(&[img]), b"").ok(), &[img]);
        assert_eq!(read(IMG), Ok(vec![false]));
        d.run(&image_recorded(&IMG), b"").ok();
        let rec =
            std::fs::read_to_string(format!("{}/images/lab_httpd_1.sha256", d.root())).unwrap();
        assert_eq!(rec, "ab12 lab/httpd:1\n");
        assert_eq!(read(IMG), Ok(vec![true]));
        // Another archive under the same name is not recorded.
        let other = ImageRef {
            name: "lab/httpd:1",
            sha256: "cd34",
        };
        assert_eq!(read(other), Ok(vec![false]));
        assert_eq!(
            parse_recorded("record 0 ab12 lab/httpd:1\n", &[IMG, IMG]),
            Err("the image check did not answer for image 1".into())
        );
    }

    /// An ELF header of this machine's kind: class, byte order, machine.
    fn elf(bits64: bool, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if bits64 { 2 } else { 1 };
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    fn tar_of(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        if !gzip {
            return bytes;
        }
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&bytes).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn an_archive_says_which_architecture_it_is_built_for() {
        assert_eq!(elf_arch(&elf(true, 183)), Some("arm64"));
        assert_eq!(elf_arch(&elf(false, 40)), Some("arm"));
        assert_eq!(elf_arch(&elf(true, 62)), Some("amd64"));
        assert_eq!(elf_arch(b"#!/bin/sh\necho not an ELF file"), None);
        // A root file system: the binary under bin/ wins over a library elsewhere.
        let rootfs = tar_of(
            &[
                ("www/index.html", b"<p>hi</p>"),
                ("lib/x.so", &elf(true, 62)),
                ("bin/busybox", &elf(true, 183)),
            ],
            false,
        );
        let p = archive_platforms(Rootfs, &rootfs).unwrap().classic.unwrap();
        assert_eq!(
            (p.arch.as_str(), p.from.as_str()),
            ("arm64", "the ELF header of bin/busybox")
        );
        let gz = tar_of(&[("bin/sh", &elf(false, 40))], true);
        let p = archive_platforms(Rootfs, &gz).unwrap();
        assert_eq!(p.classic.unwrap().arch, "arm");
        assert!(p.indexed.is_empty());
        // A `docker save` archive of Docker before 25: the config manifest.json names.
        let save = tar_of(
            &[
                (
                    "abc.json",
                    br#"{"architecture":"arm","variant":"v7","os":"linux"}"#,
                ),
                (
                    "manifest.json",
                    br#"[{"Config":"abc.json","RepoTags":["lab/a:1"],"Layers":[]}]"#,
                ),
            ],
            false,
        );
        let p = archive_platforms(DockerSave, &save).unwrap();
        let classic = p.classic.clone().unwrap();
        assert_eq!(classic.to_string(), "arm/v7");
        assert!(p.indexed.is_empty());
        assert!(runs_on(&classic, "armhf"));
        assert!(!runs_on(&classic, "arm64"));
        assert!(!runs_on(&classic, "amd64"));
        assert_eq!(
            p.loaded_by(true),
            vec![&classic],
            "no index: manifest.json's"
        );
        // Nothing to tell: no guess.
        assert_eq!(
            archive_platforms(Rootfs, &tar_of(&[("etc/motd", b"hello")], false)),
            Ok(ArchivePlatforms::default())
        );
        assert!(
            archive_platforms(DockerSave, b"not a tar")
                .is_ok_and(|p| p == ArchivePlatforms::default())
                || archive_platforms(DockerSave, b"not a tar").is_err()
        );
    }

    /// A blob path and digest of some bytes.
    fn blob(bytes: &[u8]) -> (String, String) {
        use sha2::Digest;
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        (format!("blobs/sha256/{hex}"), format!("sha256:{hex}"))
    }

    /// `docker save` of Docker 25 and later (an OCI layout and manifest.json), of a
    /// multi-platform image as the containerd store saves it: an index of an amd64 and an
    /// arm64 image, an arm/v7 one whose blobs the saving daemon did not have, and an
    /// attestation; manifest.json names the saving daemon's own platform.
    #[test]
    fn an_oci_archive_says_each_platform_it_holds() {
        let cfg = |arch: &str| format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes();
        let (amd_cfg, arm_cfg) = (cfg("amd64"), cfg("arm64"));
        let (amd_cfg_path, amd_cfg_digest) = blob(&amd_cfg);
        let (arm_cfg_path, arm_cfg_digest) = blob(&arm_cfg);
        let manifest = |digest: &str| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}"}},"layers":[]}}"#).into_bytes()
        };
        let (amd_m, arm_m) = (manifest(&amd_cfg_digest), manifest(&arm_cfg_digest));
        let (amd_m_path, amd_m_digest) = blob(&amd_m);
        let (arm_m_path, arm_m_digest) = blob(&arm_m);
        let (_, v7_digest) = blob(b"absent");
        let att = manifest(&amd_cfg_digest);
        let (att_path, att_digest) = blob(&att);
        let m = "application/vnd.oci.image.manifest.v1+json";
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"{m}","digest":"{amd_m_digest}","platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{m}","digest":"{arm_m_digest}","platform":{{"architecture":"arm64","os":"linux"}}}},{{"mediaType":"{m}","digest":"{v7_digest}","platform":{{"architecture":"arm","variant":"v7","os":"linux"}}}},{{"mediaType":"{m}","digest":"{att_digest}","platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#
        )
        .into_bytes();
        let (index_path, index_digest) = blob(&index);
        let top = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{index_digest}","annotations":{{"io.containerd.image.name":"docker.io/lab/a:1"}}}}]}}"#
        )
        .into_bytes();
        let docker =
            format!(r#"[{{"Config":"{amd_cfg_path}","RepoTags":["lab/a:1"],"Layers":[]}}]"#)
                .into_bytes();
        let archive = tar_of(
            &[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("index.json", &top),
                ("manifest.json", &docker),
                (&index_path, &index),
                (&amd_m_path, &amd_m),
                (&arm_m_path, &arm_m),
                (&att_path, &att),
                (&amd_cfg_path, &amd_cfg),
                (&arm_cfg_path, &arm_cfg),
            ],
            false,
        );
        let p = archive_platforms(DockerSave, &archive).unwrap();
        assert_eq!(
            p.classic.as_ref().map(|c| (c.to_string(), c.from.clone())),
            Some(("amd64".into(), "the image config".into())),
            "the config path has no .json: read all the same"
        );
        let indexed: Vec<String> = p.indexed.iter().map(ToString::to_string).collect();
        assert_eq!(indexed, ["amd64", "arm64"]);
        // A classic node gets manifest.json's image, a containerd one the index's.
        assert_eq!(p.loaded_by(false).len(), 1);
        assert_eq!(
            describe(&p.loaded_by(true)),
            "amd64 (the OCI index), arm64 (the OCI index)"
        );
    }

    fn store(arch: &str, containerd: bool) -> ImageStore {
        ImageStore {
            arch: arch.into(),
            containerd,
        }
    }

    #[test]
    fn the_daemon_s_image_store_and_what_it_holds() {
        let version = br#"{"Version":"28.5.2","ApiVersion":"1.51","Arch":"arm64","Os":"linux"}"#;
        let classic = br#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"],["Supports d_type","true"]]}"#;
        let c8d = br#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#;
        assert_eq!(
            ImageStore::parse(version, classic),
            Ok(store("arm64", false))
        );
        assert_eq!(ImageStore::parse(version, c8d), Ok(store("arm64", true)));
        assert_eq!(
            ImageStore::parse(b"{}", br#"{"DriverStatus":null}"#),
            Ok(store("", false))
        );
        assert_eq!(store("", true).name(), "containerd image store");

        let inspected = |body: &str| parse_inspected(body.as_bytes()).unwrap();
        let arm64 = inspected(r#"{"Id":"sha256:1","Architecture":"arm64","Os":"linux"}"#);
        // The containerd store, for an image it holds for other platforms only.
        let other = inspected(r#"{"Id":"sha256:2","Architecture":"","Os":""}"#);
        assert!(usable(&arm64, &store("arm64", false)));
        assert!(usable(&arm64, &store("arm64", true)));
        assert!(!usable(&arm64, &store("amd64", false)));
        assert!(!usable(&other, &store("arm64", true)));
        assert!(usable(&other, &store("arm64", false)));
        assert!(
            usable(&arm64, &store("", false)),
            "an unknown platform refuses nothing"
        );

        // Recorded and held for the node: present; otherwise missing.
        let held = [Some(arm64.clone()), Some(arm64), None, Some(other)];
        assert_eq!(
            missing(&[true, false, true, true], &held, &store("arm64", true)),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn a_load_s_answer_says_how_it_went() {
        assert_eq!(
            parse_progress(b"{\"stream\":\"Loaded image: lab/a:1\\n\"}\r\n"),
            Ok(vec!["Loaded image: lab/a:1".to_string()])
        );
        assert_eq!(
            parse_progress(b"{\"status\":\"sha256:5d1e\"}\n"),
            Ok(vec!["sha256:5d1e".to_string()])
        );
        assert_eq!(
            parse_progress(b"{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\n"),
            Err("unexpected EOF".into())
        );
        assert_eq!(
            parse_progress(b"{\"stream\":\"Loaded image: lab/a:1\\n\"}\n{\"stream\":\"Error unpacking image lab/a:1: no space left on device\\n\"}\n"),
            Err("Error unpacking image lab/a:1: no space left on device".into())
        );
        assert!(parse_progress(b"<html>").is_err());
        assert_eq!(parse_progress(b""), Ok(vec![]));
    }

    #[test]
    fn purge_removes_only_images_rpiprov_shipped() {
        let d = ScratchHost::new();
        let img = ImageRef {
            name: "lab/a:1",
            sha256: "ab12",
        };
        d.run(&image_recorded(&img), b"").ok();
        std::fs::write(d.docker_file("image_lab_a_1"), b"").unwrap();
        let names = vec!["lab/a:1".to_string(), "lab/b:1".to_string()];
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = d.run(&images_purge(&refs), b"").ok();
        assert_eq!(parse_purged(&out, &names), vec!["lab/a:1"]);
        assert!(d.calls().contains("image rm lab/a:1\n"));
        // lab/b:1 had no record: not rpiprov's, never removed.
        assert!(!d.calls().contains("image rm lab/b:1"));
        let rec = format!("{}/images/lab_a_1.sha256", d.root());
        assert!(!std::path::Path::new(&rec).exists());
        assert_eq!(d.run(&images_purge(&refs), b"").ok(), "");
    }

    #[test]
    fn purged_images_are_read_by_index() {
        let names = vec!["lab/a:1".to_string(), "lab/b:1".to_string()];
        assert_eq!(
            parse_purged("purged 1\nnoise\npurged 7\n", &names),
            vec!["lab/b:1"]
        );
    }
}
