//! Tenant names: what every crate that keys data by tenant (the store, the job queue,
//! authentication) accepts as one.

/// The tenant of every call when nobody authenticates (a laptop's standalone, or an
/// operator's explicit `allow_unauthenticated`), and of records made before tenants.
pub const DEFAULT_TENANT: &str = "default";

/// Whether `name` can be a tenant: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or
/// digit. No `:` (Redis's key separator) and no `/`, so a tenant name inside a key or a
/// path cannot reach another's; safe in metrics labels and log lines too.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
