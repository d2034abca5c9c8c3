//! Handle, plan and artifact records over a [`ResultStore`].
//!
//! Layout, per tenant `t`: `t/<tenant>/handles/<id>` (a [`HandleRecord`]),
//! `t/<tenant>/plans/<plan id>` (a `PlanNode`), `t/<tenant>/artifacts/<artifact id>` (bytes).
//! Plans and artifacts are content-addressed, so the same work is recorded once; handles are
//! fresh on every call, so dropping one never affects another.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use polaroid_proto::v1::PlanNode;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::{Handle, ResultStore, StoreError, TenantId};

/// The content address of a plan node: SHA-256 of its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanId(String);

impl PlanId {
    pub fn of(node: &PlanNode) -> Self {
        Self(hex::encode(Sha256::digest(node.encode_to_vec())))
    }

    /// Parses a plan id read from a record: 64 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(text.to_owned()))
        } else {
            Err(StoreError::Corrupt {
                key: text.to_owned(),
                reason: "not a plan id".into(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The content address of uploaded bytes: SHA-256 of the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactId(String);

impl ArtifactId {
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        PlanId::parse(text).map(|id| Self(id.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a handle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleRecord {
    pub plan: PlanId,
    pub created_unix_ms: u64,
}

/// Records of handles, plans and artifacts, namespaced by tenant.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ResultStore>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn tenant_prefix(tenant: TenantId) -> String {
    format!("t/{}", tenant.to_hex())
}

impl Catalog {
    pub fn new(store: Arc<dyn ResultStore>) -> Self {
        Self { store }
    }

    fn handle_key(handle: &Handle) -> String {
        format!(
            "{}/handles/{}",
            tenant_prefix(handle.tenant()),
            handle.id_hex()
        )
    }

    fn plan_key(tenant: TenantId, plan: &PlanId) -> String {
        format!("{}/plans/{}", tenant_prefix(tenant), plan.0)
    }

    fn artifact_key(tenant: TenantId, artifact: &ArtifactId) -> String {
        format!("{}/artifacts/{}", tenant_prefix(tenant), artifact.0)
    }

    /// Records `node` under its content address (a no-op when it is already there).
    pub async fn put_plan(&self, tenant: TenantId, node: &PlanNode) -> Result<PlanId, StoreError> {
        let id = PlanId::of(node);
        let key = Self::plan_key(tenant, &id);
        if self.store.get(&key).await?.is_none() {
            self.store
                .put(&key, Bytes::from(node.encode_to_vec()))
                .await?;
        }
        Ok(id)
    }

    pub async fn get_plan(
        &self,
        tenant: TenantId,
        id: &PlanId,
    ) -> Result<Option<PlanNode>, StoreError> {
        let key = Self::plan_key(tenant, id);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(bytes) => PlanNode::decode(bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key,
                    reason: e.to_string(),
                }),
        }
    }

    /// Stores uploaded bytes under their content address; they are durable when this returns.
    pub async fn put_artifact(
        &self,
        tenant: TenantId,
        bytes: Bytes,
    ) -> Result<ArtifactId, StoreError> {
        let id = ArtifactId::of(&bytes);
        let key = Self::artifact_key(tenant, &id);
        if self.store.get(&key).await?.is_none() {
            self.store.put(&key, bytes).await?;
        }
        Ok(id)
    }

    pub async fn get_artifact(
        &self,
        tenant: TenantId,
        id: &ArtifactId,
    ) -> Result<Option<Bytes>, StoreError> {
        self.store.get(&Self::artifact_key(tenant, id)).await
    }

    /// Records a new handle for `plan`; the plan must already be recorded.
    pub async fn put_handle(
        &self,
        handle: &Handle,
        plan: &PlanId,
    ) -> Result<HandleRecord, StoreError> {
        let record = HandleRecord {
            plan: plan.clone(),
            created_unix_ms: now_unix_ms(),
        };
        let value = format!("{} {}", record.plan, record.created_unix_ms);
        self.store
            .put(&Self::handle_key(handle), Bytes::from(value))
            .await?;
        Ok(record)
    }

    pub async fn get_handle(&self, handle: &Handle) -> Result<Option<HandleRecord>, StoreError> {
        let key = Self::handle_key(handle);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not utf-8"))?;
        let (plan, created) = text
            .split_once(' ')
            .ok_or_else(|| corrupt("missing fields"))?;
        Ok(Some(HandleRecord {
            plan: PlanId::parse(plan)?,
            created_unix_ms: created.parse().map_err(|_| corrupt("bad creation time"))?,
        }))
    }

    /// Forgets `handle`; returns whether it existed. The plan it named stays for other handles.
    pub async fn delete_handle(&self, handle: &Handle) -> Result<bool, StoreError> {
        self.store.delete(&Self::handle_key(handle)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AffinityKey, MemoryStore};

    #[tokio::test]
    async fn memory_backend_conforms() {
        crate::conformance::run_all(Arc::new(MemoryStore::new()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn plans_are_content_addressed_and_handles_independent() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()));
        let tenant = TenantId::from_name("default");
        let node = PlanNode {
            step: None,
            inputs: vec!["a".into()],
            source: None,
        };
        let first = catalog.put_plan(tenant, &node).await.unwrap();
        assert_eq!(catalog.put_plan(tenant, &node).await.unwrap(), first);
        let (a, b) = (
            Handle::new(tenant, AffinityKey::random()),
            Handle::new(tenant, AffinityKey::random()),
        );
        catalog.put_handle(&a, &first).await.unwrap();
        catalog.put_handle(&b, &first).await.unwrap();
        assert!(catalog.delete_handle(&a).await.unwrap());
        assert_eq!(
            catalog.get_handle(&b).await.unwrap().map(|r| r.plan),
            Some(first.clone())
        );
        assert_eq!(catalog.get_plan(tenant, &first).await.unwrap(), Some(node));
        let other = TenantId::from_name("other");
        assert_eq!(catalog.get_plan(other, &first).await.unwrap(), None);
    }
}
