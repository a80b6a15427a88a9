//! `lab up --registry`: an image registry for the lab (Debian's `docker-registry`, the
//! distribution project's registry 2.8) on the lab bridge's address, with TLS from a CA of
//! the lab's own, so that every Docker client of the nodes trusts it the way a Pi trusts a
//! private registry: the daemon for pulls, and the CLI too (`docker manifest inspect`, which
//! deploy's architecture check runs, ignores the daemon's `insecure-registries`; both read
//! `/etc/docker/certs.d/HOST:PORT/ca.crt`).
//!
//! The registry runs on this machine, in its own session, listening on the bridge address
//! only (not on every interface, as its packaged configuration would); its pid and start
//! time are in `state.json` before `up` waits for it, and `down` stops exactly that process.
//! The lab image is pushed from here over the registry's HTTP API (curl, no proxy): the
//! archive's root file system gzipped as the one layer, an image config naming this
//! machine's architecture and the image's command, a schema 2 manifest.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::error::{LabError, Result};
use super::images::{IMAGE_ARCHIVE, IMAGE_CMD, IMAGE_NAME};
use super::sys::{self, ProcId, cmd, run};

/// `DIR/registry`: the registry's address, `host:port`, for playbooks and tests.
pub const REGISTRY_FILE: &str = "registry";
/// `DIR/registry.d/`: its CA, certificate, configuration, storage and log.
pub const REGISTRY_DIR: &str = "registry.d";
/// The CA nodes trust, inside [`REGISTRY_DIR`].
pub const CA_FILE: &str = "ca.crt";
const PORT: u16 = 5000;
/// Bounds every request to the registry (it is on this machine).
const CURL_SECS: &str = "30";

/// What `state.json` holds of the registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryState {
    /// `host:port`, the bridge's address.
    pub addr: String,
    /// The `docker-registry` process, recorded right after it was spawned.
    pub proc_id: Option<ProcId>,
}

pub fn addr(gateway: std::net::Ipv4Addr) -> String {
    format!("{gateway}:{PORT}")
}

/// The registry's configuration: TLS on the bridge address only, storage under the lab
/// directory, deletes allowed (tests re-push tags), no reporting, no auth (only this lab's
/// nodes and this machine reach the bridge address).
pub fn config_yml(addr: &str, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  fields:\n    service: rpiprov-lab-registry\n\
         storage:\n  filesystem:\n    rootdirectory: {d}/storage\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  tls:\n    certificate: {d}/registry.crt\n    key: {d}/registry.key\n\
         \x20 headers:\n    X-Content-Type-Options: [nosniff]\n"
    )
}

/// The CA and the registry's certificate (its IP address as the subject alternative name,
/// which Go's TLS requires), made once; the keys stay in the lab directory (0600).
fn ensure_certs(dir: &Path, ip: &str) -> Result<()> {
    if dir.join("registry.crt").exists() && dir.join(CA_FILE).exists() {
        return Ok(());
    }
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = cmd(["openssl", "req", "-x509"]);
    ca.args(ec)
        .args(["-keyout", &p("ca.key"), "-out", &p(CA_FILE)]);
    ca.args(["-days", "3650", "-subj", "/CN=rpiprov lab registry CA"]);
    ca.args(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    run(ca)?;
    let mut csr = cmd(["openssl", "req", "-new"]);
    csr.args(ec)
        .args(["-keyout", &p("registry.key"), "-out", &p("registry.csr")]);
    csr.args(["-subj", &format!("/CN={ip}")]);
    csr.args(["-addext", &format!("subjectAltName=IP:{ip}")]);
    run(csr)?;
    let mut sign = cmd(["openssl", "x509", "-req", "-in", &p("registry.csr")]);
    sign.args([
        "-CA",
        &p(CA_FILE),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
    ]);
    sign.args([
        "-days",
        "3650",
        "-copy_extensions",
        "copy",
        "-out",
        &p("registry.crt"),
    ]);
    run(sign)?;
    Ok(())
}

fn port_open(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// Running as recorded, and answering.
pub fn running(r: &RegistryState) -> bool {
    r.proc_id.is_some_and(sys::alive) && port_open(&r.addr)
}

/// Starts the registry (certificates and configuration first); `record` saves its pid
/// before this waits for it. Returns once its port accepts connections.
pub fn start(lab_dir: &Path, addr: &str, record: impl FnOnce(ProcId) -> Result<()>) -> Result<()> {
    let dir = lab_dir.join(REGISTRY_DIR);
    sys::mkdir(&dir, 0o700)?;
    sys::mkdir(&dir.join("storage"), 0o700)?;
    let ip = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    ensure_certs(&dir, ip)?;
    let config = dir.join("config.yml");
    sys::write_file(&config, config_yml(addr, &dir).as_bytes(), 0o600)?;
    let log_path = dir.join("registry.log");
    let _ = std::fs::remove_file(&log_path);
    let log = sys::create_fresh(&log_path, 0o600)?;
    let err = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
    let mut c = cmd(["setsid", "docker-registry", "serve"]);
    c.arg(&config)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    let child = c
        .spawn()
        .map_err(|e| LabError::Other(format!("docker-registry: {e}")))?;
    let pid = i32::try_from(child.id()).expect("pids fit in i32");
    let id = sys::proc_id(pid).ok_or_else(|| {
        LabError::Other(format!(
            "docker-registry ended at once; see {}",
            log_path.display()
        ))
    })?;
    record(id)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !port_open(addr) {
        if !sys::alive(id) || Instant::now() > deadline {
            sys::signal(id, libc::SIGKILL);
            return Err(LabError::Other(format!(
                "the registry did not come up on {addr}; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Stops the recorded process: SIGTERM, then SIGKILL after 5 s.
pub fn stop(r: &RegistryState) {
    let Some(id) = r.proc_id else { return };
    sys::signal(id, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sys::alive(id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    sys::signal(id, libc::SIGKILL);
}

/// This machine's architecture as Docker names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The image config of the lab image for `arch` over a layer whose uncompressed digest is
/// `diff_id`, as `docker import --change 'CMD [...]'` makes it (no history of builds).
pub fn image_config(arch: &str, diff_id: &str) -> Vec<u8> {
    let doc = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": IMAGE_CMD },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "rpiprov lab up --registry" }],
    });
    serde_json::to_vec(&doc).expect("json serialises")
}

/// A schema 2 manifest of one config and one gzipped layer (digest, size each).
pub fn manifest(config: (&str, usize), layer: (&str, usize)) -> Vec<u8> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": config.1, "digest": config.0,
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": layer.1, "digest": layer.0,
        }],
    });
    serde_json::to_vec(&doc).expect("json serialises")
}

/// Where `REPO:TAG` of the registry at `addr` splits: `rpiprov-lab/busybox:1` →
/// (`rpiprov-lab/busybox`, `1`). Names are the lab's own or a test's: checked, not quoted.
fn split_ref(reference: &str) -> Result<(&str, &str)> {
    let (repo, tag) = reference
        .rsplit_once(':')
        .ok_or_else(|| LabError::Usage(format!("{reference}: expected REPO:TAG")))?;
    let ok = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    };
    if ok(repo, b"/._-") && ok(tag, b"._-") {
        Ok((repo, tag))
    } else {
        Err(LabError::Usage(format!(
            "{reference}: a repository of a-z 0-9 / . _ - and a tag of a-z 0-9 . _ -"
        )))
    }
}

/// One request to the registry: TLS against the lab's CA, never through a proxy, bounded
/// in time; `extra` are curl's own arguments. Returns what curl wrote to stdout.
fn curl(lab_dir: &Path, extra: &[&str], url: &str) -> Result<String> {
    let ca = lab_dir.join(REGISTRY_DIR).join(CA_FILE);
    let mut c = cmd(["curl", "-sS", "--noproxy", "*", "--max-time", CURL_SECS]);
    c.arg("--cacert").arg(&ca).args(extra).arg(url);
    run(c)
}

/// Pushes `blob` unless the registry has it (HEAD first).
fn push_blob(lab_dir: &Path, base: &str, repo: &str, blob: &Path, digest: &str) -> Result<()> {
    let head = curl(
        lab_dir,
        &["-I", "-o", "/dev/null", "-w", "%{http_code}"],
        &format!("{base}/v2/{repo}/blobs/{digest}"),
    )?;
    if head.trim() == "200" {
        return Ok(());
    }
    let location = curl(
        lab_dir,
        &[
            "--fail",
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-w",
            "%header{location}",
        ],
        &format!("{base}/v2/{repo}/blobs/uploads/"),
    )?;
    let location = location.trim();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let file = format!("@{}", blob.display());
    curl(
        lab_dir,
        &[
            "--fail-with-body",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &file,
        ],
        &format!("{location}{sep}digest={digest}"),
    )
    .map(drop)
}

/// Pushes the lab image's root file system as `REPO:TAG` for `arch` to the lab's registry;
/// returns the manifest's digest (what a service pinned to it names).
pub fn push(lab_dir: &Path, addr: &str, reference: &str, arch: &str) -> Result<String> {
    let (repo, tag) = split_ref(reference)?;
    let archive = lab_dir.join(IMAGE_ARCHIVE);
    let tar = std::fs::read(&archive).map_err(|e| LabError::io(&archive, e))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).map_err(|e| LabError::io(&archive, e))?;
    let layer = gz.finish().map_err(|e| LabError::io(&archive, e))?;
    let config = image_config(arch, &sha256(&tar));
    let (layer_d, config_d) = (sha256(&layer), sha256(&config));
    let manifest = manifest((&config_d, config.len()), (&layer_d, layer.len()));
    let work = sys::temp_dir(&lab_dir.join(REGISTRY_DIR), "push")?;
    let pushed = push_files(
        lab_dir,
        addr,
        (repo, tag),
        &work,
        [&layer, &config, &manifest],
    );
    let _ = std::fs::remove_dir_all(&work);
    pushed?;
    Ok(sha256(&manifest))
}

fn push_files(
    lab_dir: &Path,
    addr: &str,
    (repo, tag): (&str, &str),
    work: &Path,
    [layer, config, manifest]: [&Vec<u8>; 3],
) -> Result<()> {
    let base = format!("https://{addr}");
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let p = work.join(name);
        sys::write_file(&p, bytes, 0o600)?;
        Ok(p)
    };
    push_blob(
        lab_dir,
        &base,
        repo,
        &write("layer", layer)?,
        &sha256(layer),
    )?;
    push_blob(
        lab_dir,
        &base,
        repo,
        &write("config", config)?,
        &sha256(config),
    )?;
    let m = format!("@{}", write("manifest", manifest)?.display());
    curl(
        lab_dir,
        &[
            "--fail-with-body",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.docker.distribution.manifest.v2+json",
            "--data-binary",
            &m,
        ],
        &format!("{base}/v2/{repo}/manifests/{tag}"),
    )
    .map_err(|e| LabError::Other(format!("pushing {repo}:{tag} to {addr}: {e}")))?;
    Ok(())
}

/// Whether the registry holds `REPO:TAG` (a HEAD of its manifest answers 200).
pub fn has(lab_dir: &Path, addr: &str, reference: &str) -> Result<bool> {
    let (repo, tag) = split_ref(reference)?;
    let code = curl(
        lab_dir,
        &[
            "-I",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ],
        &format!("https://{addr}/v2/{repo}/manifests/{tag}"),
    )?;
    Ok(code.trim() == "200")
}

/// The lab image as the registry serves it: `REGISTRY/rpiprov-lab/busybox:1`.
pub fn lab_image(addr: &str) -> String {
    format!("{addr}/{IMAGE_NAME}")
}

/// The node directory's copy of the CA, as `certs.d/HOST:PORT/ca.crt`, which the boot
/// script copies into the node's `/etc/docker/`.
pub fn install_ca(lab_dir: &Path, node_dir: &Path, addr: &str) -> Result<()> {
    let ca_path = lab_dir.join(REGISTRY_DIR).join(CA_FILE);
    let ca = std::fs::read(&ca_path).map_err(|e| LabError::io(&ca_path, e))?;
    let d = node_dir.join("certs.d").join(addr);
    sys::mkdir(&node_dir.join("certs.d"), 0o755)?;
    sys::mkdir(&d, 0o755)?;
    sys::write_file(&d.join(CA_FILE), &ca, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_listens_on_the_bridge_address_with_tls() {
        let c = config_yml("198.18.0.1:5000", Path::new("/lab/registry.d"));
        assert!(c.contains("  addr: 198.18.0.1:5000\n"), "{c}");
        assert!(
            c.contains("    certificate: /lab/registry.d/registry.crt\n"),
            "{c}"
        );
        assert!(
            c.contains("    rootdirectory: /lab/registry.d/storage\n"),
            "{c}"
        );
        assert!(!c.contains("htpasswd"), "{c}");
    }

    #[test]
    fn manifest_and_config_are_what_docker_pulls() {
        let config = image_config("arm64", "sha256:ab");
        let doc: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(doc["architecture"], "arm64");
        assert_eq!(doc["config"]["Cmd"][0], "/bin/httpd");
        assert_eq!(doc["rootfs"]["diff_ids"][0], "sha256:ab");
        let m: serde_json::Value =
            serde_json::from_slice(&manifest(("sha256:c", 10), ("sha256:l", 20))).unwrap();
        assert_eq!(m["config"]["digest"], "sha256:c");
        assert_eq!(m["config"]["size"], 10);
        assert_eq!(m["layers"][0]["size"], 20);
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }

    #[test]
    fn references_are_checked() {
        assert_eq!(
            split_ref("rpiprov-lab/busybox:1").unwrap(),
            ("rpiprov-lab/busybox", "1")
        );
        assert!(split_ref("busybox").is_err());
        assert!(split_ref("a b:1").is_err());
        assert!(split_ref("x:$(id)").is_err());
        assert_eq!(
            lab_image("198.18.0.1:5000"),
            "198.18.0.1:5000/rpiprov-lab/busybox:1"
        );
    }
}
