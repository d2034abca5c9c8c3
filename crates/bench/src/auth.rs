//! Authentication's cost on a trivial call: two lone workers on loopback, one requiring
//! bearer tokens and one without, called alternately from one client so that both see
//! the same machine; the difference of their medians is what checking a token costs.

use std::time::{Duration, Instant};

use polaroid_auth::{AuthConfig, Role, new_token, token_line};
use polaroid_proto::v1 as pb;

use crate::{BenchServer, Client};

/// Calls per side between switches: long enough to keep each side's connection warm.
const BLOCK: usize = 100;

/// `control`: the second worker runs without authentication too (an A/A run, which shows
/// how far apart two identical sides come out on this machine).
pub async fn run(iterations: usize, control: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens_file = dir.path().join("tokens");
    let token = new_token();
    // A realistic file: the caller's token among a hundred others.
    let mut lines: Vec<String> = (0..99)
        .map(|i| token_line(&new_token(), &format!("tenant-{i}"), Role::User, ""))
        .collect();
    lines.push(token_line(&token, "bench", Role::User, ""));
    std::fs::write(&tokens_file, lines.join("\n"))?;

    let open = BenchServer::worker(polaroid_worker::WorkerConfig::default()).await?;
    let auth = if control {
        AuthConfig::default()
    } else {
        AuthConfig {
            tokens_file,
            // Any long random string will do; a token is one.
            cluster_secret: new_token(),
            ..AuthConfig::default()
        }
    };
    let secured = BenchServer::worker(polaroid_worker::WorkerConfig {
        auth,
        ..Default::default()
    })
    .await?;
    let mut open_client = open.client().await?;
    let mut secured_client = secured.client().await?;
    let open_handle = upload(&mut open_client, None).await?;
    let secured_handle = upload(&mut secured_client, Some(&token)).await?;

    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut round = 0;
    while off.len() < iterations {
        for _ in 0..BLOCK {
            let elapsed = head(&mut open_client, &open_handle, None).await?;
            if round > 0 {
                off.push(elapsed);
            }
        }
        for _ in 0..BLOCK {
            let elapsed = head(&mut secured_client, &secured_handle, Some(&token)).await?;
            if round > 0 {
                on.push(elapsed);
            }
        }
        round += 1;
    }
    let (off, on) = (median(&mut off), median(&mut on));
    let overhead = on.as_secs_f64() / off.as_secs_f64() - 1.0;
    println!("| trivial call (Head on a 3-row upload, lone worker), p50 | µs |");
    println!("|---|---|");
    println!("| without authentication | {:.1} |", micros(off));
    let second = if control {
        "the same again (control run: no authentication on either side)"
    } else {
        "with a bearer token (100 tokens configured)"
    };
    println!("| {second} | {:.1} |", micros(on));
    println!(
        "| overhead of authentication | {:+.1} % |",
        overhead * 100.0
    );
    println!("({iterations} calls each, alternating in blocks of {BLOCK})");
    open.stop().await?;
    secured.stop().await
}

fn request<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

async fn upload(client: &mut Client, token: Option<&str>) -> anyhow::Result<String> {
    let df = polars::prelude::df!("a" => [1i64, 2, 3])?;
    let message = pb::CreateFromArrowRequest {
        arrow_ipc: crate::arrow_ipc(&df)?.into(),
        name: None,
    };
    Ok(client
        .create_from_arrow(request(message, token)?)
        .await?
        .into_inner()
        .handle)
}

async fn head(client: &mut Client, handle: &str, token: Option<&str>) -> anyhow::Result<Duration> {
    let message = pb::HeadRequest {
        handle: handle.to_owned(),
        n: 1,
    };
    let start = Instant::now();
    client.head(request(message, token)?).await?;
    Ok(start.elapsed())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
