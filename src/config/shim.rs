//! TEMPORARY: stands in for the parser until the config branch merges. Deleted at merge.
use std::path::{Path, PathBuf};

use super::{Inventory, Playbook};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key_path: String,
    pub message: String,
}
impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.key_path,
            self.message
        )
    }
}
pub struct Loaded {
    pub inventory: Inventory,
    pub playbook: Option<Playbook>,
    pub warnings: Vec<Diagnostic>,
}
pub fn load(_inventory: &Path, _playbook: Option<&Path>) -> Result<Loaded, Vec<Diagnostic>> {
    Err(vec![])
}
