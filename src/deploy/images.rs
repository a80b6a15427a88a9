//! Shipping images over SSH instead of pulling them from a registry (the Pis have none):
//! each node is asked in one round trip which images it lacks, then each missing archive
//! is streamed to the node's stdin and loaded (`docker load` or `docker import`). A node
//! that already has an image from the same archive (same sha256 recorded, image still
//! present) is skipped. Nodes run in parallel, bounded. The commands and the parse of
//! their answers are [`crate::docker::image`]'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::ImageFormat;
use crate::docker::image::{self, ImageRef, parse_missing};
use crate::exec::report::{RowId, Rows};
use crate::exec::{StepError, parallel_map, root, run_ok};
use crate::remote::{ExecRequest, Remote};

/// An image archive read from this machine, ready to ship.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub name: String,
    pub format: ImageFormat,
    pub cmd: Vec<String>,
    /// Shared between the nodes' tasks rather than copied per node up front.
    pub archive: Arc<Vec<u8>>,
    /// Hex sha256 of the archive.
    pub sha256: String,
    /// The platform read from the archive, when it tells
    /// ([`image::archive_platform`]): a node of another architecture does not get it.
    pub platform: Option<image::Platform>,
    /// The architecture the playbook gives this archive for (`archive = { arm64 = "..." }`):
    /// only nodes of it get it. `None`: every node.
    pub arch: Option<String>,
}

impl PreparedImage {
    pub fn new(name: &str, format: ImageFormat, cmd: Vec<String>, archive: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&archive));
        // An archive this cannot read (bzip2, xz) is not refused: Docker may still load it.
        let platform = image::archive_platform(format, &archive).ok().flatten();
        PreparedImage {
            platform,
            name: name.to_string(),
            format,
            cmd,
            archive: Arc::new(archive),
            sha256,
            arch: None,
        }
    }

    /// The archive of one architecture of an image that has one per architecture.
    pub fn for_arch(mut self, arch: &str) -> Self {
        self.arch = Some(arch.to_string());
        self
    }

    fn as_ref(&self) -> ImageRef<'_> {
        ImageRef {
            name: &self.name,
            sha256: &self.sha256,
        }
    }

    /// The command that loads this image from stdin.
    pub fn load_command(&self) -> String {
        match self.format {
            ImageFormat::DockerSave => image::image_load(&self.as_ref()),
            ImageFormat::Rootfs => image::image_import(&self.as_ref(), &self.cmd),
        }
    }
}

/// What shipping did on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeImages {
    pub host: String,
    /// Images loaded (the others were already there).
    pub loaded: Vec<String>,
    /// The image (or `check images`) that failed and why; the node's later images were
    /// not attempted.
    pub failed: Option<(String, String)>,
    /// Images this node may lack after a failure: the one that failed and those not
    /// attempted (every image when the check itself failed).
    pub not_loaded: Vec<String>,
    pub seconds: f64,
}

/// Which of `images` a node lacks (or holds from another archive), by index, and the
/// node's architecture when it said: what `ship` loads there, and what `deploy --dry-run`
/// says it would.
pub async fn missing_on<R: Remote>(
    remote: &R,
    images: &[PreparedImage],
    timeout: Duration,
) -> Result<(Vec<usize>, Option<String>), StepError> {
    let refs: Vec<ImageRef<'_>> = images.iter().map(|i| i.as_ref()).collect();
    root(remote, image::images_check(&refs), timeout)
        .await
        .and_then(|o| {
            let text = o.stdout_str();
            let arch = image::parse_node_arch(&text).map(str::to_string);
            parse_missing(&text, images.len())
                .map(|m| (m, arch))
                .map_err(StepError)
        })
}

/// Why an image is not shipped to a node of architecture `arch`, or `None` when it runs
/// there (or either is unknown).
pub fn refusal(img: &PreparedImage, arch: Option<&str>, host: &str) -> Option<String> {
    let (p, a) = (img.platform.as_ref()?, arch?);
    (!image::runs_on(p, a)).then(|| {
        format!(
            "the archive is built for {p} ({}), and {host} runs {a}: not shipped; build the image for {} (docker buildx build --platform linux/{})",
            p.from,
            image::docker_arch(a),
            image::docker_arch(a)
        )
    })
}

/// Which of the `missing` images (indices) a node of `arch` gets: every image of one
/// archive; of an image with an archive per architecture, the one of the node's (Docker's
/// and Debian's names alike). An error names the first missing image that has archives
/// per architecture but none for this node, and why.
pub fn for_node(
    images: &[PreparedImage],
    missing: &[usize],
    arch: Option<&str>,
) -> Result<Vec<usize>, (String, String)> {
    let mut chosen = Vec::new();
    for &i in missing {
        let img = &images[i];
        let Some(for_arch) = &img.arch else {
            chosen.push(i);
            continue;
        };
        let Some(node) = arch else {
            let why = "the node did not say its architecture, and the playbook gives an archive per architecture".to_string();
            return Err((img.name.clone(), why));
        };
        if image::docker_arch(for_arch) == image::docker_arch(node) {
            chosen.push(i);
            continue;
        }
        let given: Vec<&str> = images
            .iter()
            .filter(|o| o.name == img.name)
            .filter_map(|o| o.arch.as_deref())
            .collect();
        if !given
            .iter()
            .any(|a| image::docker_arch(a) == image::docker_arch(node))
        {
            let why = format!(
                "the playbook gives archives for {}, none for {node}",
                given.join(", ")
            );
            return Err((img.name.clone(), why));
        }
    }
    Ok(chosen)
}

/// Ships every image to every node that lacks it. One result per node, sorted by name.
pub async fn ship<R: Remote + 'static>(
    nodes: &HashMap<String, Arc<R>>,
    images: &[PreparedImage],
    parallel: usize,
    command_timeout: Duration,
    rows: &Rows,
) -> Vec<NodeImages> {
    if images.is_empty() {
        return vec![];
    }
    let mut names: Vec<String> = nodes.keys().cloned().collect();
    names.sort();
    let images: Arc<Vec<PreparedImage>> = Arc::new(images.to_vec());
    // A large archive over a Pi's link takes longer than an ordinary command.
    let load_timeout = command_timeout.max(Duration::from_secs(600));
    parallel_map(names, parallel, |host| {
        let remote = nodes[&host].clone();
        let images = images.clone();
        let rows = rows.clone();
        async move {
            let row = RowId::host(&host);
            let started = Instant::now();
            let mut res = NodeImages {
                host: host.clone(),
                ..Default::default()
            };
            rows.step(&row, "check images");
            match missing_on(&*remote, &images, command_timeout).await {
                Err(e) => {
                    res.failed = Some(("check images".into(), e.0));
                    res.not_loaded = images.iter().map(|i| i.name.clone()).collect();
                }
                Ok((missing, arch)) => {
                    let missing = match for_node(&images, &missing, arch.as_deref()) {
                        Ok(m) => m,
                        Err((name, why)) => {
                            res.failed = Some((name.clone(), why));
                            res.not_loaded = vec![name];
                            Vec::new()
                        }
                    };
                    for (k, &i) in missing.iter().enumerate() {
                        let img = &images[i];
                        // Refused before a byte is sent: it could not run there.
                        if let Some(why) = refusal(img, arch.as_deref(), &host) {
                            res.failed = Some((img.name.clone(), why));
                            res.not_loaded = missing[k..]
                                .iter()
                                .map(|&j| images[j].name.clone())
                                .collect();
                            break;
                        }
                        rows.step(&row, &format!("load image {}", img.name));
                        let req = ExecRequest::new(img.load_command())
                            .privileged()
                            .stdin(img.archive.as_ref().clone())
                            .timeout(load_timeout);
                        match run_ok(&*remote, req).await {
                            Ok(_) => res.loaded.push(img.name.clone()),
                            Err(e) => {
                                res.failed = Some((img.name.clone(), e.0));
                                res.not_loaded = missing[k..]
                                    .iter()
                                    .map(|&j| images[j].name.clone())
                                    .collect();
                                break;
                            }
                        }
                    }
                }
            }
            res.seconds = started.elapsed().as_secs_f64();
            res
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeRemote, Recorder, fail, ok};

    #[test]
    fn the_sha256_is_of_the_archive_bytes() {
        let img = PreparedImage::new("a:1", ImageFormat::DockerSave, vec![], b"abc".to_vec());
        assert_eq!(
            img.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Issue 13: an archive built for arm64 is not sent to an amd64 node, and the node's
    /// row says which architectures and what to do.
    #[tokio::test]
    async fn an_archive_of_another_architecture_is_refused_before_it_is_sent() {
        let mut img = PreparedImage::new("lab/a:1", ImageFormat::Rootfs, vec![], vec![]);
        img.platform = Some(image::Platform {
            arch: "arm64".into(),
            variant: String::new(),
            from: "the ELF header of bin/busybox".into(),
        });
        let pi1 = FakeRemote::new("pi1");
        pi1.on("image 0", ok("arch amd64\nimage 0 missing\n"))
            .on("docker import", ok(""));
        let nodes: HashMap<String, Arc<FakeRemote>> = [(pi1.name.clone(), Arc::new(pi1.clone()))]
            .into_iter()
            .collect();
        let res = ship(
            &nodes,
            &[img],
            4,
            Duration::from_secs(5),
            &Rows::new(Arc::new(Recorder::default()), &[]),
        )
        .await;
        assert_eq!(
            res[0].failed,
            Some((
                "lab/a:1".into(),
                "the archive is built for arm64 (the ELF header of bin/busybox), and pi1 runs amd64: not shipped; build the image for amd64 (docker buildx build --platform linux/amd64)".into()
            ))
        );
        assert_eq!(res[0].not_loaded, vec!["lab/a:1"]);
        assert_eq!(pi1.count("docker import"), 0, "nothing was sent");
    }

    /// Issue 25: an image with an archive per architecture; each node gets its own, and a
    /// node of an architecture the playbook has none for is told so.
    #[test]
    fn each_node_gets_the_archive_of_its_architecture() {
        let img = |arch: Option<&str>| {
            let i = PreparedImage::new(
                "lab/a:1",
                ImageFormat::Rootfs,
                vec![],
                arch.unwrap_or("").into(),
            );
            match arch {
                Some(a) => i.for_arch(a),
                None => i,
            }
        };
        let images = [img(Some("amd64")), img(Some("arm64")), img(None)];
        assert_eq!(for_node(&images, &[0, 1, 2], Some("amd64")), Ok(vec![0, 2]));
        assert_eq!(
            for_node(&images, &[0, 1, 2], Some("aarch64")),
            Ok(vec![1, 2])
        );
        assert_eq!(for_node(&images, &[2], None), Ok(vec![2]));
        assert_eq!(
            for_node(&images, &[0, 1], Some("armhf")),
            Err((
                "lab/a:1".into(),
                "the playbook gives archives for amd64, arm64, none for armhf".into()
            ))
        );
        assert!(for_node(&images, &[0], None).is_err());
    }

    #[tokio::test]
    async fn loads_only_what_a_node_lacks_with_the_archive_on_stdin() {
        let images = vec![
            PreparedImage::new("lab/a:1", ImageFormat::DockerSave, vec![], b"AAAA".to_vec()),
            PreparedImage::new(
                "lab/b:1",
                ImageFormat::Rootfs,
                vec!["httpd".into(), "-f".into()],
                b"BBBB".to_vec(),
            ),
        ];
        let pi1 = FakeRemote::new("pi1");
        pi1.on("image 0", ok("image 0 present\nimage 1 missing\n"))
            .on("docker import", ok("sha256:123\n"));
        let pi2 = FakeRemote::new("pi2");
        pi2.on("image 0", ok("image 0 missing\nimage 1 missing\n"))
            .on(
                "docker load",
                fail(1, "open /var/lib/docker/tmp: no space left on device"),
            );
        let nodes: HashMap<String, Arc<FakeRemote>> = [pi1.clone(), pi2.clone()]
            .into_iter()
            .map(|f| (f.name.clone(), Arc::new(f)))
            .collect();
        let res = ship(
            &nodes,
            &images,
            4,
            Duration::from_secs(5),
            &Rows::new(Arc::new(Recorder::default()), &[]),
        )
        .await;
        assert_eq!(res[0].host, "pi1");
        assert_eq!(res[0].loaded, vec!["lab/b:1"]);
        assert_eq!(res[0].failed, None);
        let log = pi1.log.lock().unwrap().clone();
        assert_eq!(log.len(), 2);
        assert!(
            log[1]
                .command
                .contains("docker import --change 'CMD [\"httpd\",\"-f\"]' - lab/b:1")
        );
        assert_eq!(log[1].stdin.as_deref(), Some(&b"BBBB"[..]));
        assert!(log.iter().all(|r| r.privileged));
        // pi2's first load fails: the error is reported, its second image not attempted.
        assert_eq!(
            res[1].failed,
            Some((
                "lab/a:1".into(),
                "exit 1: open /var/lib/docker/tmp: no space left on device".into()
            ))
        );
        assert_eq!(pi2.commands().len(), 2);
        assert_eq!(res[1].not_loaded, vec!["lab/a:1", "lab/b:1"]);
    }
}
