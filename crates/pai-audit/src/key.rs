//! The audit log's MAC key: derived from the user's secret, or kept in a 0600 file.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{AuditError, Result};

type HmacSha256 = Hmac<Sha256>;

/// The label the MAC key is derived under, so the user's secret itself never keys a MAC
/// (and a key derived here is useless for anything else it protects).
const DERIVE_LABEL: &[u8] = b"pai audit log MAC key v1";
const ID_LABEL: &[u8] = b"pai audit key id v1";

/// Where the key came from, named in messages so the user knows which one to bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// Derived from `PAI_ENCRYPTION_KEY`.
    Secret,
    /// Read from (or created as) the key file in the config dir.
    File,
}

impl KeySource {
    /// The short name written into the checkpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Secret => "env",
            KeySource::File => "file",
        }
    }
}

/// The key every row's MAC and the head checkpoint are made with. Never printed.
#[derive(Clone)]
pub struct AuditKey {
    key: [u8; 32],
    /// HMAC already keyed (its pads absorbed), cloned per MAC: verify makes millions.
    keyed: Option<HmacSha256>,
    id: String,
    source: KeySource,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// The key derived from `secret` (the text of `PAI_ENCRYPTION_KEY`): HMAC-SHA-256 of a
    /// fixed label under the secret.
    pub fn derive(secret: &[u8]) -> AuditKey {
        Self::from_bytes(hmac(secret, &[DERIVE_LABEL]), KeySource::Secret)
    }

    /// The key in the file at `path` (64 hex digits), creating it with fresh random bytes
    /// and mode 0600 when missing.
    pub fn load_or_create(path: &Path) -> Result<AuditKey> {
        let bad = |detail: String| AuditError::Key {
            path: path.to_path_buf(),
            detail,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad("it does not hold 64 hex digits".into()))?;
                Ok(Self::from_bytes(bytes, KeySource::File))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| bad(format!("no random bytes: {e}")))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
                }
                // Written whole under a temporary name, then linked into place: a second
                // pai starting at the same moment either links first (and this one uses
                // its key) or finds the finished file, never a half-written one.
                let mut nonce = [0u8; 8];
                getrandom::fill(&mut nonce).map_err(|e| bad(format!("no random bytes: {e}")))?;
                let tmp = path.with_extension(format!("key.{}.tmp", hex::encode(nonce)));
                let mut options = fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let written = options.open(&tmp).and_then(|mut file| {
                    file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
                    file.sync_all()
                });
                let linked = written.and_then(|()| fs::hard_link(&tmp, path));
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(Self::from_bytes(bytes, KeySource::File)),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::load_or_create(path),
                    Err(e) => Err(bad(e.to_string())),
                }
            }
            Err(e) => Err(bad(e.to_string())),
        }
    }

    fn from_bytes(key: [u8; 32], source: KeySource) -> AuditKey {
        let id = hex::encode(&hmac(&key, &[ID_LABEL])[..8]);
        // HMAC takes keys of any length, so this is always `Some`.
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(&key).ok();
        AuditKey {
            key,
            keyed,
            id,
            source,
        }
    }

    /// A short public fingerprint of the key (16 hex digits), safe to print and store.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the key came from.
    pub fn source(&self) -> KeySource {
        self.source
    }

    /// Hex HMAC-SHA-256 of `parts` (concatenated) under this key.
    pub(crate) fn mac_hex(&self, parts: &[&[u8]]) -> String {
        let Some(keyed) = &self.keyed else {
            return hex::encode(hmac(&self.key, parts));
        };
        let mut mac = keyed.clone();
        for part in parts {
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_labelled_and_not_the_secret() {
        let a = AuditKey::derive(b"secret");
        assert_eq!(a.id(), AuditKey::derive(b"secret").id());
        assert_ne!(a.id(), AuditKey::derive(b"other").id());
        assert_ne!(&a.key[..], b"secret");
        assert_eq!(a.source(), KeySource::Secret);
        assert!(!format!("{a:?}").contains(&hex::encode(a.key)));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg").join("audit.key");
        let made = AuditKey::load_or_create(&path).unwrap();
        let read = AuditKey::load_or_create(&path).unwrap();
        assert_eq!(made.id(), read.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let dir2 = tempfile::tempdir().unwrap();
        let shared = dir2.path().join("audit.key");
        let ids: Vec<String> = (0..4)
            .map(|_| {
                let p = shared.clone();
                std::thread::spawn(move || AuditKey::load_or_create(&p).unwrap().id().to_string())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(std::fs::read_dir(dir2.path()).unwrap().count(), 1);
        fs::write(&path, "nope").unwrap();
        let err = AuditKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
