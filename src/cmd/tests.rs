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
