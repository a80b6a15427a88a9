//! `rpiprov lab ...`: the virtual fleet's subcommands, from clap's flags to [`crate::lab`]
//! (which knows nothing of the command line).

use crate::cli::{DaemonAction, DaemonArg, LabCommand, LabFilterArgs, LabUpArgs, LinkState};
use crate::lab::{self, Daemon, Lab, Shape, UpOptions};

pub fn lab(command: &LabCommand) -> u8 {
    lab::exit_code(match command {
        LabCommand::Up(a) => lab::up(&up_options(a)),
        LabCommand::Down(d) => lab::down_dir(&d.dir),
        LabCommand::Status(d) => lab::status_dir(&d.dir),
        LabCommand::Link(a) => lab::on_nodes(&a.nodes.dir.dir, &a.nodes.nodes, |lab, node| {
            let up = a.state == LinkState::Up;
            lab.set_link(node, up)?;
            Ok(format!("link {}", if up { "up" } else { "down" }))
        }),
        LabCommand::Filter(a) => lab::on_nodes(&a.nodes.dir.dir, &a.nodes.nodes, |lab, node| {
            filter(lab, node, a)
        }),
        LabCommand::Daemon(a) => lab::on_nodes(&a.nodes.dir.dir, &a.nodes.nodes, |lab, node| {
            let d = match a.daemon {
                DaemonArg::Sshd => Daemon::Sshd,
                DaemonArg::Dockerd => Daemon::Dockerd,
            };
            let done = match a.action {
                DaemonAction::Freeze => lab.freeze(node, d).map(|()| "frozen"),
                DaemonAction::Thaw => lab.thaw(node, d).map(|()| "thawed"),
                DaemonAction::Kill => lab.kill(node, d).map(|()| "killed"),
                DaemonAction::Start => lab.start(node, d).map(|()| "running"),
            }?;
            Ok(format!("{} {done}", d.name()))
        }),
        LabCommand::Reboot(a) => lab::on_nodes(&a.dir.dir, &a.nodes, |lab, node| {
            let id = lab.reboot(node)?;
            Ok(format!("rebooted (boot id {id})"))
        }),
        LabCommand::Clock(a) => {
            lab::on_nodes(&a.nodes.dir.dir, &a.nodes.nodes, |lab, node| match a.skew {
                Some(s) => lab.skew_clock(node, s).map(|()| format!("clock {s:+} s")),
                None => lab.clear_clock(node).map(|()| "clock right".to_string()),
            })
        }
    })
}

fn up_options(a: &LabUpArgs) -> UpOptions {
    let shape = match a.sshd_only {
        Some(n) => Shape {
            docker: 0,
            bare: 0,
            sshd_only: n,
        },
        None => Shape {
            docker: a.nodes,
            bare: a.bare,
            sshd_only: 0,
        },
    };
    UpOptions {
        dir: a.dir.dir.clone(),
        shape,
        subnet: a.subnet,
        cpu: a.cpu,
        distros: a.distro.clone(),
    }
}

/// `--clear` first, then each `--drop`, then `--loss`; says what is in place afterwards.
fn filter(lab: &Lab, node: &str, a: &LabFilterArgs) -> crate::lab::Result<String> {
    if a.clear {
        lab.clear_filters(node)?;
    }
    for port in &a.drop {
        lab.drop_port(node, *port)?;
    }
    if let Some(p) = a.loss {
        lab.set_loss(node, p)?;
    }
    let now = lab.filters(node)?;
    Ok(if now.is_empty() {
        "no filter".to_string()
    } else {
        format!("filters: {}", now.join("; "))
    })
}
