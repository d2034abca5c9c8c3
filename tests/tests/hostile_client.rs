//! One client cannot take the cluster down (issue 22): calls that carry huge strings get a
//! precise status with a short message, and the coordinator keeps every worker on its
//! ring. Before the fix, a GetShape with a 100 KB handle came back in a status that echoed
//! it; the coordinator's HTTP/2 client refused that header block by closing its connection
//! to the worker, failover took that for the worker dying, and every worker was off the
//! ring within milliseconds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use polaroid_proto::flight::{self as fl, flight_service_client::FlightServiceClient};
use polaroid_proto::v1 as pb;
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

const HUGE: usize = 100_000;
/// The most a status message may carry (`polaroid_proto::MAX_STATUS_MESSAGE_BYTES`).
const MAX_MESSAGE: usize = 1024;

async fn worker_ids(cluster: &TestCluster) -> anyhow::Result<BTreeSet<String>> {
    Ok(cluster
        .live_workers()
        .await?
        .into_iter()
        .map(|w| w.worker_id)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_strings_get_short_statuses_and_every_worker_stays() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, &[], &[]).await?;
    let mut client = cluster.client().await?;
    let frame = df!("a" => [1i64, 2, 3])?;
    let handle = upload(&mut client, &frame).await?;
    let workers = worker_ids(&cluster).await?;
    assert_eq!(workers.len(), 3);

    // Another client's calls run all along, and must all be served.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let bystander = {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        let mut other = cluster.client().await?;
        let handle = handle.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let shape = other
                    .get_shape(pb::GetShapeRequest {
                        handle: handle.clone(),
                    })
                    .await;
                match shape {
                    Ok(shape) if shape.get_ref().rows == 3 => {
                        served.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let huge = "h".repeat(HUGE);
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", cluster.coordinator.address))?
            .connect()
            .await?;
    let mut flight = FlightServiceClient::new(channel);
    let mut tables = std::collections::BTreeMap::new();
    tables.insert("t".to_owned(), handle.clone());
    let calls: Vec<(&str, Result<(), tonic::Status>, Code)> = vec![
        (
            "GetShape with a 100 KB handle",
            client
                .get_shape(pb::GetShapeRequest {
                    handle: huge.clone(),
                })
                .await
                .map(drop),
            Code::InvalidArgument,
        ),
        (
            "Select of a 100 KB column name",
            client
                .select(pb::SelectRequest {
                    handle: handle.clone(),
                    columns: vec![huge.clone()],
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::InvalidArgument,
        ),
        (
            "ReadParquet of a 100 KB path",
            client
                .read_parquet(pb::ReadParquetRequest {
                    path: huge.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::InvalidArgument,
        ),
        (
            "Sql naming a 100 KB column",
            client
                .sql(pb::SqlRequest {
                    query: format!("SELECT {huge} FROM t"),
                    tables,
                })
                .await
                .map(drop),
            Code::InvalidArgument,
        ),
        (
            "Flight DoGet of a 100 KB ticket",
            flight
                .do_get(fl::Ticket {
                    ticket: huge.clone().into(),
                })
                .await
                .map(drop),
            Code::InvalidArgument,
        ),
    ];
    for (call, answer, code) in calls {
        let status = answer.expect_err(call);
        assert_eq!(status.code(), code, "{call}: {status:?}");
        assert!(
            status.message().len() <= MAX_MESSAGE,
            "{call}: a message of {} bytes",
            status.message().len()
        );
        // Right away, with no load report in between: no worker left the ring.
        assert_eq!(worker_ids(&cluster).await?, workers, "{call}");
        // And the caller's next call is served.
        let shape = client
            .get_shape(pb::GetShapeRequest {
                handle: handle.clone(),
            })
            .await?;
        assert_eq!(shape.into_inner().rows, 3, "{call}");
    }

    stop.store(true, Ordering::Relaxed);
    bystander.await?;
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "the bystander's calls failed"
    );
    assert!(served.load(Ordering::Relaxed) > 0);
    let metrics = cluster.coordinator.metrics().await?;
    for counter in [
        "polaroid_coordinator_workers_suspected_total",
        "polaroid_coordinator_retries_total",
    ] {
        assert_eq!(metric_sum(&metrics, counter, &[]), 0.0, "{counter}");
    }
    Ok(())
}
