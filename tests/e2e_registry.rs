//! End-to-end tests of images pulled from a registry, on a lab with one
//! (`lab up --registry`: Debian's docker-registry on the bridge, TLS from the lab's CA,
//! which every node trusts), checked on the nodes themselves:
//! 1. a stack whose image is `REGISTRY/rpiprov-lab/busybox:1` (not shipped by the
//!    playbook) deploys and converges: each node pulled it from the registry, its tasks
//!    run it; deploy read its manifest (no warning); deployed again, it is unchanged;
//! 2. an image the registry holds for arm64 only: deploy's architecture check, reading
//!    its manifest from the registry, names the nodes that cannot run it, and the deploy
//!    fails fast on swarm's "no suitable node (unsupported platform)";
//! 3. a tag the registry does not hold: the manifest read says so, and the deploy gives
//!    up in well under a minute with the default timeout, naming the image and the error.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rpiprov::lab::Lab;
use support::fleet::{Fleet, text};

fn run(fleet: &Fleet, args: &[&str], code: i32) -> String {
    let out = fleet.rpiprov(args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(code), "rpiprov {args:?}:\n{all}");
    all
}

/// A playbook (`NAME.toml`) of one stack `NAME`: two replicas of `image`, one per node.
fn playbook(dir: &Path, name: &str, image: &str) -> String {
    let stack = format!(
        "version: \"3.8\"\nservices:\n  app:\n    image: {image}\n    command: [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 2\n      placement:\n        max_replicas_per_node: 1\n      endpoint_mode: dnsrr\n"
    );
    std::fs::write(dir.join(format!("stacks/{name}.yml")), stack).unwrap();
    let book = dir.join(format!("{name}.toml"));
    std::fs::write(
        &book,
        format!("[[stack]]\nname = \"{name}\"\nfile = \"stacks/{name}.yml\"\n"),
    )
    .unwrap();
    book.to_str().unwrap().to_string()
}

#[test]
fn images_from_the_lab_registry_deploy_are_checked_and_fail_fast() {
    let fleet = Fleet::up(&["--nodes", "2", "--bare", "0", "--registry"]);
    let registry = fleet.read("registry").trim().to_string();
    run(&fleet, &["bootstrap"], 0);

    // 1. Pulled from the registry by every node that runs a task.
    let image = format!("{registry}/rpiprov-lab/busybox:1");
    let pulled = playbook(&fleet.dir, "pulled", &image);
    let out = run(&fleet, &["-p", &pulled, "deploy"], 0);
    assert!(out.contains("1 service(s) converged"), "{out}");
    assert!(!out.contains("could not be read"), "{out}");
    assert!(!out.contains("warning"), "{out}");
    let replicas = fleet.inside(
        "pi1",
        &[
            "docker",
            "service",
            "ls",
            "--filter",
            "name=pulled_app",
            "--format",
            "{{.Replicas}}",
        ],
    );
    assert!(replicas.starts_with("2/2 "), "{replicas}");
    let mut digests = Vec::new();
    for node in ["pi1", "pi2"] {
        let running = fleet.inside(
            node,
            &[
                "docker",
                "ps",
                "--filter",
                "label=com.docker.swarm.service.name=pulled_app",
                "--format",
                "{{.Image}}",
            ],
        );
        assert_eq!(running.trim(), image, "{node}");
        // The node's copy came from the registry (swarm pulls it by name and keeps it
        // by the registry's digest, untagged).
        let held = fleet.inside(
            node,
            &[
                "docker",
                "image",
                "ls",
                "--digests",
                "--format",
                "{{.Repository}} {{.Digest}}",
                &format!("{registry}/rpiprov-lab/busybox"),
            ],
        );
        assert!(
            held.starts_with(&format!("{registry}/rpiprov-lab/busybox sha256:")),
            "{node}: {held}"
        );
        digests.push(held);
    }
    assert_eq!(digests[0], digests[1]);
    let again = run(&fleet, &["-p", &pulled, "deploy"], 0);
    assert!(again.contains("unchanged"), "{again}");
    run(&fleet, &["-p", &pulled, "teardown", "--yes", "--purge"], 0);

    // 2. Published for arm64 only (its manifest on the registry says so).
    let lab = Lab::open(&fleet.dir).unwrap();
    lab.push_image("rpiprov-lab/busybox:arm64", "arm64")
        .unwrap();
    let foreign_image = format!("{registry}/rpiprov-lab/busybox:arm64");
    let foreign = playbook(&fleet.dir, "foreign", &foreign_image);
    // Said before the deploy, naming every node; swarm then leaves the tasks pending (the
    // Engine API deploy sends the platform), and the deploy fails fast on that.
    let t = Instant::now();
    let said = run(&fleet, &["-p", &foreign, "deploy"], 1);
    assert!(t.elapsed() < Duration::from_secs(45), "{said}");
    let arch = rpiprov::lab::host_arch();
    assert!(
        said.contains(&format!(
            "warning: {foreign_image} is published for linux/arm64 only: "
        )) && said.contains(&format!("pi1 ({arch})"))
            && said.contains(&format!("pi2 ({arch})")),
        "{said}"
    );
    assert!(
        said.contains("foreign_app 0/2: no suitable node (unsupported platform on 2 nodes)"),
        "{said}"
    );
    run(&fleet, &["-p", &foreign, "teardown", "--yes", "--purge"], 0);

    // 3. A tag the registry does not hold, with the default timeout (5 minutes).
    let missing_image = format!("{registry}/rpiprov-lab/busybox:missing");
    let missing = playbook(&fleet.dir, "missing", &missing_image);
    let t = Instant::now();
    let out = run(&fleet, &["-p", &missing, "deploy"], 1);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(45), "took {took:?}:\n{out}");
    assert!(
        out.contains(&format!(
            "the manifest of {missing_image} could not be read from pi1 (no such manifest: {missing_image})"
        )),
        "{out}"
    );
    assert!(
        out.contains("swarm rejects the tasks with an error that retrying cannot fix"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "missing_app 0/2: No such image: {missing_image} (on "
        )),
        "{out}"
    );
    run(&fleet, &["-p", &missing, "teardown", "--yes", "--purge"], 0);
    assert_eq!(
        fleet
            .inside("pi1", &["docker", "service", "ls", "-q"])
            .trim(),
        ""
    );
}
