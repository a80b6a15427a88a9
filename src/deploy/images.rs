//! Shipping images over SSH instead of pulling them from a registry (the Pis have none):
//! each node is asked which images it lacks (the records of which archive each came from,
//! one shell command that starts no `docker`; the daemon's platform, image store and
//! images, one batch on the node's Engine API), then each missing archive is sent as the
//! body of a load (`POST /images/load` for `docker save` archives, `POST /images/create`
//! for root file systems) on the same API, judged by what the daemon then holds, and
//! recorded. A node that already has an image from the same archive, for its own platform,
//! is skipped. Nodes run in parallel, bounded. The requests and the reading of their
//! answers are [`crate::docker::api`]'s and [`crate::docker::image`]'s.
//!
//! Why the API rather than `docker load`: the answer says what was loaded and how it
//! failed (the CLI only echoes it), the image's platform is read the same way on both
//! image stores (on the containerd one, an archive of another platform loads without an
//! error), and a node's images cost no `docker` process but the relay's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::ImageFormat;
use crate::docker::api::{self, Request};
use crate::docker::image::{self, ArchivePlatforms, ImageRef, ImageStore, Inspected};
use crate::exec::engine::Engines;
use crate::exec::report::{RowId, Rows};
use crate::exec::{StepError, parallel_map, root};
use crate::remote::Remote;

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
    /// The platforms read from the archive, as each image store loads it
    /// ([`image::archive_platforms`]): a node of another architecture does not get it.
    pub platforms: ArchivePlatforms,
}

impl PreparedImage {
    pub fn new(name: &str, format: ImageFormat, cmd: Vec<String>, archive: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&archive));
        // An archive this cannot read (bzip2, xz) is not refused: Docker may still load it.
        let platforms = image::archive_platforms(format, &archive).unwrap_or_default();
        PreparedImage {
            platforms,
            name: name.to_string(),
            format,
            cmd,
            archive: Arc::new(archive),
            sha256,
        }
    }

    fn as_ref(&self) -> ImageRef<'_> {
        ImageRef {
            name: &self.name,
            sha256: &self.sha256,
        }
    }

    /// The request that loads this image, the archive as its body.
    pub fn load_request(&self) -> Request {
        let archive = self.archive.as_ref().clone();
        match self.format {
            ImageFormat::DockerSave => api::image_load(archive),
            ImageFormat::Rootfs => api::image_import(&self.name, &self.cmd, archive),
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

/// What a node holds of the playbook's images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// The images it lacks (or holds from another archive, or for another platform only),
    /// by index.
    pub missing: Vec<usize>,
    pub store: ImageStore,
}

/// Asks the node which of `images` it lacks, through its engine of the command (opened
/// now if it is not yet, beside the records' read): what `ship` loads there, and what
/// `deploy --dry-run` says it would.
pub async fn missing_on<R: Remote + 'static>(
    remote: &R,
    engines: &Engines<R>,
    images: &[PreparedImage],
    timeout: Duration,
) -> Result<Survey, StepError> {
    let refs: Vec<ImageRef<'_>> = images.iter().map(|i| i.as_ref()).collect();
    let mut reqs = vec![api::version(), api::info()];
    reqs.extend(images.iter().map(|i| api::image_inspect(&i.name)));
    let ask = async {
        let engine = engines.get(remote.host()).await?;
        engine.batch(&reqs, timeout).await
    };
    let (records, answers) =
        tokio::join!(root(remote, image::images_recorded(&refs), timeout), ask);
    let recorded = image::parse_recorded(&records?.stdout_str(), &refs).map_err(StepError)?;
    let answers = answers.map_err(|e| StepError(e.to_string()))?;
    api::all_ok(&answers[..2]).map_err(StepError)?;
    let store = ImageStore::parse(&answers[0].body, &answers[1].body).map_err(StepError)?;
    let held: Vec<Option<Inspected>> = answers[2..]
        .iter()
        .map(|a| match a.status {
            404 => Ok(None),
            _ => api::read(a, image::parse_inspected).map(Some),
        })
        .collect::<Result<_, String>>()
        .map_err(StepError)?;
    let missing = image::missing(&recorded, &held, &store);
    Ok(Survey { missing, store })
}

/// What to do instead, for a node of architecture `arch`.
fn build_for(arch: &str) -> String {
    format!("build the image for {arch} (docker buildx build --platform linux/{arch})")
}

/// Why an image is not shipped to the node `host`, or `None` when the archive has an
/// image its store runs (or either side does not tell).
pub fn refusal(img: &PreparedImage, store: &ImageStore, host: &str) -> Option<String> {
    let loaded = img.platforms.loaded_by(store.containerd);
    if loaded.is_empty() || store.arch.is_empty() {
        return None;
    }
    if loaded.iter().any(|p| image::runs_on(p, &store.arch)) {
        return None;
    }
    let arch = image::docker_arch(&store.arch);
    let mut why = format!(
        "the archive is built for {}, and {host} runs {arch}: not shipped; ",
        image::describe(&loaded)
    );
    if img
        .platforms
        .indexed
        .iter()
        .any(|p| image::runs_on(p, arch))
    {
        why.push_str(&format!(
            "its OCI index holds {arch} too, but {host}'s image store (not containerd's) loads only the image manifest.json names: save the archive for {arch} alone (docker save --platform linux/{arch})"
        ));
    } else {
        why.push_str(&build_for(arch));
    }
    Some(why)
}

/// Loads one image on a node through its engine (the one the check used), checks that
/// the daemon then holds it for the node's platform, and records it.
async fn load<R: Remote + 'static>(
    remote: &R,
    engines: &Engines<R>,
    img: &PreparedImage,
    store: &ImageStore,
    timeouts: (Duration, Duration),
) -> Result<(), StepError> {
    let (timeout, load_timeout) = timeouts;
    let engine = engines
        .get(remote.host())
        .await
        .map_err(|e| StepError(e.to_string()))?;
    let answer = engine
        .call(img.load_request(), load_timeout)
        .await
        .map_err(|e| StepError(e.to_string()))?;
    api::read(&answer, image::parse_progress).map_err(StepError)?;
    let held = engine
        .call(api::image_inspect(&img.name), timeout)
        .await
        .map_err(|e| StepError(e.to_string()))?;
    if held.status == 404 {
        return Err(StepError(format!(
            "the archive did not provide the image {}",
            img.name
        )));
    }
    let inspected = api::read(&held, image::parse_inspected).map_err(StepError)?;
    if !image::usable(&inspected, store) {
        let arch = image::docker_arch(&store.arch);
        let provided = img.platforms.loaded_by(store.containerd);
        let provided = if provided.is_empty() {
            "no platform rpiprov could read".to_string()
        } else {
            image::describe(&provided)
        };
        return Err(StepError(format!(
            "the {} loaded {} but holds no image of it for {arch}, the node's platform (the archive provides {provided}): {}",
            store.name(),
            img.name,
            build_for(arch)
        )));
    }
    root(remote, image::image_recorded(&img.as_ref()), timeout).await?;
    Ok(())
}

/// Ships every image to every node that lacks it, on each node's engine of the command
/// (whose relay then serves the rest of the run). One result per node, sorted by name.
pub async fn ship<R: Remote + 'static>(
    nodes: &HashMap<String, Arc<R>>,
    engines: &Arc<Engines<R>>,
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
        let engines = engines.clone();
        async move {
            let row = RowId::host(&host);
            let started = Instant::now();
            let mut res = NodeImages {
                host: host.clone(),
                ..Default::default()
            };
            rows.step(&row, "check images");
            match missing_on(&*remote, &engines, &images, command_timeout).await {
                Err(e) => {
                    res.failed = Some(("check images".into(), e.0));
                    res.not_loaded = images.iter().map(|i| i.name.clone()).collect();
                }
                Ok(survey) => {
                    let timeouts = (command_timeout, load_timeout);
                    for (k, &i) in survey.missing.iter().enumerate() {
                        let img = &images[i];
                        // Refused before a byte is sent: it could not run there.
                        let loaded = match refusal(img, &survey.store, &host) {
                            Some(why) => Err(StepError(why)),
                            None => {
                                rows.step(&row, &format!("load image {}", img.name));
                                load(&*remote, &engines, img, &survey.store, timeouts).await
                            }
                        };
                        match loaded {
                            Ok(()) => res.loaded.push(img.name.clone()),
                            Err(e) => {
                                res.failed = Some((img.name.clone(), e.0));
                                res.not_loaded = survey.missing[k..]
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
    use crate::testing::{FakeRemote, Recorder, ok};

    const VERSION: &str =
        r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Arch":"amd64"}"#;
    const CLASSIC: &str =
        r#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"]]}"#;
    const CONTAINERD: &str =
        r#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#;
    const AMD64: &str = r#"{"Id":"sha256:1","Architecture":"amd64","Os":"linux"}"#;

    /// A node whose daemon (amd64, this `info`) answers, whose records are `records`.
    fn node(name: &str, info: &str, records: &str) -> FakeRemote {
        let n = FakeRemote::new(name);
        n.on("printf 'record 0", ok(records))
            .on("mkdir -p /var/lib/rpiprov/images", ok(""));
        n.on_api("GET /version", 200, VERSION)
            .on_api("GET /info", 200, info);
        n
    }

    fn rows() -> Rows {
        Rows::new(Arc::new(Recorder::default()), &[])
    }

    async fn ship_to(nodes: &[&FakeRemote], images: &[PreparedImage]) -> Vec<NodeImages> {
        let nodes: HashMap<String, Arc<FakeRemote>> = nodes
            .iter()
            .map(|f| (f.name.clone(), Arc::new((*f).clone())))
            .collect();
        let engines = Arc::new(Engines::new(&nodes, Duration::from_secs(5)));
        ship(&nodes, &engines, images, 4, Duration::from_secs(5), &rows()).await
    }

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
        img.platforms.classic = Some(image::Platform {
            arch: "arm64".into(),
            variant: String::new(),
            from: "the ELF header of bin/busybox".into(),
        });
        let pi1 = node("pi1", CLASSIC, "record 0 \n");
        let res = ship_to(&[&pi1], &[img]).await;
        assert_eq!(
            res[0].failed,
            Some((
                "lab/a:1".into(),
                "the archive is built for arm64 (the ELF header of bin/busybox), and pi1 runs amd64: not shipped; build the image for amd64 (docker buildx build --platform linux/amd64)".into()
            ))
        );
        assert_eq!(res[0].not_loaded, vec!["lab/a:1"]);
        assert!(pi1.api_calls("POST").is_empty(), "nothing was sent");
    }

    /// A multi-platform archive whose manifest.json names another platform than the
    /// node's: a classic store would load that one, so it is refused there, saying how
    /// to save it; a containerd store loads the node's own from the index.
    #[test]
    fn a_multi_platform_archive_is_judged_by_the_store_that_loads_it() {
        let p = |arch: &str, from: &str| image::Platform {
            arch: arch.into(),
            variant: String::new(),
            from: from.into(),
        };
        let mut img = PreparedImage::new("lab/a:1", ImageFormat::DockerSave, vec![], vec![]);
        img.platforms = ArchivePlatforms {
            classic: Some(p("arm64", "the image config")),
            indexed: vec![p("arm64", "the OCI index"), p("amd64", "the OCI index")],
        };
        let store = |containerd| ImageStore {
            arch: "amd64".into(),
            containerd,
        };
        assert_eq!(refusal(&img, &store(true), "pi1"), None);
        assert_eq!(
            refusal(&img, &store(false), "pi1").unwrap(),
            "the archive is built for arm64 (the image config), and pi1 runs amd64: not shipped; its OCI index holds amd64 too, but pi1's image store (not containerd's) loads only the image manifest.json names: save the archive for amd64 alone (docker save --platform linux/amd64)"
        );
    }

    #[tokio::test]
    async fn loads_only_what_a_node_lacks_with_the_archive_as_the_body() {
        let images = vec![
            PreparedImage::new("lab/a:1", ImageFormat::DockerSave, vec![], b"AAAA".to_vec()),
            PreparedImage::new(
                "lab/b:1",
                ImageFormat::Rootfs,
                vec!["httpd".into(), "-f".into()],
                b"BBBB".to_vec(),
            ),
        ];
        let records = format!("record 0 {} lab/a:1\nrecord 1 \n", images[0].sha256);
        let pi1 = node("pi1", CLASSIC, &records);
        pi1.on_api("GET /images/lab/a:1/json", 200, AMD64)
            .on_api_once(
                "GET /images/lab/b:1/json",
                404,
                r#"{"message":"No such image: lab/b:1"}"#,
            )
            .on_api("GET /images/lab/b:1/json", 200, AMD64)
            .on_api("POST /images/create", 200, "{\"status\":\"sha256:123\"}\n");
        // pi2 has neither; its first load fails, as the daemon says in its answer.
        let pi2 = node("pi2", CLASSIC, "record 0 \nrecord 1 \n");
        pi2.on_api("GET /images", 404, r#"{"message":"No such image"}"#)
            .on_api(
                "POST /images/load",
                200,
                "{\"errorDetail\":{\"message\":\"open /var/lib/docker/tmp: no space left on device\"},\"error\":\"open /var/lib/docker/tmp: no space left on device\"}\n",
            );
        let res = ship_to(&[&pi1, &pi2], &images).await;
        assert_eq!(res[0].host, "pi1");
        assert_eq!(res[0].loaded, vec!["lab/b:1"]);
        assert_eq!(res[0].failed, None);
        let imports = pi1.api_calls("POST /images/create");
        assert_eq!(imports.len(), 1);
        assert!(
            imports[0]
                .line
                .contains("repo=lab%2Fb&tag=1&changes=CMD%20%5B%22httpd%22%2C%22-f%22%5D"),
            "{:?}",
            imports[0].line
        );
        assert_eq!(imports[0].body, "BBBB");
        assert_eq!(
            imports[0].version.as_deref(),
            Some("1.41"),
            "the negotiated version"
        );
        assert!(pi1.api_calls("POST /images/load").is_empty());
        let recorded: Vec<String> = pi1
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("mkdir -p /var/lib/rpiprov/images"))
            .collect();
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].contains(&format!("'{} lab/b:1'", images[1].sha256)));
        assert!(pi1.log.lock().unwrap().iter().all(|r| r.privileged));
        // No docker process but the relay.
        assert_eq!(pi1.count("docker load") + pi1.count("docker import"), 0);
        assert_eq!(
            pi1.count("docker system dial-stdio"),
            1,
            "one relay for all of it"
        );
        // pi2's first load fails: the error is reported, its second image not attempted.
        assert_eq!(
            res[1].failed,
            Some((
                "lab/a:1".into(),
                "open /var/lib/docker/tmp: no space left on device".into()
            ))
        );
        assert!(pi2.api_calls("POST /images/create").is_empty());
        assert_eq!(res[1].not_loaded, vec!["lab/a:1", "lab/b:1"]);
    }

    /// The containerd store loads an archive of another platform without an error, and
    /// holds the image for no platform the node runs: the load fails, saying so, and
    /// nothing is recorded; a later check finds it missing again.
    #[tokio::test]
    async fn an_image_the_containerd_store_holds_for_another_platform_is_not_present() {
        let img = PreparedImage::new("lab/a:1", ImageFormat::DockerSave, vec![], b"AAAA".to_vec());
        let recorded = format!("record 0 {} lab/a:1\n", img.sha256);
        let other = r#"{"Id":"sha256:9","Architecture":"","Os":""}"#;
        let pi1 = node("pi1", CONTAINERD, &recorded);
        pi1.on_api("GET /images/lab/a:1/json", 200, other).on_api(
            "POST /images/load",
            200,
            "{\"stream\":\"Loaded image: lab/a:1\\n\"}\n",
        );
        let sessions = HashMap::from([("pi1".to_string(), Arc::new(pi1.clone()))]);
        let engines = Engines::new(&sessions, Duration::from_secs(5));
        let survey = missing_on(
            &pi1,
            &engines,
            std::slice::from_ref(&img),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(survey.missing, vec![0], "recorded, but not for amd64");
        assert!(survey.store.containerd);
        let res = ship_to(&[&pi1], &[img]).await;
        assert_eq!(
            res[0].failed,
            Some((
                "lab/a:1".into(),
                "the containerd image store loaded lab/a:1 but holds no image of it for amd64, the node's platform (the archive provides no platform rpiprov could read): build the image for amd64 (docker buildx build --platform linux/amd64)".into()
            ))
        );
        assert_eq!(pi1.count("mkdir -p /var/lib/rpiprov/images"), 0);
    }
}
