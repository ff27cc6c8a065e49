//! The error of a file the exporter reads (targets, resolver files, web config): where in the
//! file, and what is wrong. Imports nothing of this crate, so that every reader can return it.
//!
//! One load can report several errors: the first is the error itself, the others follow it in
//! [`ConfigError::more`], and each prints on a line of its own.

use std::fmt;
use std::path::PathBuf;

/// Most errors one load lists; past them it stops looking.
pub const MAX_ERRORS: usize = 100;

/// A config error with its place in the file, and the errors found after it in the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// 1-based line of the offending value (1 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the field.
    pub message: String,
    /// The other errors of the same load, in file order after this one (each with an empty
    /// `more`).
    pub more: Vec<ConfigError>,
    /// Whether the load stopped looking after [`MAX_ERRORS`] errors, so that more may follow.
    pub truncated: bool,
}

impl ConfigError {
    /// One error at `line` and `column` of `file`.
    pub fn new(file: impl Into<PathBuf>, line: usize, column: usize, message: String) -> Self {
        ConfigError {
            file: file.into(),
            line,
            column,
            message,
            more: Vec::new(),
            truncated: false,
        }
    }

    /// Errors found by one load, sorted into file order (by line, then column), as one error
    /// that lists them all; `None` when there are none. At most [`MAX_ERRORS`] are kept, and
    /// `truncated` says whether the load stopped looking or some were left out.
    pub fn list(mut errors: Vec<ConfigError>, truncated: bool) -> Option<ConfigError> {
        errors.sort_by_key(|e| (e.line, e.column));
        let truncated = truncated || errors.len() > MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        let mut errors = errors.into_iter();
        let mut first = errors.next()?;
        first.more.extend(errors);
        first.truncated = truncated;
        Some(first)
    }

    /// Every error, this one first, in file order.
    pub fn all(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(&self.more)
    }

    /// How many errors are listed.
    pub fn count(&self) -> usize {
        1 + self.more.len()
    }
}

impl fmt::Display for ConfigError {
    /// `file:line:column: message`, one line per error; after [`MAX_ERRORS`] a last line says
    /// that the load stopped there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.all().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                e.file.display(),
                e.line,
                e.column,
                e.message
            )?;
        }
        if self.truncated {
            write!(
                f,
                "\n{}: stopped after {} errors; fix these and check again",
                self.file.display(),
                self.count()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_prints_as_one_line_and_several_in_file_order() {
        let e = |line, column, m: &str| ConfigError::new("t.yml", line, column, m.into());
        assert_eq!(e(3, 5, "bad").to_string(), "t.yml:3:5: bad");
        let all = ConfigError::list(vec![e(9, 1, "c"), e(2, 7, "a"), e(2, 9, "b")], false);
        let all = all.unwrap();
        assert_eq!(all.to_string(), "t.yml:2:7: a\nt.yml:2:9: b\nt.yml:9:1: c");
        assert_eq!((all.line, all.column, all.count()), (2, 7, 3));
        assert!(ConfigError::list(Vec::new(), false).is_none());
        let many = (1..=MAX_ERRORS + 5).map(|i| e(i, 1, "x")).collect();
        let text = ConfigError::list(many, false).unwrap().to_string();
        assert_eq!(text.lines().count(), MAX_ERRORS + 1);
        assert!(
            text.ends_with("\nt.yml: stopped after 100 errors; fix these and check again"),
            "{text}"
        );
    }
}
