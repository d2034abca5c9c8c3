//! `polaroid job …`: batch jobs from the command line, against a coordinator's JobService.
//! Specs and records are protobuf JSON (`JobSpec`, `Job`), read and printed through the
//! wire contract's own descriptors.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use polaroid_auth::WithBearerToken;
use polaroid_proto::v1::{
    self as pb, JobEventKind, JobState, job_service_client::JobServiceClient,
};
use prost_reflect::{DescriptorPool, DynamicMessage, EnumDescriptor, Kind, MessageDescriptor};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(clap::Args)]
pub struct JobArgs {
    /// The coordinator (POLAROID_COORDINATOR_URL); `https://` for TLS.
    #[arg(
        long,
        env = "POLAROID_COORDINATOR_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    coordinator: String,
    /// Bearer token of the caller (POLAROID_TOKEN); jobs are the token's tenant's.
    #[arg(long, env = "POLAROID_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// CA certificates (PEM) that sign an `https://` coordinator's certificate
    /// (POLAROID_CA_FILE); without it, the system's trust store.
    #[arg(long, env = "POLAROID_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: JobCommand,
}

type Client = JobServiceClient<InterceptedService<Channel, WithBearerToken>>;

#[derive(clap::Subcommand)]
enum JobCommand {
    /// Submit the job in SPEC (protobuf JSON of polaroid.v1.JobSpec; see examples/).
    Submit {
        spec: PathBuf,
        /// Follow the job until it ends; the exit status says how it ended.
        #[arg(long)]
        wait: bool,
    },
    /// Print a job's record.
    Status { id: String },
    /// Follow a job's events until it ends.
    Watch { id: String },
    /// Cancel a job.
    Cancel { id: String },
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (queued, running, retrying, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Every tenant's jobs (admins), not just the token's tenant's.
        #[arg(long)]
        all_tenants: bool,
    },
}

/// Runs the command; the process exit status: 0, or 1 for a watched job that did not succeed.
pub async fn run(args: JobArgs) -> anyhow::Result<i32> {
    let mut endpoint = Channel::from_shared(args.coordinator.clone()).context("coordinator URL")?;
    if polaroid_auth::tls::is_https(&args.coordinator) {
        let tls = polaroid_auth::tls::ClientTls::from_ca_file(args.ca_file.as_deref())?;
        endpoint = tls.endpoint(endpoint)?;
    } else if args.ca_file.is_some() {
        anyhow::bail!(
            "--ca-file is for an https:// coordinator; {} is plaintext",
            args.coordinator
        );
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.coordinator))?;
    let mut client =
        JobServiceClient::with_interceptor(channel, WithBearerToken::new(args.token.as_deref())?);
    match args.command {
        JobCommand::Submit { spec, wait } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec: pb::JobSpec = from_json("polaroid.v1.JobSpec", &text)
                .with_context(|| format!("{} is not a JobSpec", spec.display()))?;
            let reply = client
                .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
                .await
                .map_err(status)?
                .into_inner();
            let job = reply.job.unwrap_or_default();
            if reply.created {
                println!("{}", job.id);
            } else {
                println!("{} (the job this idempotency key submitted before)", job.id);
            }
            if wait {
                return watch(&mut client, &job.id).await;
            }
        }
        JobCommand::Status { id } => {
            let job = client
                .get_job(pb::GetJobRequest { job_id: id })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", to_json("polaroid.v1.Job", &job)?);
        }
        JobCommand::Watch { id } => return watch(&mut client, &id).await,
        JobCommand::Cancel { id } => {
            let job = client
                .cancel_job(pb::CancelJobRequest { job_id: id })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "{} {}",
                job.id,
                state_label(job.state(), job.cancel_requested)
            );
        }
        JobCommand::List {
            state,
            limit,
            all_tenants,
        } => {
            let state = match state.as_deref() {
                None => JobState::Unspecified,
                Some(name) => parse_state(name)?,
            };
            let mut token = String::new();
            let mut shown = 0;
            while shown < limit {
                let page = client
                    .list_jobs(pb::ListJobsRequest {
                        state: state as i32,
                        page_size: u32::try_from(limit - shown).unwrap_or(u32::MAX).min(1000),
                        page_token: token,
                        all_tenants,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                for job in &page.jobs {
                    let spec = job.spec.clone().unwrap_or_default();
                    println!(
                        "{}  {:<10}  attempts {}  {}",
                        job.id,
                        state_label(job.state(), job.cancel_requested),
                        job.attempts,
                        spec.name
                    );
                }
                shown += page.jobs.len();
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
    }
    Ok(0)
}

fn status(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

fn parse_state(name: &str) -> anyhow::Result<JobState> {
    JobState::from_str_name(&format!("JOB_STATE_{}", name.to_ascii_uppercase()))
        .filter(|s| *s != JobState::Unspecified)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown state `{name}`: queued, running, retrying, succeeded, failed or cancelled"
            )
        })
}

fn state_label(state: JobState, cancel_requested: bool) -> &'static str {
    match state {
        JobState::Running if cancel_requested => "cancelling",
        state => polaroid_jobs::lifecycle::state_name(state),
    }
}

fn pool() -> anyhow::Result<DescriptorPool> {
    DescriptorPool::decode(polaroid_proto::FILE_DESCRIPTOR_SET).context("descriptors")
}

/// Reads protobuf JSON (field names in lowerCamelCase or as in the .proto).
fn from_json<M: prost::Message + Default>(name: &str, text: &str) -> anyhow::Result<M> {
    let descriptor = pool()?
        .get_message_by_name(name)
        .with_context(|| format!("no descriptor for {name}"))?;
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    accept_old_enum_names(&mut value, &descriptor);
    let message = DynamicMessage::deserialize(descriptor, value)?;
    Ok(message.transcode_to::<M>()?)
}

/// Renames, in protobuf JSON of `message`, the enum values that had other names before the
/// established contract's (`BINARY_OPERATOR_GT` is `GT`, `AGGREGATE_FUNCTION_SUM` is
/// `SUM`): the numbers did not change, so a spec written with the old names keeps its
/// meaning. Walks the JSON with the message's descriptor, so only enum fields are touched
/// (never a string literal that happens to spell an old name).
fn accept_old_enum_names(value: &mut serde_json::Value, message: &MessageDescriptor) {
    let serde_json::Value::Object(fields) = value else {
        return;
    };
    for (key, value) in fields.iter_mut() {
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            continue;
        };
        let (kind, values): (Kind, Vec<&mut serde_json::Value>) = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let kind = entry.map_entry_value_field().kind();
            match value {
                serde_json::Value::Object(entries) => (kind, entries.values_mut().collect()),
                _ => continue,
            }
        } else if field.is_list() {
            match value {
                serde_json::Value::Array(items) => (field.kind(), items.iter_mut().collect()),
                _ => continue,
            }
        } else {
            (field.kind(), vec![value])
        };
        for value in values {
            match &kind {
                Kind::Message(inner) => accept_old_enum_names(value, inner),
                Kind::Enum(enumeration) => {
                    if let serde_json::Value::String(name) = value
                        && let Some(new) = renamed_enum_value(enumeration, name)
                    {
                        *name = new;
                    }
                }
                _ => {}
            }
        }
    }
}

/// The contract's name of an enum value that had another name before it, if `name` is one.
fn renamed_enum_value(enumeration: &EnumDescriptor, name: &str) -> Option<String> {
    let new = match enumeration.full_name() {
        "polaroid.v1.BinaryOperator" => name.strip_prefix("BINARY_OPERATOR_")?.to_owned(),
        "polaroid.v1.UnaryOperator" => name.strip_prefix("UNARY_OPERATOR_")?.to_owned(),
        "polaroid.v1.AggFunction" => match name.strip_prefix("AGGREGATE_FUNCTION_")? {
            "UNSPECIFIED" => "AGG_FUNCTION_UNSPECIFIED".to_owned(),
            other => other.to_owned(),
        },
        _ => return None,
    };
    // `BINARY_OPERATOR_UNSPECIFIED` keeps its name; anything unknown stays as written, for
    // the parser's own error.
    (enumeration.get_value_by_name(name).is_none() && enumeration.get_value_by_name(&new).is_some())
        .then_some(new)
}

fn to_json<M: prost::Message>(name: &str, message: &M) -> anyhow::Result<String> {
    let descriptor = pool()?
        .get_message_by_name(name)
        .with_context(|| format!("no descriptor for {name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&dynamic)?)
}

/// Follows a job's events: one line each, or a live progress bar on a terminal.
async fn watch(client: &mut Client, id: &str) -> anyhow::Result<i32> {
    let mut events = client
        .watch_job(pb::WatchJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let terminal = std::io::stderr().is_terminal();
    let mut outcome = 1;
    while let Some(event) = events.message().await.map_err(status)? {
        let progress = event.progress.unwrap_or_default();
        let line = match event.kind() {
            JobEventKind::Queued => "queued".to_owned(),
            JobEventKind::Started => {
                format!("started on {} (attempt {})", event.worker, event.attempt)
            }
            JobEventKind::Step => {
                format!("step {} of {}", progress.steps_done, progress.steps_total)
            }
            JobEventKind::RowsWritten => format!("{} rows written", progress.rows_written),
            JobEventKind::Succeeded => {
                outcome = 0;
                let result = event.result.clone().unwrap_or_default();
                let mut what = vec![format!("{} rows", result.rows)];
                if !result.path.is_empty() {
                    what.push(format!("written to {}", result.path));
                }
                if !result.handle.is_empty() {
                    what.push(format!("handle {}", result.handle));
                }
                format!("succeeded: {}", what.join(", "))
            }
            JobEventKind::Retrying => format!(
                "attempt {} failed, retrying in {} ms: {}",
                event.attempt, event.retry_in_ms, event.error
            ),
            JobEventKind::Failed => format!("failed: {}", event.error),
            JobEventKind::CancelRequested => "cancelling".to_owned(),
            JobEventKind::Cancelled => "cancelled".to_owned(),
            JobEventKind::Unspecified => continue,
        };
        if terminal && matches!(event.kind(), JobEventKind::Step | JobEventKind::RowsWritten) {
            let total = progress.steps_total.max(1);
            let width = 30;
            let filled = (progress.steps_done.min(total) * width / total) as usize;
            eprint!(
                "\r[{}{}] {line:<40}",
                "#".repeat(filled),
                ".".repeat(width as usize - filled)
            );
            let _ = std::io::stderr().flush();
        } else {
            if terminal {
                eprint!("\r{:<80}\r", "");
            }
            eprintln!("{line}");
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(op: &str, function: &str) -> String {
        format!(
            r#"{{"plan": {{"steps": [
                {{"step": {{"filter": {{"predicate": {{"binary": {{
                    "left": {{"column": {{"name": "a"}}}}, "op": "{op}",
                    "right": {{"literal": {{"stringVal": "BINARY_OPERATOR_GT"}}}}}}}}}}}}}},
                {{"step": {{"groupBy": {{"aggs": [{{"aggregation": {{
                    "function": "{function}", "expr": {{"column": {{"name": "a"}}}}}}}}]}}}}}}
            ]}}}}"#
        )
    }

    #[test]
    fn specs_naming_enum_values_as_before_the_contract_still_read() {
        let new: pb::JobSpec =
            from_json("polaroid.v1.JobSpec", &spec("GT", "SUM")).expect("new names");
        let old: pb::JobSpec = from_json(
            "polaroid.v1.JobSpec",
            &spec("BINARY_OPERATOR_GT", "AGGREGATE_FUNCTION_SUM"),
        )
        .expect("old names");
        assert_eq!(old, new);
        // Only enum fields are renamed: the string literal keeps its text.
        assert!(format!("{new:?}").contains("\"BINARY_OPERATOR_GT\""));
        let unknown =
            from_json::<pb::JobSpec>("polaroid.v1.JobSpec", &spec("BINARY_OPERATOR_XOR", "SUM"));
        assert!(unknown.is_err());
    }
}
