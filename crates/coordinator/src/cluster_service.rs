//! `ClusterService`: where workers register, renew their leases and leave.

use std::sync::Arc;

use polaroid_proto::v1 as pb;
use polaroid_proto::v1::cluster_service_server::ClusterService;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::error::CoordinatorError;

pub struct ClusterServer {
    cluster: Arc<Cluster>,
}

impl ClusterServer {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }
}

/// Worker ids become Redis keys and log fields: a short, plain alphabet.
fn check_worker_id(id: &str) -> Result<(), CoordinatorError> {
    let plain = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if id.is_empty() || id.len() > 128 || !plain {
        return Err(CoordinatorError::InvalidReport(format!(
            "worker_id must be 1 to 128 of [A-Za-z0-9._-], got `{}`",
            polaroid_proto::excerpt(id)
        )));
    }
    Ok(())
}

/// `host:port`, as the coordinator will dial it.
fn check_address(address: &str) -> Result<(), CoordinatorError> {
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && address
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.as_str() == address);
    if !valid {
        return Err(CoordinatorError::BadWorkerAddress(format!(
            "{address:?}: expected host:port"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl ClusterService for ClusterServer {
    async fn report_load(
        &self,
        request: Request<pb::LoadReport>,
    ) -> Result<Response<pb::LoadReportReply>, Status> {
        let report = request.into_inner();
        check_worker_id(&report.worker_id)?;
        check_address(&report.address)?;
        let lease = self.cluster.lease();
        self.cluster
            .membership()
            .renew(
                &report.worker_id,
                &report.address,
                report.load.unwrap_or_default(),
                lease,
            )
            .await
            .map_err(CoordinatorError::from)?;
        // A joining worker takes traffic at once rather than at the next refresh.
        self.cluster.refresh().await?;
        Ok(Response::new(pb::LoadReportReply {
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveReply>, Status> {
        let worker_id = request.into_inner().worker_id;
        check_worker_id(&worker_id)?;
        self.cluster
            .membership()
            .leave(&worker_id)
            .await
            .map_err(CoordinatorError::from)?;
        self.cluster.refresh().await?;
        tracing::info!(worker = %worker_id, "worker left");
        Ok(Response::new(pb::LeaveReply {}))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        // This coordinator's routing view: live members less those it saw fail.
        Ok(Response::new(pb::ListWorkersResponse {
            workers: self.cluster.members().iter().map(|m| m.to_info()).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_checked() {
        assert!(check_worker_id("worker-1.a_b").is_ok());
        for bad in ["", "a b", "../x", "w:1", &"x".repeat(129)] {
            assert!(check_worker_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_address("127.0.0.1:5000").is_ok());
        assert!(check_address("worker-0.polaroid:50051").is_ok());
        for bad in [
            "",
            "127.0.0.1",
            "host:0",
            "host:99999",
            "a/b:1",
            ":80",
            "h:1/x",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
