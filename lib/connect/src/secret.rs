//! Secrets (API tokens, header values) that never show up in logs: `Debug` and
//! `Display` print `***`, and error excerpts are scrubbed of every secret value.

use serde::Deserialize;

/// A secret string read from the configuration or the environment.
///
/// Its `Debug` output is redacted; the value is only reachable through
/// [`Secret::expose`], which the HTTP layer calls when it builds a request.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces every occurrence of any secret in `text` with `***`.
pub(crate) fn scrub(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        // Very short values would blank out unrelated text; they are not
        // meaningful secrets anyway.
        if s.0.len() >= 4 {
            out = out.replace(&s.0, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", Some(s.clone())).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn scrub_removes_values() {
        let secrets = [Secret::new("tok-123456")];
        assert_eq!(
            scrub("invalid token tok-123456 given", &secrets),
            "invalid token *** given"
        );
    }
}
