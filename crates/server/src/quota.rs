//! Tenant quotas: what one tenant may hold and run at once (stored bytes, concurrent calls,
//! queued plus running jobs), configured with defaults and per-tenant overrides, and the
//! limiter of concurrent calls. Stored bytes are counted by the store's catalog and jobs by
//! the queue; this module says what their limits are.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use polaroid_proto::ErrorCode;
use serde::{Deserialize, Serialize};

/// `[quotas]`: limits every tenant gets, and `[quotas.tenants.<name>]` overrides. 0: no
/// limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Bytes of uploads and persisted results a tenant may keep in the shared store.
    pub stored_bytes: u64,
    /// Calls of a tenant served at once: across the coordinators (which share their
    /// counts through Redis), and separately by each worker for the calls clients make to
    /// it directly.
    pub concurrent_calls: u32,
    /// Batch jobs of a tenant queued, running or waiting to retry at once.
    pub active_jobs: u32,
    /// Per-tenant overrides; a key left out takes the default above, 0 lifts the limit.
    pub tenants: BTreeMap<String, TenantQuotaOverride>,
}

/// One tenant's overrides of the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuotaOverride {
    pub stored_bytes: Option<u64>,
    pub concurrent_calls: Option<u32>,
    pub active_jobs: Option<u32>,
}

/// The limits of one tenant; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub stored_bytes: Option<u64>,
    pub concurrent_calls: Option<u32>,
    pub active_jobs: Option<u32>,
}

/// A limit of 0 means none.
fn limit<T: PartialEq + Default>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

impl QuotaConfig {
    /// Checks the tenant names of the overrides.
    pub fn validate(&self) -> Result<(), String> {
        match self
            .tenants
            .keys()
            .find(|name| !polaroid_proto::tenant::valid_tenant_name(name))
        {
            Some(name) => Err(format!(
                "quotas.tenants.{name:?}: expected a tenant name, 1 to 64 of [A-Za-z0-9._-]"
            )),
            None => Ok(()),
        }
    }

    /// The limits of `tenant`.
    pub fn limits(&self, tenant: &str) -> TenantLimits {
        let own = self.tenants.get(tenant);
        TenantLimits {
            stored_bytes: limit(
                own.and_then(|o| o.stored_bytes)
                    .unwrap_or(self.stored_bytes),
            ),
            concurrent_calls: limit(
                own.and_then(|o| o.concurrent_calls)
                    .unwrap_or(self.concurrent_calls),
            ),
            active_jobs: limit(own.and_then(|o| o.active_jobs).unwrap_or(self.active_jobs)),
        }
    }

    /// Whether any tenant has a limit of concurrent calls.
    pub fn limits_calls(&self) -> bool {
        self.concurrent_calls > 0
            || self
                .tenants
                .values()
                .any(|o| o.concurrent_calls.is_some_and(|c| c > 0))
    }
}

/// Which quota a call went over, and by how much: the RESOURCE_EXHAUSTED a client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quota {quota} of tenant {tenant:?}: {used} in use of its limit of {limit}{needed}; \
     retry when some finish, or ask the operator for a higher quota"
)]
pub struct QuotaExceeded {
    pub quota: &'static str,
    pub tenant: String,
    pub used: u64,
    pub limit: u64,
    /// What the refused request would have added, when that says more than `used`.
    pub needed: String,
}

impl QuotaExceeded {
    pub fn status(&self) -> tonic::Status {
        ErrorCode::ResourceExhausted.status(self.to_string())
    }
}

/// The calls each tenant has in flight in this process, against its limit.
///
/// Calls of one tenant pass through the coordinators; those forwarded to workers are not
/// counted again there. With several coordinators each admits against its own count plus
/// what the others last published ([`TenantCalls::set_elsewhere`]).
#[derive(Debug, Clone)]
pub struct TenantCalls {
    quotas: Arc<QuotaConfig>,
    state: Arc<Mutex<CallState>>,
}

#[derive(Debug, Default)]
struct CallState {
    in_flight: HashMap<String, u32>,
    /// Calls in flight on other coordinators, as they last published them.
    elsewhere: HashMap<String, u32>,
}

impl TenantCalls {
    pub fn new(quotas: Arc<QuotaConfig>) -> Self {
        Self {
            quotas,
            state: Arc::default(),
        }
    }

    /// Admits one call of `tenant`, or says which quota it would exceed.
    pub fn admit(&self, tenant: &str) -> Result<CallPermit, QuotaExceeded> {
        let limit = self.quotas.limits(tenant).concurrent_calls;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elsewhere = state.elsewhere.get(tenant).copied().unwrap_or(0);
        let own = state.in_flight.entry(tenant.to_owned()).or_insert(0);
        if let Some(limit) = limit
            && *own + elsewhere >= limit
        {
            let used = u64::from(*own + elsewhere);
            if *own == 0 {
                state.in_flight.remove(tenant);
            }
            metrics::counter!("polaroid_quota_refusals_total", "quota" => "concurrent_calls", "tenant" => tenant.to_owned())
                .increment(1);
            return Err(QuotaExceeded {
                quota: "concurrent_calls",
                tenant: tenant.to_owned(),
                used,
                limit: u64::from(limit),
                needed: String::new(),
            });
        }
        *own += 1;
        let now = *own;
        drop(state);
        record_calls(tenant, now, limit);
        Ok(CallPermit {
            calls: self.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// This process's calls in flight, by tenant (what a coordinator publishes).
    pub fn in_flight(&self) -> HashMap<String, u32> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight.clone()
    }

    /// What the other coordinators have in flight, by tenant.
    pub fn set_elsewhere(&self, elsewhere: HashMap<String, u32>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = state
            .elsewhere
            .keys()
            .filter(|tenant| !elsewhere.contains_key(*tenant))
            .cloned()
            .collect();
        for (tenant, count) in elsewhere
            .iter()
            .map(|(t, c)| (t.clone(), *c))
            .chain(gone.into_iter().map(|t| (t, 0)))
        {
            metrics::gauge!("polaroid_quota_calls_elsewhere", "tenant" => tenant)
                .set(f64::from(count));
        }
        state.elsewhere = elsewhere;
    }

    fn release(&self, tenant: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = match state.in_flight.get_mut(tenant) {
            Some(count) if *count > 1 => {
                *count -= 1;
                *count
            }
            _ => {
                state.in_flight.remove(tenant);
                0
            }
        };
        drop(state);
        record_calls(tenant, now, self.quotas.limits(tenant).concurrent_calls);
    }
}

fn record_calls(tenant: &str, in_flight: u32, limit: Option<u32>) {
    metrics::gauge!("polaroid_quota_calls_in_flight", "tenant" => tenant.to_owned())
        .set(f64::from(in_flight));
    if let Some(limit) = limit {
        metrics::gauge!("polaroid_quota_calls_limit", "tenant" => tenant.to_owned())
            .set(f64::from(limit));
    }
}

/// One admitted call; its place is given back when this is dropped.
#[derive(Debug)]
pub struct CallPermit {
    calls: TenantCalls,
    tenant: String,
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        self.calls.release(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> QuotaConfig {
        let mut config = QuotaConfig {
            concurrent_calls: 2,
            stored_bytes: 1000,
            ..QuotaConfig::default()
        };
        config.tenants.insert(
            "big".into(),
            TenantQuotaOverride {
                concurrent_calls: Some(0),
                active_jobs: Some(7),
                ..TenantQuotaOverride::default()
            },
        );
        config
    }

    #[test]
    fn overrides_replace_the_defaults_key_by_key_and_zero_lifts_a_limit() {
        let config = config();
        assert_eq!(
            config.limits("small"),
            TenantLimits {
                stored_bytes: Some(1000),
                concurrent_calls: Some(2),
                active_jobs: None,
            }
        );
        assert_eq!(
            config.limits("big"),
            TenantLimits {
                stored_bytes: Some(1000),
                concurrent_calls: None,
                active_jobs: Some(7),
            }
        );
        assert!(config.limits_calls());
        assert!(!QuotaConfig::default().limits_calls());
    }

    #[test]
    fn calls_are_admitted_up_to_the_limit_counting_other_coordinators() {
        let calls = TenantCalls::new(Arc::new(config()));
        let first = calls.admit("small").unwrap();
        let _second = calls.admit("small").unwrap();
        let refused = calls.admit("small").unwrap_err();
        assert_eq!((refused.used, refused.limit), (2, 2));
        assert!(refused.to_string().contains("concurrent_calls"));
        // Another tenant has its own count; an unlimited one is never refused.
        let _other = calls.admit("other").unwrap();
        let _many: Vec<_> = (0..50).map(|_| calls.admit("big").unwrap()).collect();
        drop(first);
        let third = calls.admit("small").unwrap();
        drop(third);
        assert_eq!(calls.in_flight().get("small"), Some(&1));
        // One call in flight on another coordinator leaves no room here.
        calls.set_elsewhere(HashMap::from([("small".to_owned(), 1)]));
        assert_eq!(calls.admit("small").unwrap_err().used, 2);
    }

    #[test]
    fn tenant_names_of_overrides_are_checked() {
        let mut config = config();
        assert!(config.validate().is_ok());
        config
            .tenants
            .insert("bad name".into(), TenantQuotaOverride::default());
        assert!(config.validate().unwrap_err().contains("bad name"));
    }
}
