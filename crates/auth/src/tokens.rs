//! The token file: which bearer tokens exist, and whose they are.
//!
//! One token per line: `sha256:<hex> <tenant> <role> [<name>]`, `#` starts a comment.
//! Only hashes are stored: a token is 256 random bits, so a plain SHA-256 is as hard to
//! reverse as the token is to guess (a slow password hash would only cost every call).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Caller, Role, valid_tenant_name};

/// Every token starts with this, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "pol_";

/// The SHA-256 of a token, as stored in the file.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token: the prefix and 32 random bytes in hex.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The line of the token file that grants `token` to `tenant` with `role`.
pub fn token_line(token: &str, tenant: &str, role: Role, name: &str) -> String {
    let line = format!(
        "sha256:{} {tenant} {}",
        hex::encode(hash_token(token)),
        role.as_str()
    );
    if name.is_empty() {
        line
    } else {
        format!("{line} {name}")
    }
}

/// Why a token file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// The tokens of one version of the file, by the SHA-256 of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenTable {
    entries: HashMap<[u8; 32], Caller>,
}

impl TokenTable {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut entries = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |reason: String| ParseError { line, reason };
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [hash, tenant, role, rest @ ..] = fields.as_slice() else {
                return Err(fail(
                    "expected `sha256:<hex> <tenant> <role> [<name>]`".into(),
                ));
            };
            if rest.len() > 1 {
                return Err(fail("a token's name is one word".into()));
            }
            let hash = hash
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| fail("the hash must be `sha256:` and 64 hex digits".into()))?;
            if !valid_tenant_name(tenant) {
                return Err(fail(format!(
                    "tenant {tenant:?}: expected 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit"
                )));
            }
            let role = Role::parse(role)
                .ok_or_else(|| fail(format!("role {role:?}: expected `user` or `admin`")))?;
            let caller = Caller {
                tenant: (*tenant).to_owned(),
                role,
            };
            if entries.insert(hash, caller).is_some() {
                return Err(fail("the same token is listed twice".into()));
            }
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whose `token` is. The token's hash is looked up, and the entry found compared with
    /// it in constant time. The lookup's timing depends only on the presented token's
    /// hash: learning which stored hashes share bits with it reveals nothing that leads to
    /// a token (that would take a SHA-256 preimage). Comparing every entry in constant
    /// time instead cost 16 % of a trivial call in a debug build with 100 tokens.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let presented = hash_token(token);
        let (stored, caller) = self.entries.get_key_value(&presented)?;
        bool::from(stored.ct_eq(&presented)).then(|| caller.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_created_token_authenticates_as_its_line_says() {
        let token = new_token();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64);
        let other = new_token();
        let text = format!(
            "# team tokens\n\n{}\n{}  # comment\n",
            token_line(&token, "analytics", Role::User, "alice"),
            token_line(&other, "ops", Role::Admin, "")
        );
        let table = TokenTable::parse(&text).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.authenticate(&token),
            Some(Caller {
                tenant: "analytics".into(),
                role: Role::User
            })
        );
        assert_eq!(table.authenticate(&other).unwrap().role, Role::Admin);
        assert_eq!(table.authenticate(&new_token()), None);
        assert_eq!(table.authenticate(""), None);
        // The hash itself is not a token.
        let line = token_line(&token, "analytics", Role::User, "");
        let hash = line.split_whitespace().next().unwrap();
        assert_eq!(table.authenticate(hash), None);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let good = token_line(&new_token(), "t", Role::User, "");
        for (text, reason) in [
            ("sha256:abcd t user", "64 hex"),
            ("md5:00 t user", "sha256"),
            ("onlyone", "expected"),
            ("sha256:{h} bad/tenant user", "tenant"),
            ("sha256:{h} t root", "role"),
            ("sha256:{h} t user two words", "one word"),
        ] {
            let text = text.replace("{h}", &"ab".repeat(32));
            let error = TokenTable::parse(&format!("{good}\n{text}\n")).unwrap_err();
            assert_eq!(error.line, 2, "{text}");
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
        let error = TokenTable::parse(&format!("{good}\n{good}\n")).unwrap_err();
        assert!(error.reason.contains("twice"));
    }
}
