//! The backup key: an age x25519 identity made at first start, kept in
//! `data_dir/backup-key.txt` (an age identity file, mode 0600), and its recovery
//! phrase — the key's 32 bytes as 24 BIP-39 words, which a person can write down and
//! type back. Everything a backup ships is encrypted to this key before it leaves the
//! box, so a backup is useless without the phrase, and the phrase is the one thing the
//! owner keeps apart from the box.

use age::secrecy::ExposeSecret;
use bech32::{FromBase32, ToBase32};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const FILE: &str = "backup-key.txt";
const SECRET_PREFIX: &str = "age-secret-key-";

/// The key every backup is encrypted to.
#[derive(Clone)]
pub struct BackupKey {
    identity: age::x25519::Identity,
}

/// Why a phrase is not a key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadPhrase(String);

impl BackupKey {
    fn generate() -> BackupKey {
        BackupKey {
            identity: age::x25519::Identity::generate(),
        }
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// The box's key, made (and stored durably, 0600) the first time.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<BackupKey> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_identity_file(&text)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Made beside, then linked into place only if still absent: two
                // processes starting at once agree on one key (the first one linked).
                let tmp = data_dir.join(format!(".{FILE}.{}.new", std::process::id()));
                crate::storage::write_durably(&tmp, Self::generate().file_text().as_bytes())?;
                let linked = std::fs::hard_link(&tmp, &path);
                std::fs::remove_file(&tmp)?;
                match linked {
                    Ok(()) => crate::storage::sync_dir(data_dir)?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                match Self::load(data_dir)? {
                    Some(key) => Ok(key),
                    None => Err(std::io::Error::other(
                        "the backup key vanished as it was made",
                    )),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The box's key if it has one (a command on a data directory never makes one).
    pub fn load(data_dir: &Path) -> std::io::Result<Option<BackupKey>> {
        match std::fs::read_to_string(Self::path(data_dir)) {
            Ok(text) => Self::from_identity_file(&text)
                .map(Some)
                .map_err(|e| std::io::Error::other(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores the key in `data_dir` (a restore puts the phrase it was given there, so
    /// the new box goes on backing up to the same key).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        crate::storage::write_durably(&Self::path(data_dir), self.file_text().as_bytes())
    }

    fn file_text(&self) -> String {
        format!(
            "# atbox backup key: every backup of this box is encrypted to it.\n\
             # Recovery phrase: `atbox backup key`. Public key: {}\n{}\n",
            self.recipient(),
            self.identity.to_string().expose_secret()
        )
    }

    fn from_identity_file(text: &str) -> Result<BackupKey, BadPhrase> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| BadPhrase("the key file holds no key".into()))?;
        Self::from_phrase(line)
    }

    /// Reads a key written as its 24 words (any case and spacing) or as an age secret
    /// key (`AGE-SECRET-KEY-1…`).
    pub fn from_phrase(phrase: &str) -> Result<BackupKey, BadPhrase> {
        let phrase = phrase.trim();
        if phrase.to_ascii_lowercase().starts_with(SECRET_PREFIX) {
            return age::x25519::Identity::from_str(&phrase.to_ascii_uppercase())
                .map(|identity| BackupKey { identity })
                .map_err(|e| BadPhrase(format!("not an age secret key: {e}")));
        }
        let words: Vec<String> = phrase
            .split(|c: char| c.is_whitespace() || c == ',' || c.is_ascii_digit() || c == '.')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if words.len() != 24 {
            return Err(BadPhrase(format!(
                "a recovery phrase is 24 words; this has {}",
                words.len()
            )));
        }
        let mnemonic = bip39::Mnemonic::parse_normalized(&words.join(" "))
            .map_err(|e| BadPhrase(format!("not a recovery phrase: {e}")))?;
        let (entropy, len) = mnemonic.to_entropy_array();
        Self::from_bytes(&entropy[..len])
    }

    fn from_bytes(bytes: &[u8]) -> Result<BackupKey, BadPhrase> {
        let encoded = bech32::encode(SECRET_PREFIX, bytes.to_base32(), bech32::Variant::Bech32)
            .map_err(|e| BadPhrase(e.to_string()))?;
        age::x25519::Identity::from_str(&encoded.to_uppercase())
            .map(|identity| BackupKey { identity })
            .map_err(|e| BadPhrase(e.to_string()))
    }

    fn secret_bytes(&self) -> Vec<u8> {
        let secret = self.identity.to_string();
        let (_, data, _) =
            bech32::decode(&secret.expose_secret().to_lowercase()).expect("age writes bech32");
        Vec::<u8>::from_base32(&data).expect("age writes whole bytes")
    }

    /// The recovery phrase: 24 words.
    pub fn phrase(&self) -> Vec<&'static str> {
        bip39::Mnemonic::from_entropy(&self.secret_bytes())
            .expect("32 bytes make 24 words")
            .words()
            .collect()
    }

    /// The public half (`age1…`): what backups are encrypted to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// Encrypts `plain` to this key.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let recipient = self.identity.to_public();
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .expect("one x25519 recipient");
        let mut out = Vec::with_capacity(plain.len() + 256);
        let mut w = encryptor.wrap_output(&mut out).expect("writing to memory");
        w.write_all(plain).expect("writing to memory");
        w.finish().expect("writing to memory");
        out
    }

    /// Decrypts what [`seal`](Self::seal) made; `WrongKey` when it was sealed to another.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        use std::io::Read;
        let decryptor =
            age::Decryptor::new_buffered(sealed).map_err(|e| OpenError::Damaged(e.to_string()))?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => OpenError::WrongKey,
                other => OpenError::Damaged(other.to_string()),
            })?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|e| OpenError::Damaged(e.to_string()))?;
        Ok(out)
    }
}

/// Why a sealed piece did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it was encrypted to a different key")]
    WrongKey,
    #[error("it is damaged ({0})")]
    Damaged(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phrase_gives_back_the_key() {
        let key = BackupKey::generate();
        let words = key.phrase();
        assert_eq!(words.len(), 24);
        // Written down numbered, in capitals, one per line: still the key.
        let written: String = words
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{}. {}\n", i + 1, w.to_uppercase()))
            .collect();
        let back = BackupKey::from_phrase(&written).unwrap();
        assert_eq!(back.recipient(), key.recipient());
        let sealed = key.seal(b"hello");
        assert_eq!(back.open(&sealed).unwrap(), b"hello");
        let age_form = key.identity.to_string();
        let back = BackupKey::from_phrase(age_form.expose_secret()).unwrap();
        assert_eq!(back.recipient(), key.recipient());
    }

    #[test]
    fn another_key_or_a_bad_phrase_is_told_apart() {
        let key = BackupKey::generate();
        let other = BackupKey::generate();
        assert_eq!(other.open(&key.seal(b"x")), Err(OpenError::WrongKey));
        let mut sealed = key.seal(b"some bytes");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(key.open(&sealed), Err(OpenError::Damaged(_))));
        let mut words = key.phrase();
        words[3] = "atbox";
        let err = BackupKey::from_phrase(&words.join(" ")).err().unwrap();
        assert!(err.to_string().contains("not a recovery phrase"), "{err}");
        assert!(BackupKey::from_phrase("one two three").is_err());
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = BackupKey::load_or_create(dir.path()).unwrap();
        let b = BackupKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.recipient(), b.recipient());
        let mode = std::fs::metadata(BackupKey::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
