//! A value that must never be shown. Imports nothing of this crate.

/// A value that must never be shown: a password, a token, a header read from a file. Its
/// `Debug` prints `<secret>`, and nothing in the exporter prints it otherwise.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the request bytes only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}
