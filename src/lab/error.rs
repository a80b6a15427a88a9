//! Errors of `rpiprov lab`: data first, rendered by `Display`, one exit code per kind.

use std::path::PathBuf;

use crate::exit::{EXIT_FAILED, EXIT_USAGE};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab: {0}")]
    Usage(String),
    #[error("lab: this machine cannot run a lab: {0}")]
    Missing(String),
    #[error("lab: `{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("lab: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lab: node {node}: {message}")]
    Node { node: String, message: String },
    #[error("lab: {0}")]
    Other(String),
}

impl LabError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LabError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
