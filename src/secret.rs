//! Secrets: redacted when printed, zeroized when dropped.
//!
//! A [`Secret`] holds the text the provider shows you (`whsec_…`, a GitHub
//! webhook secret, a Slack signing secret…). The [`Verifier`](crate::Verifier)
//! derives the HMAC key from it once, when it is built, following the
//! route's [`Scheme`](crate::Scheme).
//!
//! ```
//! use webhook_guard::Secret;
//!
//! let secret = Secret::labeled("2026-rotation", "whsec_do_not_print_me");
//! assert_eq!(format!("{secret:?}"), r#"Secret { label: Some("2026-rotation"), value: "[redacted]" }"#);
//! assert_eq!(secret.to_string(), "[redacted]");
//! ```

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A webhook secret. Its value never appears in `Debug` or `Display` output
/// and is overwritten with zeros when dropped.
#[derive(Clone)]
pub struct Secret {
    value: Zeroizing<String>,
    label: Option<Arc<str>>,
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: Zeroizing::new(value.into()),
            label: None,
        }
    }

    /// Wraps a secret value with a label (for example `"2026-rotation"`)
    /// that [`VerifiedWebhook::secret_label`](crate::VerifiedWebhook::secret_label)
    /// reports when this secret is the one that matched. The label is not
    /// secret.
    pub fn labeled(label: impl Into<Arc<str>>, value: impl Into<String>) -> Self {
        Self {
            value: Zeroizing::new(value.into()),
            label: Some(label.into()),
        }
    }

    /// The label given with [`Secret::labeled`], if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub(crate) fn expose(&self) -> &str {
        &self.value
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("label", &self.label)
            .field("value", &"[redacted]")
            .finish()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Checks the shape every secret must have, whatever the scheme.
pub(crate) fn check_plain(index: usize, value: &str) -> Result<(), crate::ConfigError> {
    if value.trim().is_empty() {
        return Err(crate::ConfigError::EmptySecret { index });
    }
    if value.trim() != value {
        return Err(crate::ConfigError::SecretHasSurroundingWhitespace { index });
    }
    Ok(())
}

/// Key bytes for a secret whose text is the key (everything but Standard
/// Webhooks).
pub(crate) fn plain_key(index: usize, value: &str) -> Result<Zeroizing<Vec<u8>>, crate::ConfigError> {
    check_plain(index, value)?;
    Ok(Zeroizing::new(value.as_bytes().to_vec()))
}
