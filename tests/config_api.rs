//! The public `config::load` contract other modules build on, checked against the shipped
//! example inventory and playbook.

use std::path::Path;
use std::time::Duration;

use rpiprov::config::{
    Advertise, HostKeyPolicy, InstallMethod, PasswordSource, Role, load_with_home,
};

#[test]
fn shipped_examples_load_into_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let home = root.join("tests/fixtures/no-home");
    let loaded = load_with_home(&root.join("inventory.toml"), None, Some(&home)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let inv = &loaded.inventory;
    let names: Vec<(&str, &str, Role)> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str(), h.role))
        .collect();
    assert_eq!(
        names,
        [
            ("piensg017", "192.168.1.17", Role::Manager),
            ("piensg018", "192.168.1.18", Role::Worker),
            ("piensg019", "192.168.1.19", Role::Worker),
        ]
    );
    for h in &inv.hosts {
        assert_eq!((h.user.as_str(), h.port), ("pi", 22));
        assert!(h.become_.sudo);
        assert_eq!(h.become_.password, PasswordSource::None);
        assert_eq!(h.advertise, Advertise::Reach);
        assert_eq!(h.docker.install, InstallMethod::Distro);
        assert_eq!(
            h.docker.daemon["insecure-registries"],
            serde_json::json!(["192.168.1.17:5000"])
        );
        assert!(h.identity_files.is_empty());
        assert_eq!(h.labels["rack"], "r1");
    }
    assert_eq!(inv.managers().count(), 1);
    assert_eq!(inv.ssh.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(inv.ssh.connect_timeout, Duration::from_secs(10));
    assert_eq!(inv.ssh.command_timeout, Duration::from_secs(600));
    assert_eq!(inv.ssh.known_hosts, home.join(".ssh/known_hosts"));
    assert_eq!(inv.ssh.parallel, 16);
    assert_eq!(
        inv.playbook.as_deref(),
        Some(root.join("playbooks/cluster.toml").as_path())
    );

    let pb = loaded.playbook.as_ref().unwrap();
    let nets: Vec<(&str, bool, bool)> = pb
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.internal, n.attachable))
        .collect();
    assert_eq!(nets, [("DATA", true, false), ("INTERCO", false, true)]);
    assert!(pb.networks.iter().all(|n| n.driver == "overlay"));

    let stacks: Vec<&str> = pb.stacks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stacks, ["registry", "traefik", "httpd", "rok4"]);
    assert_eq!(
        pb.stacks[0].file,
        root.join("playbooks/stacks/registry.yml")
    );
    assert_eq!(pb.stacks[0].timeout, Duration::from_secs(300));
    assert_eq!(pb.stacks[3].timeout, Duration::from_secs(600));
    let rok4 = &pb.stacks[3].compose;
    assert_eq!(rok4.services, ["server", "front"]);
    assert_eq!(rok4.images, ["rok4/server", "nginx:1.27-alpine"]);
    assert_eq!(rok4.external_networks, ["INTERCO", "DATA"]);
    assert_eq!(pb.stacks[0].compose.external_networks, Vec::<String>::new());
    assert_eq!(pb.stacks[1].compose.images, ["traefik:v3.1"]);
    assert!(pb.images.is_empty() && pb.variables.is_empty());
}

#[test]
fn errors_come_with_warnings_in_file_order() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check/bad-image");
    let diags = rpiprov::config::load(&case.join("inventory.toml"), None).unwrap_err();
    let lines: Vec<(String, Option<usize>)> = diags
        .iter()
        .map(|d| {
            (
                d.file.file_name().unwrap().to_string_lossy().into_owned(),
                d.line,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("playbook.toml".into(), Some(2)),
            ("playbook.toml".into(), Some(3)),
            ("web.yml".into(), Some(4)),
            ("web.yml".into(), Some(5)),
        ]
    );
}

/// Issue 18 item 2: a file the check found inside the playbook's folder is replaced by a
/// link to a file outside it before `deploy` reads it: `deploy`'s preparation, which
/// reads the bytes it uploads, refuses it and holds none of the outside file.
#[test]
fn a_file_swapped_for_a_link_after_the_check_is_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book");
    std::fs::create_dir_all(book.join("stacks")).unwrap();
    std::fs::write(
        dir.path().join("inventory.toml"),
        "playbook = \"book/playbook.toml\"\n[[host]]\nname = \"pi1\"\naddress = \"198.18.0.11\"\nrole = \"manager\"\n",
    )
    .unwrap();
    std::fs::write(
        book.join("playbook.toml"),
        "[[stack]]\nname = \"web\"\nfile = \"stacks/web.yml\"\n",
    )
    .unwrap();
    std::fs::write(
        book.join("stacks/web.yml"),
        "version: \"3.8\"\nservices:\n  app:\n    image: lab/httpd:1\n    configs: [app]\nconfigs:\n  app:\n    file: ./app.conf\n",
    )
    .unwrap();
    std::fs::write(book.join("stacks/app.conf"), "listen 80\n").unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, "PRIVATE KEY BYTES").unwrap();
    let loaded =
        rpiprov::config::load_with_home(&dir.path().join("inventory.toml"), None, Some(dir.path()))
            .unwrap();
    let playbook = loaded.playbook.unwrap();
    assert!(rpiprov::deploy::prepare(&playbook).is_ok());

    std::fs::remove_file(book.join("stacks/app.conf")).unwrap();
    std::os::unix::fs::symlink(&key, book.join("stacks/app.conf")).unwrap();
    let err = rpiprov::deploy::prepare(&playbook)
        .map(|p| format!("prepared: {:?}", p.stacks[0].release))
        .unwrap_err();
    let real = std::fs::canonicalize(&key).unwrap();
    assert_eq!(
        err,
        format!(
            "stack web: {}: outside the playbook's folder {} (it leads to {}): rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR",
            book.join("stacks/app.conf").display(),
            book.display(),
            real.display()
        )
    );
}
