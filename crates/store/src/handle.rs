//! The handle codec: the opaque strings clients hold.
//!
//! `ph1_` + 16 hex digits of tenant + 16 of affinity key + 32 of id, lowercase: 68 bytes of
//! a fixed alphabet that can never be a path fragment. Parsing is strict: anything else is
//! rejected before it reaches a store.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "ph1_";
const ENCODED_LEN: usize = PREFIX.len() + 2 * (8 + 8 + 16);

/// A tenant, as the 64-bit digest of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId([u8; 8]);

impl TenantId {
    pub fn from_name(name: &str) -> Self {
        let digest = Sha256::digest(name.as_bytes());
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&digest[..8]);
        Self(bytes)
    }

    /// Lowercase hex, usable as a store key segment.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// Which worker a pipeline lives on: derived handles inherit their parent's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AffinityKey([u8; 8]);

impl AffinityKey {
    pub fn random() -> Self {
        let mut bytes = [0; 8];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn as_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// 16 lowercase hex digits, as in a handle.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Strict inverse of [`AffinityKey::to_hex`].
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut bytes = [0; 8];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

/// A parsed handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    tenant: TenantId,
    affinity: AffinityKey,
    id: [u8; 16],
}

/// Why a string is not a handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleParseError {
    #[error("handle must be {ENCODED_LEN} characters, got {0}")]
    Length(usize),
    #[error("handle must start with `{PREFIX}` (unknown format version)")]
    Version,
    #[error("handle may only contain lowercase hex digits after `{PREFIX}`")]
    Alphabet,
}

impl Handle {
    /// A new handle with a random id.
    pub fn new(tenant: TenantId, affinity: AffinityKey) -> Self {
        let mut id = [0; 16];
        rand::rng().fill_bytes(&mut id);
        Self {
            tenant,
            affinity,
            id,
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn affinity(&self) -> AffinityKey {
        self.affinity
    }

    /// The id part alone, as lowercase hex: a store key segment.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    pub fn parse(text: &str) -> Result<Self, HandleParseError> {
        if text.len() != ENCODED_LEN {
            return Err(HandleParseError::Length(text.len()));
        }
        let body = text.strip_prefix(PREFIX).ok_or(HandleParseError::Version)?;
        if !body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(HandleParseError::Alphabet);
        }
        let bytes = hex::decode(body).map_err(|_| HandleParseError::Alphabet)?;
        let mut tenant = [0; 8];
        let mut affinity = [0; 8];
        let mut id = [0; 16];
        tenant.copy_from_slice(&bytes[..8]);
        affinity.copy_from_slice(&bytes[8..16]);
        id.copy_from_slice(&bytes[16..]);
        Ok(Self {
            tenant: TenantId(tenant),
            affinity: AffinityKey(affinity),
            id,
        })
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}{}{}",
            hex::encode(self.tenant.0),
            hex::encode(self.affinity.0),
            hex::encode(self.id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(tenant in "[a-z]{1,12}", seed in any::<u64>()) {
            let mut handle = Handle::new(TenantId::from_name(&tenant), AffinityKey(seed.to_be_bytes()));
            handle.id[..8].copy_from_slice(&seed.to_le_bytes());
            let text = handle.to_string();
            prop_assert_eq!(Handle::parse(&text), Ok(handle));
        }

        #[test]
        fn arbitrary_strings_never_yield_path_segments(text in any::<String>()) {
            if let Ok(handle) = Handle::parse(&text) {
                prop_assert_eq!(handle.to_string(), text);
                prop_assert!(crate::validate_key(&handle.id_hex()).is_ok());
                prop_assert!(!handle.id_hex().contains('/') && !handle.id_hex().contains('.'));
            }
        }
    }

    #[test]
    fn rejects_path_like_and_foreign_forms() {
        let good = Handle::new(TenantId::from_name("t"), AffinityKey::random()).to_string();
        assert!(Handle::parse(&good).is_ok());
        for bad in [
            "",
            "../../etc/passwd",
            &good.to_uppercase(),
            &good.replacen("ph1_", "ph2_", 1),
            &format!("{}/", &good[..good.len() - 1]),
            &format!("{}%2e%2e", &good[..good.len() - 6]),
            &good[..good.len() - 1],
        ] {
            assert!(Handle::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
