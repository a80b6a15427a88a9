//! `rpiprov check` as a user runs it: the real binary, in a fixture folder, with exact
//! output. Every case lives in `tests/fixtures/check/CASE/`; paths in messages are
//! relative to that folder. HOME points at a folder that does not exist, so that no
//! ~/.ssh file of the machine running the tests changes the outcome.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/check")
        .join(case)
}

fn rpiprov(dir: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rpiprov"))
        .args(args)
        .current_dir(dir)
        .env("HOME", "/nonexistent-rpiprov-test-home")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run rpiprov");
    // The fixtures name unroutable addresses (198.18.0.0/15): a connection attempt would
    // hang for the connect timeout. `config` does no network I/O at all; this is a guard.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "check took {:?}",
        started.elapsed()
    );
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `rpiprov check` in the case's folder and expects exit code 2 with exactly these
/// stderr lines, and nothing on stdout.
fn fails(case: &str, expected: &[&str]) {
    let run = rpiprov(&fixture(case), &["check"]);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines, expected, "stderr of case {case}");
    assert_eq!(run.stdout, "", "stdout of case {case}");
    assert_eq!(run.code, 2, "exit code of case {case}");
}

#[test]
fn missing_inventory() {
    fails(
        "missing-inventory",
        &["error: inventory.toml: cannot read: No such file or directory (use -i FILE)"],
    );
}

#[test]
fn unknown_key() {
    fails(
        "unknown-key",
        &[
            "error: inventory.toml:11:1: host[2].role: required key is missing (set \"manager\" or \"worker\" here or in [defaults])",
            "error: inventory.toml:14:1: host[2].rol: unknown key, expected one of: name, address, port, user, identity_files, role, labels, become, become_password, password_auth, advertise, docker",
            "check failed: 2 errors",
        ],
    );
}

#[test]
fn wrong_types_are_all_reported() {
    fails(
        "wrong-type",
        &[
            "error: inventory.toml:5:8: host[0].port: expected an integer, found string \"22\"",
            "error: inventory.toml:6:17: host[0].password_auth: expected true or false, found string \"yes\"",
            "error: inventory.toml:7:18: host[0].identity_files: expected an array, found string \"~/.ssh/id_ed25519\"",
            "check failed: 3 errors",
        ],
    );
}

#[test]
fn toml_syntax_error() {
    fails(
        "bad-toml",
        &[
            "error: inventory.toml:3:17: host[0].address: invalid TOML: invalid float, expected nothing",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn bad_role() {
    fails(
        "bad-role",
        &[
            "error: inventory.toml:9:8: host[1].role: expected \"manager\" or \"worker\"",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn no_manager() {
    fails(
        "no-manager",
        &[
            "error: inventory.toml: host: no host has role = \"manager\"; a swarm needs at least one manager",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn duplicate_host() {
    fails(
        "duplicate-host",
        &[
            "error: inventory.toml:10:8: host[1].name: duplicate host name \"pi1\" (first in host[0])",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn duplicate_address_counts_the_port_from_defaults() {
    fails(
        "duplicate-address",
        &[
            "error: inventory.toml:17:11: host[2].address: duplicate address 198.18.255.254:2222 (first in host[0])",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn shell_metachar_label() {
    fails(
        "shell-metachar-label",
        &[
            "error: inventory.toml:5:19: host[0].labels.zone: invalid label value \"a;reboot\": use letters, digits and - _ . / : @ + , = (no spaces, quotes or shell characters)",
            "error: inventory.toml:5:31: host[0].labels.\"rack$(id)\": invalid label key \"rack$(id)\": use letters, digits, '-', '_', '.' and '/', starting with a letter or digit",
            "check failed: 2 errors",
        ],
    );
}

#[test]
fn literal_password() {
    fails(
        "literal-password",
        &[
            "error: inventory.toml:3:19: defaults.become_password: a password must not be written in the inventory: use become_password = \"prompt\" or { env = \"VAR\" }",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn bad_duration() {
    fails(
        "bad-duration",
        &[
            "error: inventory.toml:7:19: ssh.connect_timeout: invalid duration \"10\": missing unit, use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\"",
            "error: inventory.toml:8:19: ssh.command_timeout: invalid duration \"5 minutes\": no spaces, use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\"",
            "check failed: 2 errors",
        ],
    );
}

#[test]
fn bad_stack_name() {
    fails(
        "bad-stack-name",
        &[
            "error: playbook.toml:2:8: stack[0].name: invalid stack name \"Web Site\": use lowercase letters, digits, '-' and '_', starting with a letter or digit",
            "error: playbook.toml:6:8: stack[1].name: invalid stack name \"-web\": use lowercase letters, digits, '-' and '_', starting with a letter or digit",
            "check failed: 2 errors",
        ],
    );
}

#[test]
fn duplicate_stack_and_network() {
    fails(
        "duplicate-stack",
        &[
            "error: playbook.toml:5:8: network[1].name: duplicate network name \"DATA\" (first in network[0])",
            "error: playbook.toml:12:8: stack[1].name: duplicate stack name \"web\" (first in stack[0])",
            "check failed: 2 errors",
        ],
    );
}

#[test]
fn bad_subnet_and_driver() {
    fails(
        "bad-subnet",
        &[
            "error: playbook.toml:4:10: network[0].subnet: invalid subnet \"10.20.0.1/24\": host bits are set, did you mean 10.20.0.0/24?",
            "error: playbook.toml:8:10: network[1].driver: driver \"bridge\" is not supported: only \"overlay\" networks span the swarm",
            "error: playbook.toml:9:10: network[1].subnet: invalid subnet \"10.21.0.0/33\": an IPv4 prefix length is at most 32",
            "check failed: 3 errors",
        ],
    );
}

#[test]
fn missing_compose() {
    fails(
        "missing-compose",
        &[
            "error: playbook.toml:3:8: stack[0].file: stacks/web.yml: no such file",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn bad_yaml() {
    fails(
        "bad-yaml",
        &[
            "error: web.yml:6:3: invalid YAML: invalid indentation",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn undeclared_external_network() {
    fails(
        "undeclared-external-network",
        &[
            "error: web.yml:11:3: networks.DATA: external network \"DATA\" is not declared in the playbook: add a [[network]] named \"DATA\"",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn undeclared_service_network() {
    fails(
        "undeclared-service-network",
        &[
            "error: web.yml:8:7: services.web.networks.back: network \"back\" is not declared in the top-level networks: of this file",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn bad_images() {
    fails(
        "bad-image",
        &[
            "error: playbook.toml:2:8: image[0].name: invalid image reference \"Lab/httpd:1\": the repository path uses lowercase letters, digits and single '.', '_', '__' or '-' separators",
            "error: playbook.toml:3:11: image[0].archive: images/httpd.tar: no such file",
            "error: web.yml:4:5: services.web.image: invalid image reference \"httpd:2.4;reboot\": a tag is at most 128 letters, digits, '_', '.' and '-'",
            "error: web.yml:5:3: services.api: no image: docker stack deploy does not build images, set image:",
            "check failed: 4 errors",
        ],
    );
}

#[test]
fn refused_key_and_old_version() {
    fails(
        "refused-key",
        &[
            "error: web.yml:1:1: version: docker stack deploy needs a version 3 file, found \"2.4\"",
            "error: web.yml:5:5: services.web.mem_limit: refused by docker stack deploy: set resource limits under deploy.resources",
            "check failed: 2 errors",
        ],
    );
}

#[test]
fn secret_written_in_the_playbook() {
    fails(
        "secret-in-file",
        &[
            "error: playbook.toml:7:9: variable[0].value: a secret must not be written in the playbook: use env = \"VAR\" or command = [...] with secret = true",
            "check failed: 1 error",
        ],
    );
}

#[test]
fn ignored_keys_are_warnings() {
    let run = rpiprov(&fixture("warnings"), &["check"]);
    assert_eq!(
        run.stderr,
        "warning: web.yml:5:5: services.web.build: ignored by docker stack deploy: images are not built; build and push the image, or ship it with an [[image]]\n\
         warning: web.yml:6:5: services.web.container_name: ignored by docker stack deploy: swarm names the containers itself\n"
    );
    assert_eq!(
        run.stdout,
        "inventory.toml: 1 host (1 manager, 0 workers)\nplaybook.toml: 0 networks, 1 stack\n"
    );
    assert_eq!(run.code, 0);
}

/// Issue 10 items 1 and 4 (and issue 9 item 12): files a stack file refers to are
/// resolved against its folder; a missing one, a folder and one outside the playbook's
/// folder are errors, as is a variable the playbook does not define; variables with a
/// default are accepted.
#[test]
fn referenced_files_and_variables() {
    fails(
        "referenced-files",
        &[
            "error: book/stacks/web.yml:6:9: services.web.env_file[0]: book/stacks/missing.env: no such file",
            "error: book/stacks/web.yml:7:9: services.web.env_file[1]: book/stacks/conf: is a folder, not a file",
            "error: book/stacks/web.yml:8:9: services.web.env_file[2]: outside.env: outside the playbook's folder book: rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR",
            "error: book/stacks/web.yml:10:13: services.web.environment.HOST: variable DB_HOST is not defined in the playbook: docker stack deploy would put an empty string here; define it under [variables], or write ${DB_HOST:-default}",
            "check failed: 4 errors",
        ],
    );
}

/// A file outside the playbook's folder is accepted once its folder is allowed on the
/// command line.
#[test]
fn a_folder_outside_may_be_allowed() {
    let dir = fixture("outside-allowed");
    let run = rpiprov(&dir, &["check"]);
    assert_eq!(
        run.stderr,
        "error: book/stacks/web.yml:5:15: services.web.env_file: shared/common.env: outside the playbook's folder book: rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR\ncheck failed: 1 error\n"
    );
    let run = rpiprov(&dir, &["check", "--allow-outside", "shared"]);
    assert_eq!(run.stderr, "");
    assert_eq!(run.code, 0);
}

#[test]
fn shipped_examples_pass() {
    let run = rpiprov(Path::new(env!("CARGO_MANIFEST_DIR")), &["check"]);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        "inventory.toml: 3 hosts (1 manager, 2 workers)\nplaybooks/cluster.toml: 2 networks, 4 stacks\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn shipped_examples_pass_from_another_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = rpiprov(
        root.join("src").as_path(),
        &["-i", "../inventory.toml", "check"],
    );
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        "../inventory.toml: 3 hosts (1 manager, 2 workers)\n../playbooks/cluster.toml: 2 networks, 4 stacks\n"
    );
    assert_eq!(run.code, 0);
}

#[test]
fn playbook_override() {
    // The inventory of `warnings` names a valid playbook; -p replaces it.
    let run = rpiprov(
        &fixture("warnings"),
        &["-p", "../duplicate-stack/playbook.toml", "check"],
    );
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "error: ../duplicate-stack/playbook.toml:5:8: network[1].name: duplicate network name \"DATA\" (first in network[0])",
            "error: ../duplicate-stack/playbook.toml:12:8: stack[1].name: duplicate stack name \"web\" (first in stack[0])",
            "check failed: 2 errors",
        ]
    );
    assert_eq!(run.code, 2);
}

#[test]
fn json_output() {
    let run = rpiprov(&fixture("bad-role"), &["--json", "check"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr, "");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "ok": false,
            "errors": [{
                "severity": "error",
                "file": "inventory.toml",
                "line": 9,
                "column": 8,
                "key_path": "host[1].role",
                "message": "expected \"manager\" or \"worker\"",
            }],
            "warnings": [],
        })
    );

    let run = rpiprov(&fixture("warnings"), &["--json", "check"]);
    assert_eq!(run.code, 0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(v["warnings"][0]["key_path"], "services.web.build");
}

/// Issue 9, item 3: an inventory that points known_hosts or the ssh config outside its own
/// folder and ~/.ssh is warned about, with where and why.
#[test]
fn ssh_files_outside_the_inventory_folder_and_dot_ssh_are_warned_about() {
    let run = rpiprov(&fixture("ssh-files-outside/inventory"), &["check"]);
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "warning: inventory.toml:3:15: ssh.known_hosts: ../known_hosts is outside this inventory's folder and ~/.ssh: rpiprov checks host keys against it and, with --host-key-policy accept-new, adds keys to it; make sure you trust this inventory",
            "warning: inventory.toml:4:10: ssh.config: ../ssh_config is outside this inventory's folder and ~/.ssh: rpiprov takes host names, ports, users, keys and jump hosts from it; make sure you trust this inventory",
        ]
    );
    assert_eq!(run.code, 0);

    let run = rpiprov(&fixture("ssh-files-inside"), &["check"]);
    assert_eq!(run.stderr, "");
    assert_eq!(run.code, 0);
}

/// Issue 17 item 4: what only some Docker CLI releases read is accepted, each with a
/// warning that names the releases that refuse it (a file without version:, a key of a
/// newer format, a job mode, a YAML 1.1 boolean that CLI 28 reads as a string).
#[test]
fn what_only_some_docker_cli_releases_read_is_warned_about() {
    let run = rpiprov(&fixture("cli-versions"), &["check"]);
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "warning: web.yml: version: missing: Docker CLI 23.0 and later read a file without version: as the newest 3.x format they know; before 23.0 (Debian 12's docker.io 20.10) the CLI reads it as version 1.0 and refuses it; deploy refuses the file where the manager's Docker CLI is older than 23.0",
            "warning: web.yml:7:7: services.web.healthcheck.start_interval: a key of version 3.12: a file without version: is read as the newest 3.x format the CLI knows, and only Docker CLI 25.0 and later know 3.12; deploy refuses the file where the manager's Docker CLI is older than 25.0",
            "warning: jobs.yml:6:13: services.migrate.deploy.mode: deploy mode replicated-job: Docker CLI 23.0 and later deploy jobs from stack files; older ones (Debian 12's docker.io 20.10) refuse it (\"Unknown mode: replicated-job\"); deploy refuses the file where the manager's Docker CLI is older than 23.0",
            "warning: old.yml:5:5: services.app.init: a key of version 3.7: Docker CLI 23.0 and later read version: \"3\" as a format that has it; before 23.0 (Debian 12's docker.io 20.10) version: \"3\" is 3.0, which has no such key, and the file is refused; deploy refuses the file where the manager's Docker CLI is older than 23.0",
            "warning: old.yml:6:16: services.app.read_only: on is a boolean to Docker CLI before 28.0 (YAML 1.1) but the string \"on\" to 28.0 and later (YAML 1.2), which refuse it here: write true; deploy refuses the file where the manager's Docker CLI is 28.0 or later",
        ]
    );
    assert_eq!(
        run.stdout,
        "inventory.toml: 1 host (1 manager, 0 workers)\nplaybook.toml: 0 networks, 3 stacks\n"
    );
    assert_eq!(run.code, 0);
}
