//! Server secrets, generated on first start and kept in `data_dir/secrets.json`
//! (mode 0600): the key that signs session tokens and the PLC rotation key with which
//! this server signs its accounts' identity operations. Never logged.

use crate::crypto::{KeyType, Keypair};
use crate::storage::StorageError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The server's secrets.
#[derive(Clone)]
pub struct Secrets {
    pub jwt_secret: Vec<u8>,
    pub plc_rotation_key: Keypair,
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    jwt_secret: String,
    plc_rotation_key_k256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Secrets {
    /// Reads the secrets file, creating it (0600, fsynced) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Secrets, StorageError> {
        let path = data_dir.join("secrets.json");
        let corrupt = |why: &str| StorageError::Corrupt(format!("{}: {why}", path.display()));
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            let file: SecretsFile =
                serde_json::from_str(&text).map_err(|e| corrupt(&e.to_string()))?;
            let jwt_secret =
                unhex(&file.jwt_secret).ok_or_else(|| corrupt("jwt_secret is not hex"))?;
            let key = unhex(&file.plc_rotation_key_k256)
                .ok_or_else(|| corrupt("plc_rotation_key_k256 is not hex"))?;
            let plc_rotation_key = Keypair::from_private_bytes(KeyType::K256, &key)
                .map_err(|e| corrupt(&e.to_string()))?;
            return Ok(Secrets {
                jwt_secret,
                plc_rotation_key,
            });
        }
        let secrets = Secrets {
            jwt_secret: rand::random::<[u8; 32]>().to_vec(),
            plc_rotation_key: Keypair::generate(KeyType::K256),
        };
        let file = SecretsFile {
            jwt_secret: hex(&secrets.jwt_secret),
            plc_rotation_key_k256: hex(&secrets.plc_rotation_key.private_bytes()),
        };
        let json = serde_json::to_string_pretty(&file).expect("serialisable");
        crate::storage::write_durably(&path, json.as_bytes())?;
        Ok(secrets)
    }
}
