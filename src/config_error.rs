//! The error of a file the exporter reads (targets, resolver files, web config): where in the
//! file, and what is wrong. Imports nothing of this crate, so that every reader can return it.

use std::path::PathBuf;

/// A config error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// 1-based line of the offending value (1 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the field.
    pub message: String,
}
