//! Key pairs and public keys on the k256 and p256 crates.

use super::CryptoError;
use k256::ecdsa::signature::{Signer, Verifier};
use rand::rngs::OsRng;

/// Which curve a key is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    K256,
    P256,
}

impl KeyType {
    /// The JWT `alg` for signatures made with this kind of key.
    pub fn jwt_alg(self) -> &'static str {
        match self {
            KeyType::K256 => "ES256K",
            KeyType::P256 => "ES256",
        }
    }
}

/// A private signing key.
#[derive(Clone)]
pub enum Keypair {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

// Never print key material, even in debug logs.
impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keypair({:?}, {})",
            self.key_type(),
            self.public_key().to_did_key()
        )
    }
}

impl Keypair {
    pub fn generate(key_type: KeyType) -> Keypair {
        match key_type {
            KeyType::K256 => Keypair::K256(k256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyType::P256 => Keypair::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
        }
    }

    /// Imports a 32-byte private scalar.
    pub fn from_private_bytes(key_type: KeyType, bytes: &[u8]) -> Result<Keypair, CryptoError> {
        let err = |e: k256::ecdsa::Error| CryptoError::Key(e.to_string());
        Ok(match key_type {
            KeyType::K256 => {
                Keypair::K256(k256::ecdsa::SigningKey::from_slice(bytes).map_err(err)?)
            }
            KeyType::P256 => {
                Keypair::P256(p256::ecdsa::SigningKey::from_slice(bytes).map_err(err)?)
            }
        })
    }

    /// The 32-byte private scalar, for storing in a 0600 secrets file.
    pub fn private_bytes(&self) -> [u8; 32] {
        match self {
            Keypair::K256(k) => k.to_bytes().into(),
            Keypair::P256(k) => k.to_bytes().into(),
        }
    }

    pub fn key_type(&self) -> KeyType {
        match self {
            Keypair::K256(_) => KeyType::K256,
            Keypair::P256(_) => KeyType::P256,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            Keypair::K256(k) => PublicKey::K256(*k.verifying_key()),
            Keypair::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// Signs SHA-256(`msg`); returns the 64-byte compact low-S signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        match self {
            Keypair::K256(k) => {
                let sig: k256::ecdsa::Signature = k.sign(msg);
                sig.normalize_s().unwrap_or(sig).to_bytes().into()
            }
            Keypair::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.normalize_s().unwrap_or(sig).to_bytes().into()
            }
        }
    }
}

/// A public key that verifies atproto signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKey {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Parses a SEC1 point (compressed or not) for the given curve.
    pub fn from_sec1(key_type: KeyType, bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        let err = |e: k256::ecdsa::Error| CryptoError::Key(e.to_string());
        Ok(match key_type {
            KeyType::K256 => {
                PublicKey::K256(k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(err)?)
            }
            KeyType::P256 => {
                PublicKey::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(err)?)
            }
        })
    }

    /// The 33-byte compressed SEC1 point.
    pub fn to_compressed(&self) -> Vec<u8> {
        match self {
            PublicKey::K256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            PublicKey::P256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    pub fn key_type(&self) -> KeyType {
        match self {
            PublicKey::K256(_) => KeyType::K256,
            PublicKey::P256(_) => KeyType::P256,
        }
    }

    /// Verifies a 64-byte compact signature over SHA-256(`msg`). High-S and
    /// DER-encoded signatures are refused (atproto requires low-S compact form).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::SignatureLength(sig.len()));
        }
        match self {
            PublicKey::K256(k) => {
                let sig = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::BadSignature)?;
                if sig.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
            }
            PublicKey::P256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::BadSignature)?;
                if sig.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}
