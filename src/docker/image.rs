//! Images shipped over SSH instead of pulled from a registry (the Pis have none): the
//! command that asks a node which images it lacks, the commands that load an archive from
//! stdin (`docker load` for `docker save` archives, `docker import` for root file
//! systems) and record which archive it came from, and `teardown --purge`'s removal.
//! Shipping itself (which node, in parallel) is `deploy`'s: see `crate::deploy::images`.

use crate::docker::paths::{image_record, images_dir};
use crate::shell::{join, quote};

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

/// One round trip per node, no `docker` process: for each image (by index), `image I
/// recorded` when the record names the same archive, `image I missing` otherwise. Read by
/// [`parse_missing`]. Whether Docker still has a recorded image (someone may have removed
/// it) its Engine API tells (`crate::docker::api::image_inspect`).
pub fn images_check(images: &[ImageRef<'_>]) -> String {
    let arch = "echo \"arch $(dpkg --print-architecture 2>/dev/null || uname -m)\"\n";
    arch.to_string()
        + &images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            format!(
                "if [ \"$(cat {rec} 2>/dev/null)\" = {line} ]; then echo 'image {i} recorded'; else echo 'image {i} missing'; fi",
                rec = quote(&image_record(img.name)),
                line = quote(&image_record_line(img.sha256, img.name)),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The node's userland architecture, as [`images_check`] prints it first.
pub fn parse_node_arch(output: &str) -> Option<&str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("arch "))
        .map(str::trim)
        .filter(|a| !a.is_empty())
}

/// Reads the output of [`images_check`]: the indices of the images whose record does not
/// name their archive.
pub fn parse_missing(output: &str, count: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; count];
    let mut missing = Vec::new();
    for line in output.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("image") {
            continue;
        }
        let (Some(i), Some(state)) = (it.next().and_then(|i| i.parse::<usize>().ok()), it.next())
        else {
            continue;
        };
        if i >= count {
            continue;
        }
        seen[i] = true;
        if state != "recorded" {
            missing.push(i);
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!("the image check did not answer for image {i}"));
    }
    Ok(missing)
}

/// After a load: check that the archive really provided the image, then record it.
fn image_loaded_tail(img: &ImageRef<'_>) -> String {
    format!(
        "docker image inspect {name} >/dev/null 2>&1 || {{ echo {msg} >&2; exit 1; }}; mkdir -p {dir}; printf '%s\\n' {line} > {rec}",
        name = quote(img.name),
        msg = quote(&format!(
            "the archive did not provide the image {}",
            img.name
        )),
        dir = quote(&images_dir()),
        line = quote(&image_record_line(img.sha256, img.name)),
        rec = quote(&image_record(img.name)),
    )
}

/// Loads a `docker save` archive read from stdin.
pub fn image_load(img: &ImageRef<'_>) -> String {
    format!("set -e; docker load; {}", image_loaded_tail(img))
}

/// Imports a root file system tarball read from stdin as `name`, with its `CMD` given as a
/// JSON array (exec form: no shell needed in the image).
pub fn image_import(img: &ImageRef<'_>, cmd: &[String]) -> String {
    let mut args: Vec<String> = vec!["docker".into(), "import".into()];
    if !cmd.is_empty() {
        let json = serde_json::to_string(cmd).expect("strings serialise");
        args.push("--change".into());
        args.push(format!("CMD {json}"));
    }
    args.push("-".into());
    args.push(img.name.to_string());
    format!("set -e; {}; {}", join(args), image_loaded_tail(img))
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

/// Reads the platform of an image archive: for a `docker save` archive, the
/// `architecture` of the config its `manifest.json` names; for a root file system, the
/// ELF header of its first binary (those under `bin/` and `sbin/` first). Gzipped
/// archives are read too. `Ok(None)` when the archive does not tell.
pub fn archive_platform(
    format: crate::config::ImageFormat,
    bytes: &[u8],
) -> Result<Option<Platform>, String> {
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
    let mut jsons: std::collections::HashMap<String, Vec<u8>> = Default::default();
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
                if path.ends_with(".json") && entry.size() < 4 << 20 {
                    let mut buf = Vec::new();
                    entry
                        .read_to_end(&mut buf)
                        .map_err(|e| format!("cannot read {path}: {e}"))?;
                    jsons.insert(path, buf);
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
        crate::config::ImageFormat::DockerSave => {
            #[derive(serde::Deserialize)]
            struct Manifest {
                #[serde(rename = "Config")]
                config: String,
            }
            #[derive(serde::Deserialize)]
            struct Config {
                #[serde(default)]
                architecture: String,
                #[serde(default)]
                variant: String,
            }
            let Some(manifest) = jsons.get("manifest.json") else {
                return Ok(None);
            };
            let list: Vec<Manifest> = serde_json::from_slice(manifest)
                .map_err(|e| format!("cannot read manifest.json: {e}"))?;
            let Some(first) = list.first() else {
                return Ok(None);
            };
            let Some(config) = jsons.get(first.config.trim_start_matches("./")) else {
                return Ok(None);
            };
            let c: Config = serde_json::from_slice(config)
                .map_err(|e| format!("cannot read {}: {e}", first.config))?;
            Ok((!c.architecture.is_empty()).then(|| Platform {
                arch: c.architecture,
                variant: c.variant,
                from: "the image config".into(),
            }))
        }
        crate::config::ImageFormat::Rootfs => Ok(elf.and_then(|(_, path, head)| {
            elf_arch(&head).map(|arch| Platform {
                arch: arch.into(),
                variant: String::new(),
                from: format!("the ELF header of {path}"),
            })
        })),
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
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn image_commands() {
        let img = ImageRef {
            name: "lab/httpd:1",
            sha256: "ab12",
        };
        assert_eq!(
            images_check(&[img]),
            "echo \"arch $(dpkg --print-architecture 2>/dev/null || uname -m)\"\nif [ \"$(cat /var/lib/rpiprov/images/lab_httpd_1.sha256 2>/dev/null)\" = 'ab12 lab/httpd:1' ]; then echo 'image 0 recorded'; else echo 'image 0 missing'; fi"
        );
        assert_eq!(
            image_load(&img),
            "set -e; docker load; docker image inspect lab/httpd:1 >/dev/null 2>&1 || { echo 'the archive did not provide the image lab/httpd:1' >&2; exit 1; }; mkdir -p /var/lib/rpiprov/images; printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert_eq!(
            image_import(
                &img,
                &["httpd".into(), "-f".into(), "-p".into(), "it's 8080".into()]
            ),
            "set -e; docker import --change 'CMD [\"httpd\",\"-f\",\"-p\",\"it'\\''s 8080\"]' - lab/httpd:1; docker image inspect lab/httpd:1 >/dev/null 2>&1 || { echo 'the archive did not provide the image lab/httpd:1' >&2; exit 1; }; mkdir -p /var/lib/rpiprov/images; printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert!(image_import(&img, &[]).starts_with("set -e; docker import - lab/httpd:1; "));
        assert_eq!(
            images_purge(&["lab/httpd:1"]),
            "set -e\nif [ -e /var/lib/rpiprov/images/lab_httpd_1.sha256 ]; then if docker image inspect lab/httpd:1 >/dev/null 2>&1; then docker image rm lab/httpd:1 >/dev/null; fi; rm -f /var/lib/rpiprov/images/lab_httpd_1.sha256; echo 'purged 0'; fi"
        );
        for s in [
            images_check(&[img, img]),
            image_load(&img),
            image_import(&img, &["a b".into()]),
            images_purge(&["a", "b c"]),
        ] {
            syntax_ok(&s);
        }
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
        use crate::config::ImageFormat::{DockerSave, Rootfs};
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
        let p = archive_platform(Rootfs, &rootfs).unwrap().unwrap();
        assert_eq!(
            (p.arch.as_str(), p.from.as_str()),
            ("arm64", "the ELF header of bin/busybox")
        );
        let gz = tar_of(&[("bin/sh", &elf(false, 40))], true);
        assert_eq!(archive_platform(Rootfs, &gz).unwrap().unwrap().arch, "arm");
        // A `docker save` archive: the config manifest.json names.
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
        let p = archive_platform(DockerSave, &save).unwrap().unwrap();
        assert_eq!(p.to_string(), "arm/v7");
        assert!(runs_on(&p, "armhf"));
        assert!(!runs_on(&p, "arm64"));
        assert!(!runs_on(&p, "amd64"));
        // Nothing to tell: no guess.
        assert_eq!(
            archive_platform(Rootfs, &tar_of(&[("etc/motd", b"hello")], false)),
            Ok(None)
        );
        assert!(
            archive_platform(DockerSave, b"not a tar").is_err()
                || archive_platform(DockerSave, b"not a tar") == Ok(None)
        );
    }

    #[test]
    fn missing_images_are_read_by_index() {
        assert_eq!(
            parse_missing("image 0 recorded\nimage 1 missing\n", 2),
            Ok(vec![1])
        );
        assert_eq!(
            parse_missing("image 0 recorded\n", 2),
            Err("the image check did not answer for image 1".into())
        );
    }

    #[test]
    fn an_image_is_loaded_recorded_then_found_present() {
        let d = ScratchHost::new();
        let img = ImageRef {
            name: "lab/a:1",
            sha256: "ab12",
        };
        let first = d.run(&images_check(&[img]), b"").stdout;
        assert!(parse_node_arch(&first).is_some(), "{first}");
        assert_eq!(parse_missing(&first, 1), Ok(vec![0]));
        let ran = d.run(&image_load(&img), b"ARCHIVE");
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "Loaded image: lab/a:1\n")
        );
        assert_eq!(std::fs::read(d.docker_file("archive")).unwrap(), b"ARCHIVE");
        let rec = std::fs::read_to_string(format!("{}/images/lab_a_1.sha256", d.root())).unwrap();
        assert_eq!(rec, "ab12 lab/a:1\n");
        assert_eq!(
            parse_missing(&d.run(&images_check(&[img]), b"").stdout, 1),
            Ok(vec![])
        );
        // Another archive under the same name is missing (a removed image is the Engine
        // API's to tell: `crate::deploy::images::missing_on`).
        let other = ImageRef {
            name: "lab/a:1",
            sha256: "cd34",
        };
        assert_eq!(
            parse_missing(&d.run(&images_check(&[other]), b"").stdout, 1),
            Ok(vec![0])
        );
        // An archive that does not provide the named image fails, and records nothing.
        let wrong = ImageRef {
            name: "lab/b:1",
            sha256: "ef56",
        };
        let ran = d.run(&image_load(&wrong), b"ARCHIVE");
        assert_eq!(ran.code, 1);
        assert_eq!(
            ran.stderr,
            "the archive did not provide the image lab/b:1\n"
        );
        assert!(!std::path::Path::new(&format!("{}/images/lab_b_1.sha256", d.root())).exists());
    }

    #[test]
    fn purge_removes_only_images_rpiprov_shipped() {
        let d = ScratchHost::new();
        let img = ImageRef {
            name: "lab/a:1",
            sha256: "ab12",
        };
        d.run(&image_load(&img), b"ARCHIVE").ok();
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
