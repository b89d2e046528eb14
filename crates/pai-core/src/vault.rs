use std::fmt;

use pai_types::Secret;

use crate::error::{CoreError, Result};

/// Encrypts API keys for storage with a Fernet key from `PAI_ENCRYPTION_KEY`.
/// Tokens interoperate with Python `cryptography`'s Fernet in both directions.
pub struct Vault {
    fernet: fernet::Fernet,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault([REDACTED])")
    }
}

impl Vault {
    /// The environment variable holding the vault's key.
    pub const ENV: &'static str = "PAI_ENCRYPTION_KEY";

    /// A fresh random Fernet key (32 bytes, URL-safe base64), as `pai keygen` prints.
    pub fn generate_key() -> Secret<String> {
        Secret::new(fernet::Fernet::generate_key())
    }

    /// The vault for the key in `PAI_ENCRYPTION_KEY`.
    pub fn from_env() -> Result<Self> {
        match std::env::var(Self::ENV) {
            Ok(key) if !key.trim().is_empty() => Self::from_key(&Secret::new(key)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Err(CoreError::Vault(format!(
                "{} is not set; create a key with 'pai keygen' and export it",
                Self::ENV
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(malformed()),
        }
    }

    /// The vault for `key`; refuses anything that is not a Fernet key.
    pub fn from_key(key: &Secret<String>) -> Result<Self> {
        fernet::Fernet::new(key.expose().trim())
            .map(|fernet| Self { fernet })
            .ok_or_else(malformed)
    }

    /// Encrypts `secret` into a Fernet token, safe to store.
    pub fn encrypt(&self, secret: &Secret<String>) -> String {
        self.fernet.encrypt(secret.expose().as_bytes())
    }

    /// The secret in `token`; fails if it was encrypted under another key.
    pub fn decrypt(&self, token: &str) -> Result<Secret<String>> {
        let bytes = self.fernet.decrypt(token.trim()).map_err(|_| {
            CoreError::Vault(format!(
                "the stored API key cannot be decrypted with this {}: export the key it was stored with, or store the API key again with 'pai init … --api-key … --force'",
                Self::ENV
            ))
        })?;
        String::from_utf8(bytes).map(Secret::new).map_err(|_| {
            CoreError::Vault("the stored API key is not valid text; store it again".into())
        })
    }
}

fn malformed() -> CoreError {
    CoreError::Vault(format!(
        "{} is not a valid Fernet key (32 bytes, URL-safe base64); create one with 'pai keygen'",
        Vault::ENV
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let a = Vault::from_key(&Vault::generate_key()).unwrap();
        let b = Vault::from_key(&Vault::generate_key()).unwrap();
        let token = a.encrypt(&Secret::new("sk-abc".into()));
        assert!(!token.contains("sk-abc"));
        assert_eq!(a.decrypt(&token).unwrap().expose(), "sk-abc");
        let err = b.decrypt(&token).unwrap_err().to_string();
        assert!(err.contains("cannot be decrypted"), "{err}");
        assert!(!err.contains("sk-abc"));
    }

    #[test]
    fn malformed_keys_are_refused_with_a_hint() {
        for bad in ["", "short", "not base64 at all!!", "AAAA"] {
            let err = Vault::from_key(&Secret::new(bad.into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("pai keygen"), "{err}");
        }
        assert_eq!(
            format!("{:?}", Vault::from_key(&Vault::generate_key()).unwrap()),
            "Vault([REDACTED])"
        );
    }
}
