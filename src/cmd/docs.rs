//! `rpiprov completions SHELL` and `rpiprov man`: generated from the clap definitions
//! ([`crate::cli`]) at run time, so that they always match the binary and nothing
//! generated is committed.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, ShellArg};
use crate::exit::EXIT_OK;
use crate::ui::term;

/// Prints the completion script of `shell` on stdout.
pub fn completions(shell: ShellArg) -> u8 {
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rpiprov", &mut script);
    term::out_verbatim(&String::from_utf8_lossy(&script));
    EXIT_OK
}

/// The manual page, roff: the top-level page, then a section per command with its
/// synopsis, description and options (clap_mangen renders one command per page).
pub fn man_page() -> Vec<u8> {
    let mut cmd = Cli::command();
    // Built, so that each command knows its full name (`rpiprov deploy`).
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .expect("writing to memory");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let title = format!("rpiprov {}", sub.get_name()).to_uppercase();
        out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
        let page = clap_mangen::Man::new(sub.clone());
        let mut body = Vec::new();
        page.render_synopsis_section(&mut body).expect("memory");
        page.render_description_section(&mut body).expect("memory");
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            page.render_options_section(&mut body).expect("memory");
        }
        if sub.has_subcommands() {
            page.render_subcommands_section(&mut body).expect("memory");
        }
        // The command's own sections become subsections of its section.
        let text = String::from_utf8_lossy(&body).replace(".SH ", ".SS ");
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// Prints [`man_page`] on stdout.
pub fn man() -> u8 {
    term::out_verbatim(&String::from_utf8_lossy(&man_page()));
    EXIT_OK
}
