//! The command line as a user types it: each command lists only the options it reads,
//! the options written before the command still work, and those a command does not read
//! are refused rather than ignored.

use clap::{CommandFactory, Parser};

use super::*;
use crate::cli::Cli;

/// The long help of a command, as `rpiprov ARGS --help` prints it.
fn help(path: &[&str]) -> String {
    let mut cmd = Cli::command();
    cmd.build();
    let mut c = &mut cmd;
    for p in path {
        c = c.find_subcommand_mut(p).unwrap();
    }
    c.render_long_help().to_string()
}

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("rpiprov").chain(args.iter().copied())).unwrap()
}

#[test]
fn lab_up_lists_only_its_own_options() {
    let h = help(&["lab", "up"]);
    for absent in [
        "--on",
        "--json",
        "--host-key-policy",
        "--playbook",
        "--parallel",
        "--inventory",
        "--verbose",
    ] {
        assert!(!h.contains(absent), "lab up --help lists {absent}:\n{h}");
    }
    for present in ["--dir", "--nodes", "--bare", "--sshd-only", "--subnet"] {
        assert!(h.contains(present), "{present} missing:\n{h}");
    }
}

#[test]
fn each_command_lists_the_options_it_reads() {
    let bootstrap = help(&["bootstrap"]);
    for o in [
        "--inventory",
        "--playbook",
        "--on",
        "--json",
        "--verbose",
        "--host-key-policy",
        "--parallel",
        "--force",
    ] {
        assert!(bootstrap.contains(o), "bootstrap lacks {o}:\n{bootstrap}");
    }
    let deploy = help(&["deploy"]);
    assert!(!deploy.contains("--on"), "{deploy}");
    assert!(deploy.contains("--unlock"), "{deploy}");
    let check = help(&["check"]);
    for absent in ["--on", "--parallel", "--host-key-policy", "--verbose"] {
        assert!(!check.contains(absent), "check lists {absent}:\n{check}");
    }
    let plan = help(&["plan", "deploy"]);
    assert!(
        plan.contains("--json") && !plan.contains("--verbose") && !plan.contains("--unlock"),
        "{plan}"
    );
    let logs = help(&["logs"]);
    for o in ["--follow", "--since", "--tail", "--inventory"] {
        assert!(logs.contains(o), "logs lacks {o}:\n{logs}");
    }
    assert!(
        !logs.contains("--json") && !logs.contains("--playbook"),
        "{logs}"
    );
    let status = help(&["status"]);
    assert!(
        status.contains("--json") && !status.contains("--on"),
        "{status}"
    );
    let run = help(&["run"]);
    assert!(!run.contains("--playbook") && run.contains("--on"), "{run}");
}

#[test]
fn options_before_the_command_still_work_and_the_command_s_own_win() {
    let cli = parse(&["-i", "a.toml", "--json", "bootstrap", "--on", "pi1"]);
    let Command::Bootstrap(args) = &cli.command else {
        panic!("{cli:?}")
    };
    let o = Opts::before(&cli.before).fleet(&args.fleet).on(&args.on.on);
    assert_eq!(o.inventory_path(), std::path::PathBuf::from("a.toml"));
    assert!(o.json);
    assert_eq!(o.on, vec!["pi1"]);

    let cli = parse(&["-i", "a.toml", "deploy", "-i", "b.toml"]);
    let Command::Deploy(args) = &cli.command else {
        panic!("{cli:?}")
    };
    let o = Opts::before(&cli.before).fleet(&args.fleet);
    assert_eq!(o.inventory_path(), std::path::PathBuf::from("b.toml"));
    assert_eq!(
        Opts::default().inventory_path(),
        std::path::PathBuf::from("inventory.toml")
    );
}

#[test]
fn an_option_the_command_does_not_read_is_refused_not_ignored() {
    let cli = parse(&["--on", "pi1", "deploy"]);
    assert_eq!(dispatch(&cli), EXIT_USAGE);
    let cli = parse(&["--json", "lab", "status", "--dir", "/nonexistent"]);
    assert_eq!(dispatch(&cli), EXIT_USAGE);
    assert_eq!(unread(&cli.before, Reads::FLEET), Vec::<&str>::new());
    assert_eq!(unread(&cli.before, Reads::NONE), vec!["--json"]);
    // Accepted after the command only where the command reads it.
    assert!(
        Cli::try_parse_from(["rpiprov", "lab", "up", "--json"]).is_err(),
        "lab up accepted --json"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_definitions() {
    let page = String::from_utf8(docs::man_page()).unwrap();
    assert!(page.contains("\n.TH rpiprov 1 "), "{}", &page[..200]);
    for section in [".SH \"RPIPROV DEPLOY\"", ".SH \"RPIPROV LAB\""] {
        assert!(page.contains(section), "no {section}");
    }
    // Each command's own options are in its section.
    let deploy = &page[page.find(".SH \"RPIPROV DEPLOY\"").unwrap()..];
    let deploy = &deploy[..deploy[4..].find(".SH ").map_or(deploy.len(), |i| i + 4)];
    assert!(deploy.contains("unlock"), "{deploy}");
    assert!(!deploy.contains("\\-\\-on"), "{deploy}");
}

#[test]
fn backup_and_restore_read_what_they_say_and_refuse_the_rest() {
    let backup = help(&["backup"]);
    for o in [
        "--output",
        "--yes",
        "--list",
        "--json",
        "--inventory",
        "Examples:",
    ] {
        assert!(backup.contains(o), "backup lacks {o}:\n{backup}");
    }
    let restore = help(&["restore"]);
    for o in [
        "--on <HOST>",
        "--force",
        "--json",
        "RPIPROV_UNLOCK_KEY",
        "Examples:",
    ] {
        assert!(restore.contains(o), "restore lacks {o}:\n{restore}");
    }
    assert!(
        Cli::try_parse_from(["rpiprov", "backup", "--list", "a.tar", "-o", "b.tar"]).is_err(),
        "--list and -o together were accepted"
    );
    assert!(
        Cli::try_parse_from(["rpiprov", "restore"]).is_err(),
        "restore without a file"
    );
    // The selection grammar before the command is not restore's --on.
    let cli = parse(&["--on", "pi1", "restore", "a.tar"]);
    assert_eq!(dispatch(&cli), EXIT_USAGE);
    // A bad archive is a usage error before any configuration or connection.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, b"not an archive").unwrap();
    for args in [
        vec!["backup", "--list", bad.to_str().unwrap()],
        vec!["restore", bad.to_str().unwrap()],
    ] {
        assert_eq!(dispatch(&parse(&args)), EXIT_USAGE, "{args:?}");
    }
    // A link where the archive would go: refused before anything is read or copied.
    let link = dir.path().join("link.tar");
    std::os::unix::fs::symlink(&bad, &link).unwrap();
    let cli = parse(&[
        "backup",
        "-i",
        "/nonexistent/inventory.toml",
        "-o",
        link.to_str().unwrap(),
    ]);
    assert_eq!(dispatch(&cli), EXIT_USAGE);
    assert_eq!(std::fs::read(&bad).unwrap(), b"not an archive");
}

#[test]
fn backup_list_says_what_an_archive_holds() {
    let m = crate::backup::archive::samples::sample().manifest;
    assert_eq!(
        backup::describe(&m),
        format!(
            "swarm    zgg1nt9l53jti48c9tyokrwzu (1 manager; autolocked: a restore needs its unlock key)\n\
             taken    2026-12-07T10:15:00Z from pi1 (198.18.0.11, the leader; Docker 20.10.24, data root /var/lib/docker)\n\
             records  from pi1\n\
             nodes    1: pi1 (manager, ready)\n\
             stacks   1: web (web)\n\
             format   rpiprov-backup version 1, written by rpiprov 0.1.0\n\
             members  swarm.tar.gz {} bytes, records.tar.gz {} bytes\n",
            m.files[0].size, m.files[1].size
        )
    );
}

#[test]
fn a_restore_s_rows_are_merged_per_host() {
    use crate::exec::report::{Outcome, Row, RowId};
    let row = |changed: &[&str], failed: Option<(&str, &str)>| {
        let mut r = Row::new(RowId::host("pi1"));
        r.changed = changed.iter().map(|s| s.to_string()).collect();
        if !changed.is_empty() {
            r.outcome = Outcome::Changed;
        }
        if let Some((step, e)) = failed {
            r.outcome = Outcome::Failed;
            r.failed_step = Some(step.into());
            r.error = Some(e.into());
        }
        r
    };
    let merged = restore::merge(vec![
        vec![Row::connect_failed("pi2", "no route".into())],
        vec![row(&["swarm state put back"], None)],
        vec![
            row(&[], None),
            Row::connect_failed("pi2", "no route".into()),
        ],
        vec![row(&["records put back"], Some(("images", "no space")))],
    ]);
    assert_eq!(merged.len(), 2);
    let pi1 = &merged[1];
    assert_eq!(pi1.changed, ["swarm state put back", "records put back"]);
    assert_eq!(
        (
            pi1.outcome,
            pi1.failed_step.as_deref(),
            pi1.error.as_deref()
        ),
        (Outcome::Failed, Some("images"), Some("no space"))
    );
    // The same failure twice is said once.
    assert_eq!(
        merged[0].error,
        Row::connect_failed("pi2", "no route".into()).error
    );
}
