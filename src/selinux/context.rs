//! SELinux security contexts: `user:role:type[:range]`.

/// A parsed security context, rendered in the kernel's canonical form by `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid SELinux context {0:?}")]
pub struct ParseContextError(pub String);

impl Context {
    pub fn parse(s: &str) -> Result<Context, ParseContextError> {
        if s.split(':').count() < 3 {
            return Err(ParseContextError(s.to_string()));
        }
        Ok(Context(s.to_string()))
    }
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
