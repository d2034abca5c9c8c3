//! KEDA's external scaler (`externalscaler.ExternalScaler`): the load KEDA scales workers
//! on, computed from what the coordinator already knows, so KEDA needs neither Redis
//! credentials nor Prometheus to scale on interactive calls as well as on jobs.
//!
//! The load is one number: calls in flight on the workers (their load reports, shared by
//! every coordinator through the membership), jobs running on them, and jobs waiting in
//! the queue, plus one while calls have found no live worker in the last minute (with no
//! workers there are no reports to show that load, and scaling from zero needs it).
//! KEDA's HPA asks for `ceil(load / targetLoadPerWorker)` workers; `IsActive` is the load
//! being over `activationLoad`, which is what lets KEDA scale to zero when idle.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use polaroid_jobs::JobQueue;
use polaroid_proto::ErrorCode;
use polaroid_proto::externalscaler as pb;
use polaroid_proto::externalscaler::external_scaler_server::ExternalScaler;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::error::CoordinatorError;

/// The one metric this scaler serves.
pub const METRIC: &str = "polaroid-load";
/// The load one worker should carry when the trigger does not say
/// (`targetLoadPerWorker`): two calls or jobs at once keep a worker's CPUs busy without
/// queueing much behind each other on the project's two-core workers.
pub const DEFAULT_TARGET_LOAD_PER_WORKER: f64 = 2.0;
/// How long a call that found no live worker keeps the load at one or more.
const UNSERVED_WINDOW_MS: u64 = 60_000;
/// How often `StreamIsActive` looks at the load again.
const STREAM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What the cluster's load is made of, at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub calls_in_flight: u64,
    pub jobs_running: u64,
    pub jobs_waiting: u64,
    /// A call found no live worker within the last minute.
    pub unserved: bool,
}

impl Load {
    /// The metric's value.
    pub fn value(&self) -> f64 {
        let work = self
            .calls_in_flight
            .saturating_add(self.jobs_running)
            .saturating_add(self.jobs_waiting)
            .saturating_add(u64::from(self.unserved));
        work as f64
    }
}

/// A trigger's settings: its `metadata` in the ScaledObject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trigger {
    /// `targetLoadPerWorker`: the load one worker should carry (> 0).
    pub target_load_per_worker: f64,
    /// `activationLoad`: the load above which the workers are active (≥ 0; default 0, so
    /// any load at all).
    pub activation_load: f64,
}

impl Trigger {
    pub fn parse(metadata: &BTreeMap<String, String>) -> Result<Self, Status> {
        let number = |key: &str, default: f64, least: f64, strict: bool| {
            let Some(text) = metadata.get(key) else {
                return Ok(default);
            };
            match text.trim().parse::<f64>() {
                Ok(value)
                    if value.is_finite() && (value > least || (!strict && value == least)) =>
                {
                    Ok(value)
                }
                _ => Err(ErrorCode::InvalidArgument.status(format!(
                    "scalerMetadata {key} must be a number {} {least}, got {text:?}",
                    if strict { ">" } else { ">=" }
                ))),
            }
        };
        // Other keys are KEDA's own trigger fields, passed along (the address, TLS files),
        // and whatever a newer KEDA adds: not an error.
        Ok(Self {
            target_load_per_worker: number(
                "targetLoadPerWorker",
                DEFAULT_TARGET_LOAD_PER_WORKER,
                0.0,
                true,
            )?,
            activation_load: number("activationLoad", 0.0, 0.0, false)?,
        })
    }

    pub fn is_active(&self, load: &Load) -> bool {
        load.value() > self.activation_load
    }
}

/// Whether `asked` names [`METRIC`]: as given, or with the `s<N>-` prefix KEDA puts on
/// the names of a ScaledObject's triggers.
fn names_the_metric(asked: &str) -> bool {
    let unprefixed = asked
        .strip_prefix('s')
        .and_then(|rest| rest.split_once('-'))
        .filter(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        .map_or(asked, |(_, name)| name);
    unprefixed == METRIC
}

/// The scaler's gRPC service.
#[derive(Clone)]
pub struct Scaler {
    cluster: Arc<Cluster>,
    queue: Option<Arc<dyn JobQueue>>,
}

impl Scaler {
    pub fn new(cluster: Arc<Cluster>, queue: Option<Arc<dyn JobQueue>>) -> Self {
        Self { cluster, queue }
    }

    /// The load now: the workers' latest reports, the queue's depth.
    pub async fn load(&self) -> Result<Load, Status> {
        let members = self.cluster.members();
        let sum = |of: fn(&polaroid_proto::v1::WorkerLoad) -> u64| {
            members
                .iter()
                .map(|member| of(&member.load))
                .fold(0u64, u64::saturating_add)
        };
        let jobs_waiting = match &self.queue {
            None => 0,
            Some(queue) => queue
                .depth()
                .await
                .map_err(|e| Status::from(CoordinatorError::from(e)))?
                .iter()
                .map(|stream| stream.waiting)
                .fold(0u64, u64::saturating_add),
        };
        let last_unserved = self.cluster.last_unserved_unix_ms();
        Ok(Load {
            calls_in_flight: sum(|load| load.in_flight_calls),
            jobs_running: sum(|load| load.jobs_running),
            jobs_waiting,
            unserved: last_unserved != 0
                && polaroid_store::now_unix_ms().saturating_sub(last_unserved) < UNSERVED_WINDOW_MS,
        })
    }
}

type IsActiveStream = Pin<Box<dyn Stream<Item = Result<pb::IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::IsActiveResponse>, Status> {
        let trigger = Trigger::parse(&request.get_ref().scaler_metadata)?;
        let load = self.load().await?;
        Ok(Response::new(pb::IsActiveResponse {
            result: trigger.is_active(&load),
        }))
    }

    type StreamIsActiveStream = IsActiveStream;

    async fn stream_is_active(
        &self,
        request: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let trigger = Trigger::parse(&request.get_ref().scaler_metadata)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let scaler = self.clone();
        tokio::spawn(async move {
            let mut sent = None;
            let mut ticks = tokio::time::interval(STREAM_CHECK_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = sender.closed() => return,
                }
                let answer = match scaler.load().await {
                    Ok(load) => trigger.is_active(&load),
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                };
                if sent != Some(answer) {
                    if sender
                        .send(Ok(pb::IsActiveResponse { result: answer }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sent = Some(answer);
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_metric_spec(
        &self,
        request: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::GetMetricSpecResponse>, Status> {
        let trigger = Trigger::parse(&request.get_ref().scaler_metadata)?;
        Ok(Response::new(pb::GetMetricSpecResponse {
            metric_specs: vec![pb::MetricSpec {
                metric_name: METRIC.to_owned(),
                target_size: trigger.target_load_per_worker.ceil() as i64,
                target_size_float: trigger.target_load_per_worker,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let metadata = request
            .scaled_object_ref
            .map(|object| object.scaler_metadata)
            .unwrap_or_default();
        Trigger::parse(&metadata)?;
        if !names_the_metric(&request.metric_name) {
            return Err(ErrorCode::NotFound.status(format!(
                "metricName {:?}: this scaler serves one metric, {METRIC}",
                request.metric_name
            )));
        }
        let value = self.load().await?.value();
        Ok(Response::new(pb::GetMetricsResponse {
            metric_values: vec![pb::MetricValue {
                metric_name: request.metric_name,
                metric_value: value as i64,
                metric_value_float: value,
            }],
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use polaroid_jobs::{JobQueue, MemoryQueue};
    use polaroid_proto::externalscaler::external_scaler_client::ExternalScalerClient;
    use polaroid_proto::externalscaler::external_scaler_server::ExternalScalerServer;
    use polaroid_proto::v1::{JobPlan, JobSpec, WorkerLoad};
    use tokio_stream::StreamExt;

    use super::*;
    use crate::CoordinatorConfig;
    use crate::membership::{Membership, MemoryMembership};

    fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn trigger_settings_have_defaults_and_bounds() {
        let defaults = Trigger::parse(&metadata(&[("scalerAddress", "polaroid:50051")])).unwrap();
        assert_eq!(
            defaults.target_load_per_worker,
            DEFAULT_TARGET_LOAD_PER_WORKER
        );
        assert_eq!(defaults.activation_load, 0.0);
        let set = Trigger::parse(&metadata(&[
            ("targetLoadPerWorker", "4.5"),
            ("activationLoad", "0"),
        ]))
        .unwrap();
        assert_eq!(set.target_load_per_worker, 4.5);
        for (key, value) in [
            ("targetLoadPerWorker", "0"),
            ("targetLoadPerWorker", "-1"),
            ("targetLoadPerWorker", "NaN"),
            ("targetLoadPerWorker", "inf"),
            ("activationLoad", "-0.5"),
            ("activationLoad", "many"),
        ] {
            let refused = Trigger::parse(&metadata(&[(key, value)])).unwrap_err();
            assert_eq!(
                refused.code(),
                tonic::Code::InvalidArgument,
                "{key}={value}"
            );
            assert!(refused.message().contains(key), "{}", refused.message());
        }
        let others = Trigger::parse(&metadata(&[("enableTLS", "true"), ("caCert", "...")]));
        assert_eq!(
            others.unwrap(),
            defaults,
            "KEDA's own fields are passed along"
        );
    }

    #[test]
    fn the_load_adds_calls_jobs_and_a_refused_call() {
        let load = Load {
            calls_in_flight: 3,
            jobs_running: 1,
            jobs_waiting: 2,
            unserved: false,
        };
        assert_eq!(load.value(), 6.0);
        assert_eq!(
            Load {
                unserved: true,
                ..Load::default()
            }
            .value(),
            1.0
        );
        let trigger = Trigger::parse(&metadata(&[("activationLoad", "5")])).unwrap();
        assert!(trigger.is_active(&load));
        assert!(!trigger.is_active(&Load {
            calls_in_flight: 5,
            ..Load::default()
        }));
    }

    #[test]
    fn metric_names_match_with_or_without_the_trigger_index() {
        assert!(names_the_metric("polaroid-load"));
        assert!(names_the_metric("s0-polaroid-load"));
        assert!(names_the_metric("s12-polaroid-load"));
        assert!(!names_the_metric("s-polaroid-load"));
        assert!(!names_the_metric("sx-polaroid-load"));
        assert!(!names_the_metric("other"));
    }

    struct Served {
        membership: Arc<MemoryMembership>,
        cluster: Arc<Cluster>,
        queue: Arc<MemoryQueue>,
        client: ExternalScalerClient<tonic::transport::Channel>,
    }

    /// The scaler served over a real socket, as KEDA reaches it, with an empty cluster.
    async fn serve() -> Served {
        let membership = Arc::new(MemoryMembership::default());
        let cluster = Arc::new(Cluster::new(
            membership.clone(),
            &CoordinatorConfig::default(),
            None,
        ));
        let queue = Arc::new(MemoryQueue::new(
            polaroid_jobs::conformance::quick_settings(),
        ));
        let scaler = Scaler::new(cluster.clone(), Some(queue.clone() as Arc<dyn JobQueue>));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ExternalScalerServer::new(scaler))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let client = ExternalScalerClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        Served {
            membership,
            cluster,
            queue,
            client,
        }
    }

    fn object(pairs: &[(&str, &str)]) -> pb::ScaledObjectRef {
        pb::ScaledObjectRef {
            name: "polaroid-worker".into(),
            namespace: "default".into(),
            scaler_metadata: metadata(pairs),
        }
    }

    async fn report(served: &Served, worker: &str, calls: u64, jobs: u64) {
        let load = WorkerLoad {
            in_flight_calls: calls,
            jobs_running: jobs,
            ..WorkerLoad::default()
        };
        served
            .membership
            .renew(worker, "127.0.0.1:1", load, Duration::from_secs(60))
            .await
            .unwrap();
        served.cluster.refresh().await.unwrap();
    }

    async fn metric(served: &mut Served, name: &str) -> Result<f64, Status> {
        let answer = served
            .client
            .get_metrics(pb::GetMetricsRequest {
                scaled_object_ref: Some(object(&[])),
                metric_name: name.into(),
            })
            .await?
            .into_inner();
        assert_eq!(answer.metric_values.len(), 1);
        assert_eq!(answer.metric_values[0].metric_name, name);
        Ok(answer.metric_values[0].metric_value_float)
    }

    #[tokio::test]
    async fn keda_reads_the_load_of_workers_and_the_queue() {
        let mut served = serve().await;
        let spec = served
            .client
            .get_metric_spec(object(&[("targetLoadPerWorker", "3")]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(spec.metric_specs.len(), 1);
        assert_eq!(spec.metric_specs[0].metric_name, METRIC);
        assert_eq!(spec.metric_specs[0].target_size_float, 3.0);
        assert_eq!(spec.metric_specs[0].target_size, 3);

        // Idle: nothing to scale for.
        assert_eq!(metric(&mut served, METRIC).await.unwrap(), 0.0);
        let idle = served.client.is_active(object(&[])).await.unwrap();
        assert!(!idle.into_inner().result);

        // Two workers report calls and a running job; two jobs wait in the queue.
        report(&served, "w1", 3, 1).await;
        report(&served, "w2", 1, 0).await;
        for _ in 0..2 {
            let spec = JobSpec {
                plan: Some(JobPlan { steps: vec![] }),
                ..JobSpec::default()
            };
            let id = polaroid_jobs::new_job_id();
            served.queue.submit(&id, "t", spec, None).await.unwrap();
        }
        assert_eq!(metric(&mut served, METRIC).await.unwrap(), 7.0);
        assert_eq!(metric(&mut served, "s0-polaroid-load").await.unwrap(), 7.0);
        let active = served.client.is_active(object(&[])).await.unwrap();
        assert!(active.into_inner().result);
        let below = served
            .client
            .is_active(object(&[("activationLoad", "7")]))
            .await
            .unwrap();
        assert!(
            !below.into_inner().result,
            "7 is not above an activation of 7"
        );

        let unknown = metric(&mut served, "queue_length").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        let bad = served
            .client
            .get_metric_spec(object(&[("targetLoadPerWorker", "0")]))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn stream_is_active_pushes_changes_and_a_refused_call_wakes_it() {
        let mut served = serve().await;
        let mut stream = served
            .client
            .stream_is_active(object(&[]))
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert!(!first.result, "idle at first, and said at once");

        // No worker at all: a call finds none, which is load the reports cannot show.
        let refused = served.cluster.pick(1, &[]).err().unwrap();
        assert!(matches!(refused, CoordinatorError::NoLiveWorkers));
        let woke = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a change is pushed within the check interval")
            .unwrap()
            .unwrap();
        assert!(woke.result);
        assert_eq!(metric(&mut served, METRIC).await.unwrap(), 1.0);

        // A worker joins and its load counts too.
        report(&served, "w1", 2, 0).await;
        assert_eq!(metric(&mut served, METRIC).await.unwrap(), 3.0);
    }
}
