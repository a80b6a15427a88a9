//! Issue 17 item 5, end to end: image archives shipped to a node's Docker through its
//! Engine API, judged by what that Docker then holds, on both image stores.
//!
//! - the classic store (Debian 12's Docker 20.10 and Debian 13's 26.1): the lab's root file
//!   system image is imported and its stack converges, and a second deploy loads nothing;
//!   a multi-platform archive whose `manifest.json` names arm64 is refused before it is
//!   sent (the store would load that one), saying how to save one for the node; an arm64
//!   archive rpiprov cannot read (bzip2) is sent, loaded as arm64 by Docker, and the load
//!   fails, naming the platforms, recording nothing;
//! - the containerd store (Debian sid's Docker 28.5 with `"features":
//!   {"containerd-snapshotter": true}`, set by the inventory and bootstrap): the same root
//!   file system image and its stack (the stack file without `version:`, which CLI 28 reads)
//!   converge and a second deploy loads nothing; the multi-platform archive is loaded and
//!   its amd64 image runs; the arm64 archive loads and is judged as on the classic store.
//!
//! The archives are built here from the lab's busybox root file system (one layer), as
//! `docker save` writes them: Docker's format before 25, and the OCI layout since.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use rpiprov::lab::Distro;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::fleet::{Fleet, json_of, row_of, text};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_path(d: &str) -> String {
    format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// An image config of this architecture over `layer` (an uncompressed tar).
fn config(arch: &str, layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    }))
    .unwrap()
}

/// An OCI layout of one image per architecture of `arches`, as `docker save` of a
/// multi-platform image writes it, its `manifest.json` naming the image of `named`.
fn oci_archive(name: &str, layer: &[u8], arches: &[&str], named: &str) -> Vec<u8> {
    let mut files = vec![(blob_path(&digest(layer)), layer.to_vec())];
    let mut manifests = Vec::new();
    let mut named_config = String::new();
    for arch in arches {
        let cfg = config(arch, layer);
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&cfg), "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": layer.len()}],
        }))
        .unwrap();
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&m), "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        if arch == &named {
            named_config = blob_path(&digest(&cfg));
        }
        files.push((blob_path(&digest(&cfg)), cfg));
        files.push((blob_path(&digest(&m)), m));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let (repo, tag) = name.rsplit_once(':').unwrap();
    let top = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest(&index), "size": index.len(),
            "annotations": {"io.containerd.image.name": format!("docker.io/{repo}:{tag}"), "org.opencontainers.image.ref.name": tag},
        }],
    });
    let docker = json!([{"Config": named_config, "RepoTags": [name], "Layers": [blob_path(&digest(layer))]}]);
    files.push((blob_path(&digest(&index)), index));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    files.push(("index.json".into(), serde_json::to_vec(&top).unwrap()));
    files.push(("manifest.json".into(), serde_json::to_vec(&docker).unwrap()));
    tar_of(&files)
}

/// A `docker save` archive in Docker's format before 25 (no OCI index), one image of
/// `arch`, compressed with bzip2: Docker reads it, rpiprov cannot tell its platform.
fn bzip2_archive(name: &str, layer: &[u8], arch: &str) -> Vec<u8> {
    let cfg = config(arch, layer);
    let cfg_name = format!("{}.json", digest(&cfg).trim_start_matches("sha256:"));
    let docker = json!([{"Config": cfg_name, "RepoTags": [name], "Layers": ["layer/layer.tar"]}]);
    let plain = tar_of(&[
        (cfg_name.clone(), cfg),
        ("layer/layer.tar".into(), layer.to_vec()),
        ("manifest.json".into(), serde_json::to_vec(&docker).unwrap()),
    ]);
    let mut child = Command::new("bzip2")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bzip2 runs");
    // Written from a thread of its own: bzip2 writes while it reads.
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        input.write_all(&plain).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// The playbook of one image (its archive and format) and, when given, a stack of it.
fn playbook(image: &str, archive: &str, format: &str, stack: Option<&str>) -> String {
    let mut s =
        format!("[[image]]\nname = \"{image}\"\narchive = \"{archive}\"\nformat = \"{format}\"\n");
    if format == "rootfs" {
        s.push_str("cmd = [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n");
    }
    if let Some(file) = stack {
        s.push_str(&format!("\n[[stack]]\nname = \"img\"\nfile = \"{file}\"\n"));
    }
    s
}

/// A stack of one service of `image`, with the `version:` line given (or none).
fn stack(version: &str, image: &str) -> String {
    format!(
        "{version}services:\n  app:\n    image: {image}\n    stop_grace_period: 1s\n    deploy:\n      endpoint_mode: dnsrr\n"
    )
}

/// `rpiprov -p BOOK --json deploy` with the exit code it must end with.
fn deploy(fleet: &Fleet, book: &str, code: i32) -> Value {
    let out = fleet.rpiprov(&["-p", book, "--json", "deploy"]);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    json_of(&out)
}

/// What the node's Docker says of an image: its architecture, or nothing.
fn held(fleet: &Fleet, image: &str) -> Option<String> {
    fleet
        .try_inside(
            "pi1",
            &[
                "docker",
                "image",
                "inspect",
                "--format",
                "{{.Architecture}}",
                image,
            ],
        )
        .map(|s| s.trim().to_string())
}

fn recorded(fleet: &Fleet, image: &str) -> bool {
    let rec = rpiprov::docker::paths::image_record(image);
    fleet.try_inside("pi1", &["test", "-e", &rec]).is_some()
}

/// One node's part: the story above, on the store `containerd` says.
fn images_on_one_node(fleet: &Fleet, containerd: bool) {
    let store = fleet.inside(
        "pi1",
        &["docker", "info", "--format", "{{json .DriverStatus}}"],
    );
    assert_eq!(
        store.contains("io.containerd.snapshotter"),
        containerd,
        "the node's image store: {store}"
    );
    let layer = std::fs::read(fleet.dir.join(rpiprov::lab::IMAGE_ARCHIVE)).unwrap();
    let dir = &fleet.dir;
    // A version-less file on the containerd node (CLI 28 reads it), 3.8 on 20.10.
    let version = if containerd { "" } else { "version: \"3.8\"\n" };
    write(
        dir,
        "img/busybox.yml",
        stack(version, "rpiprov-lab/busybox:1").as_bytes(),
    );
    write(
        dir,
        "img-busybox.toml",
        playbook(
            "rpiprov-lab/busybox:1",
            "images/busybox.tar",
            "rootfs",
            Some("img/busybox.yml"),
        )
        .as_bytes(),
    );
    let book = dir.join("img-busybox.toml");
    let book = book.to_str().unwrap();

    // 1. The root file system image: imported, recorded, its stack converges.
    let doc = deploy(fleet, book, 0);
    assert_eq!(
        row_of(&doc, "pi1")["changed"][0],
        "load image rpiprov-lab/busybox:1",
        "{doc:#}"
    );
    assert_eq!(
        held(fleet, "rpiprov-lab/busybox:1").as_deref(),
        Some("amd64")
    );
    assert!(recorded(fleet, "rpiprov-lab/busybox:1"));
    // 2. Again: the node holds it, for its platform: nothing is loaded.
    let doc = deploy(fleet, book, 0);
    assert_eq!(row_of(&doc, "pi1")["changed"], json!([]), "{doc:#}");
    eprintln!("no-op deploy: {}", doc["remote"]);

    // 3. A multi-platform archive whose manifest.json names arm64.
    write(
        dir,
        "images/multi.tar",
        &oci_archive("lab/multi:1", &layer, &["amd64", "arm64"], "arm64"),
    );
    write(
        dir,
        "img/multi.yml",
        stack(version, "lab/multi:1").as_bytes(),
    );
    write(
        dir,
        "img-multi.toml",
        playbook(
            "lab/multi:1",
            "images/multi.tar",
            "docker-save",
            Some("img/multi.yml"),
        )
        .as_bytes(),
    );
    let multi = dir.join("img-multi.toml");
    if containerd {
        // The containerd store loads the index and runs the node's own image.
        deploy(fleet, multi.to_str().unwrap(), 0);
        assert_eq!(held(fleet, "lab/multi:1").as_deref(), Some("amd64"));
        let services = fleet.service_replicas("pi1");
        assert!(services.contains("img_app 1/1"), "{services}");
    } else {
        let doc = deploy(fleet, multi.to_str().unwrap(), 1);
        let pi1 = row_of(&doc, "pi1");
        assert_eq!(pi1["failed_step"], "load image lab/multi:1", "{doc:#}");
        assert_eq!(
            pi1["error"],
            "the archive is built for arm64 (the image config), and pi1 runs amd64: not shipped; its OCI index holds amd64 too, but pi1's image store (not containerd's) loads only the image manifest.json names: save the archive for amd64 alone (docker save --platform linux/amd64)"
        );
        assert_eq!(held(fleet, "lab/multi:1"), None, "nothing was sent");
    }

    // 4. An arm64 archive rpiprov cannot read: sent, loaded as arm64, refused after.
    write(
        dir,
        "images/arm.tar.bz2",
        &bzip2_archive("lab/arm:1", &layer, "arm64"),
    );
    write(
        dir,
        "img-arm.toml",
        playbook("lab/arm:1", "images/arm.tar.bz2", "docker-save", None).as_bytes(),
    );
    let arm = dir.join("img-arm.toml");
    let doc = deploy(fleet, arm.to_str().unwrap(), 1);
    let pi1 = row_of(&doc, "pi1");
    assert_eq!(pi1["failed_step"], "load image lab/arm:1", "{doc:#}");
    let store_name = if containerd {
        "containerd image store"
    } else {
        "image store"
    };
    assert_eq!(
        pi1["error"],
        format!(
            "the {store_name} loaded lab/arm:1 but holds no image of it for amd64, the node's platform (the archive provides no platform rpiprov could read): build the image for amd64 (docker buildx build --platform linux/amd64)"
        )
    );
    assert!(
        !recorded(fleet, "lab/arm:1"),
        "a refused load is not recorded"
    );
}

/// Debian 12's Docker (20.10) and Debian 13's (26.1): the classic image store.
#[test]
fn archives_on_the_classic_image_store() {
    for release in [Distro::Bookworm, Distro::Trixie] {
        eprintln!("{}:", release.as_str());
        classic(Fleet::up_with(&[release], &["--nodes", "1", "--bare", "0"]));
    }
}

fn classic(fleet: Fleet) {
    fleet.swarm_init("pi1");
    images_on_one_node(&fleet, false);
}

/// A Debian sid node (Docker 28.5), its containerd image store turned on by the
/// inventory's daemon settings, which bootstrap writes.
#[test]
fn archives_on_the_containerd_image_store() {
    let fleet = Fleet::up_with(&[Distro::Sid], &["--nodes", "1", "--bare", "0"]);
    let mut inventory = std::fs::read_to_string(fleet.dir.join("inventory.toml")).unwrap();
    inventory.push_str("\n[defaults.docker.daemon.features]\n\"containerd-snapshotter\" = true\n");
    std::fs::write(fleet.dir.join("inventory.toml"), inventory).unwrap();
    write(&fleet.dir, "empty.toml", b"");
    let empty = fleet.dir.join("empty.toml");
    let out = fleet.rpiprov(&["-p", empty.to_str().unwrap(), "bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    images_on_one_node(&fleet, true);
}
