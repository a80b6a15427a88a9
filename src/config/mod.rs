//! Inventory and playbook: parsed from TOML into raw structs, then validated into the
//! types of [`model`]. All of it runs before any connection, and none of it touches the
//! network: `rpiprov check` is [`load`] and a printout.
//!
//! Every problem found is a [`Diagnostic`] with a file, a position and a key path; all of
//! them are collected, not only the first. Key paths use 0-based indexes in file order:
//! `host[0]` is the first `[[host]]` table.

pub mod compose;
mod diag;
pub mod dotenv;
pub mod duration;
pub mod interpolate;
mod inventory;
pub mod model;
pub mod names;
mod paths;
mod playbook;
mod toml_file;
mod yaml;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Severity};
pub use model::*;
pub use paths::normalize as normalize_path;

/// A configuration that passed every check, with the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub inventory: Inventory,
    /// `None` when the inventory names no playbook and none was given with `-p`.
    pub playbook: Option<Playbook>,
    pub warnings: Vec<Diagnostic>,
}

/// How the files are read, beyond the files themselves: what the user allowed on the
/// command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Folders outside the playbook's from which local files (stack files, the files they
    /// refer to, image archives) may be sent to hosts (`--allow-outside DIR`).
    pub allow_outside: Vec<PathBuf>,
}

/// Reads and checks the inventory, the playbook it names (or `playbook_override`,
/// relative to the current folder), and every compose file of the playbook.
///
/// On failure the list holds every error and every warning, in file order.
pub fn load(inventory: &Path, playbook_override: Option<&Path>) -> Result<Loaded, Vec<Diagnostic>> {
    load_with(inventory, playbook_override, &Options::default())
}

/// [`load`] with the user's options.
pub fn load_with(
    inventory: &Path,
    playbook_override: Option<&Path>,
    options: &Options,
) -> Result<Loaded, Vec<Diagnostic>> {
    load_all(
        inventory,
        playbook_override,
        paths::home_dir().as_deref(),
        options,
    )
}

/// [`load`] with `~` standing for `home`.
pub fn load_with_home(
    inventory: &Path,
    playbook_override: Option<&Path>,
    home: Option<&Path>,
) -> Result<Loaded, Vec<Diagnostic>> {
    load_all(inventory, playbook_override, home, &Options::default())
}

fn load_all(
    inventory: &Path,
    playbook_override: Option<&Path>,
    home: Option<&Path>,
    options: &Options,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let outcome = inventory::load(inventory, home, &mut diags);
    let (playbook_path, named_at) = match playbook_override {
        Some(p) => (Some(p.to_path_buf()), None),
        None => (outcome.playbook, outcome.playbook_at),
    };
    let playbook = playbook_path.as_deref().and_then(|p| {
        playbook::load(
            p,
            named_at.as_ref(),
            home,
            &options.allow_outside,
            &|k| std::env::var(k).ok(),
            &mut diags,
        )
    });
    let mut first_files = vec![inventory.to_path_buf()];
    first_files.extend(playbook_path.clone());
    sort_by_file(&mut diags, first_files);
    match outcome.inventory {
        Some(inventory)
            if !diags.iter().any(Diagnostic::is_error)
                && (playbook.is_some() || playbook_path.is_none()) =>
        {
            Ok(Loaded {
                inventory,
                playbook,
                warnings: diags,
            })
        }
        _ => Err(diags),
    }
}

/// The inventory, the playbook, then compose files in the order they were first
/// reported (stack order); positions in file order within each file.
fn sort_by_file(diags: &mut [Diagnostic], mut files: Vec<std::path::PathBuf>) {
    for d in diags.iter() {
        if !files.contains(&d.file) {
            files.push(d.file.clone());
        }
    }
    diags.sort_by_key(|d| {
        let rank = files
            .iter()
            .position(|f| *f == d.file)
            .unwrap_or(usize::MAX);
        (rank, d.line.unwrap_or(0), d.column.unwrap_or(0))
    });
}
