//! The engine: records each call as a plan node behind a new handle, rebuilds Polars lazy
//! frames from plan nodes, and materializes them on demand into a bounded cache.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;
use polaroid_proto::v1::{self as pb, PlanNode, PlanStep, plan_step::Op};
use polaroid_store::{
    AffinityKey, ArtifactId, Catalog, Handle, HandleRecord, HandleRecordExt, PlanId, RecordChange,
    TenantId, now_unix_ms,
};
use polars::prelude::*;

use crate::cache::ResultCache;
use crate::config::WorkerConfig;
use crate::error::{EngineError, EngineResult};
use crate::paths::DataRoots;
use crate::plan::{self, Frame, StepContext};
use crate::query::{self, Mode};
use crate::{ipc, sinks, sources};
use polaroid_proto::excerpt;

tokio::task_local! {
    /// The affinity key a coordinator chose for the pipeline a call starts (the
    /// `x-polaroid-affinity` metadata), so that the new handle routes back to this worker.
    pub static REQUESTED_AFFINITY: Option<AffinityKey>;
}

/// The affinity key of a new pipeline: the coordinator's choice, else a random one.
pub(crate) fn new_pipeline_affinity() -> AffinityKey {
    REQUESTED_AFFINITY
        .try_with(|key| *key)
        .ok()
        .flatten()
        .unwrap_or_else(AffinityKey::random)
}

/// A plan node ready to use: its lazy frame and output schema.
pub struct Node {
    /// Whose plan this is: caches are keyed by it, and its records live under it.
    pub tenant: TenantId,
    pub id: PlanId,
    /// The stored form, which handle records carry.
    pub record: PlanNode,
    pub frame: Frame,
    pub schema: SchemaRef,
    /// Store keys of the uploads and persisted results the frame reads.
    pub artifacts: Vec<String>,
    /// The Polars engine that runs the frame.
    pub mode: Mode,
    /// Steps between the frame and its sources (or the persisted result it starts from).
    pub depth: u32,
    /// When this worker last knew the plan record durable in the store (ms since the
    /// epoch; 0: not known). Deriving from the node needs it there.
    plan_stored_unix_ms: std::sync::atomic::AtomicU64,
}

impl Node {
    /// A node over rows in memory with no lineage, as an upload's is: the fuzz targets'
    /// inputs.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn in_memory(frame: Frame, schema: SchemaRef) -> Arc<Self> {
        let record = PlanNode::default();
        Arc::new(Self {
            tenant: TenantId::from_name("fuzz"),
            id: PlanId::of(&record),
            record,
            frame,
            schema,
            artifacts: Vec::new(),
            mode: Mode::Streaming,
            depth: 0,
            plan_stored_unix_ms: Default::default(),
        })
    }
}

/// What a client learns of a handle from its record.
#[derive(Debug, Clone)]
pub struct HandleInfo {
    pub record: HandleRecord,
    /// Rows and bytes in memory, when the record does not know them but the cache does.
    pub cached_shape: Option<(u64, u64)>,
    pub persisted: bool,
}

/// Caps on what a single result may be.
#[derive(Debug, Clone, Copy)]
pub struct ResultLimits {
    pub max_rows: usize,
    pub max_columns: usize,
    pub max_bytes: usize,
}

/// File formats the engine writes.
#[derive(Debug, Clone)]
pub enum SinkFormat {
    Parquet {
        compression: Option<String>,
        row_group_size: Option<i64>,
    },
    Csv {
        separator: Option<String>,
        /// Whether a new file starts with a header line (an append never adds one).
        include_header: bool,
    },
    Ipc {
        compression: Option<String>,
    },
}

/// A client's row limit, checked.
fn parse_limit(limit: Option<i64>) -> EngineResult<Option<usize>> {
    limit
        .map(|l| {
            usize::try_from(l)
                .map_err(|_| EngineError::invalid(format!("limit must be non-negative, got {l}")))
        })
        .transpose()
}

/// Results up to this size are encoded on the calling thread; larger ones are encoded
/// off the runtime's threads as they stream.
pub const SMALL_RESULT_BYTES: usize = 64 * 1024;

/// Small encoded results kept (each at most [`SMALL_RESULT_BYTES`] of messages, so the
/// whole at most 16 MiB).
const ENCODED_RESULTS: NonZeroUsize = NonZeroUsize::new(256).expect("non-zero");

/// How a collect splits its rows into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchShape {
    pub max_bytes: usize,
    pub max_rows: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EncodedKey {
    tenant: TenantId,
    plan: PlanId,
    limit: Option<usize>,
    shape: BatchShape,
}

/// A collected result, ready to stream.
pub enum Collected {
    /// A small result, already encoded as its messages.
    Encoded(Arc<[Bytes]>),
    /// A large result, to be encoded as it streams.
    Frame(DataFrame),
}

/// A plan node being replayed: its record, and its stored result when it was persisted.
struct Missing {
    id: PlanId,
    record: PlanNode,
    persisted: Option<Bytes>,
}

/// Whether a recorded step reads no other plan node (a file, an upload).
fn is_source(record: &PlanNode) -> bool {
    record
        .step
        .as_ref()
        .and_then(|s| s.op.as_ref())
        .is_some_and(is_source_op)
}

/// Whether `op` reads no other plan node (a file, a URL, an upload).
pub(crate) fn is_source_op(op: &Op) -> bool {
    matches!(
        op,
        Op::ReadParquet(_)
            | Op::ReadCsv(_)
            | Op::ReadCsvV0(_)
            | Op::ReadIpc(_)
            | Op::ReadJson(_)
            | Op::ReadRestApi(_)
            | Op::ReadRestApiV0(_)
            | Op::Upload(_)
    )
}

/// What [`Engine::explain`] tells of a handle's plan.
pub struct Explained {
    pub plan: String,
    pub optimizations: Vec<String>,
    /// Rows and in-memory bytes, when the result is cached.
    pub known: Option<(usize, usize)>,
}

pub struct Engine {
    catalog: Catalog,
    roots: DataRoots,
    /// Each tenant's directory in the data roots, when tenants' files are kept apart
    /// (tokens configured, `shared_data_roots` off); `None`: every call uses `roots`.
    tenant_roots: Option<Mutex<std::collections::HashMap<TenantId, DataRoots>>>,
    limits: ResultLimits,
    nodes: Mutex<LruCache<(TenantId, PlanId), Arc<Node>>>,
    results: ResultCache,
    /// Small cached results as the messages a collect sends, so that collecting one again
    /// sends the same bytes instead of encoding them again (most of a small collect's
    /// cost). Results are immutable per plan, so entries never go stale.
    encoded: Mutex<LruCache<EncodedKey, Arc<[Bytes]>>>,
    /// Where REST sources may reach, and the HTTP clients that hold to it.
    outbound: Arc<crate::outbound::Outbound>,
    rest_limits: crate::rest::RestLimits,
    panic_on_operation: Option<String>,
    handle_ttl_ms: u64,
    /// A live handle's record is rewritten with a new access time at most this often.
    access_refresh_ms: u64,
    /// Results that took at least this long to compute are written to the store.
    write_behind_after: Option<Duration>,
    max_lineage_depth: u32,
    /// What an upload may decode to, as well as its size (`ipc_bounds`).
    max_upload_bytes: usize,
    /// Whether plans run on Polars' streaming engine (else all on the in-memory one).
    streaming_engine: bool,
}

/// The name of an operation, for errors, logs and metrics.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::ReadParquet(_) => "read_parquet",
        Op::ReadCsv(_) | Op::ReadCsvV0(_) => "read_csv",
        Op::ReadIpc(_) => "read_ipc",
        Op::ReadJson(_) => "read_json",
        Op::ReadRestApi(_) | Op::ReadRestApiV0(_) => "read_rest_api",
        Op::Upload(_) => "upload",
        Op::Select(_) => "select",
        Op::Filter(_) => "filter",
        Op::WithColumn(_) => "with_column",
        Op::WithColumns(_) | Op::WithColumnsV0(_) => "with_columns",
        Op::Drop(_) => "drop",
        Op::Rename(_) => "rename",
        Op::Sort(_) | Op::SortV0(_) => "sort",
        Op::Unique(_) | Op::UniqueV0(_) => "unique",
        Op::Limit(_) => "limit",
        Op::Head(_) => "head",
        Op::Tail(_) => "tail",
        Op::Slice(_) | Op::SliceV0(_) => "slice",
        Op::GroupBy(_) => "group_by",
        Op::Agg(_) | Op::AggV0(_) => "agg",
        Op::Pivot(_) | Op::PivotV0(_) => "pivot",
        Op::Melt(_) => "melt",
        Op::Join(_) | Op::JoinV0(_) => "join",
        Op::Cross(_) => "cross",
        Op::Sql(_) => "sql",
        Op::AsTimeSeries(_) | Op::AsTimeSeriesV0(_) => "as_time_series",
        Op::Resample(_) | Op::ResampleV0(_) => "resample",
        Op::RollingWindow(_) | Op::RollingWindowV0(_) => "rolling_window",
        Op::Lag(_) | Op::LagV0(_) => "lag",
        Op::Lead(_) | Op::LeadV0(_) => "lead",
        Op::Diff(_) | Op::DiffV0(_) => "diff",
        Op::PctChange(_) | Op::PctChangeV0(_) => "pct_change",
        Op::AsofJoin(_) | Op::AsofJoinV0(_) => "asof_join",
        Op::FillNull(_) | Op::FillNullV0(_) => "fill_null",
        Op::FillNan(_) | Op::FillNanV0(_) => "fill_nan",
        Op::Interpolate(_) | Op::InterpolateV0(_) => "interpolate",
        Op::Describe(_) | Op::DescribeV0(_) => "describe",
        Op::Stats(_) => "stats",
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Runs `work`, turning a panic into INTERNAL naming `operation`.
pub(crate) fn catch_panic<T>(
    operation: &'static str,
    work: impl FnOnce() -> EngineResult<T>,
) -> EngineResult<T> {
    guarded(operation, false, work)
}

/// Runs `work`, turning a panic into INTERNAL naming `operation`; `inject_panic` is the
/// `debug_panic_on_operation` test hook.
fn guarded<T>(
    operation: &'static str,
    inject_panic: bool,
    work: impl FnOnce() -> EngineResult<T>,
) -> EngineResult<T> {
    let work = std::panic::AssertUnwindSafe(|| {
        if inject_panic {
            panic!("fault injected by debug_panic_on_operation");
        }
        work()
    });
    std::panic::catch_unwind(work).unwrap_or_else(|payload| {
        let message = panic_message(&*payload);
        // Polars panics on an operation whose crate feature this build leaves out
        // (`activate 'list_arithmetic' feature`: adding a number to a list column, found
        // by `expr_tree`): a request for something not built in, not a server fault.
        if message.starts_with("activate '") {
            return Err(EngineError::Unimplemented(format!(
                "{operation}: this server's Polars is built without it ({message})"
            )));
        }
        let reason = format!("panicked: {message}");
        Err(EngineError::Internal { operation, reason })
    })
}

/// Applies a step to its input nodes and resolves the output schema, so unknown columns
/// and type errors are reported by the call that introduces them.
///
/// The schema is resolved on stand-ins of the inputs (no rows of their schemas), so a call
/// costs the same at any depth of lineage. Resolving it on the real frame converted the
/// whole lineage to Polars' IR at every call: in a chain of with_columns calls the median
/// call went from 1.6 ms (first 100) to 50.7 ms (steps 1,400 to 1,500), and the converted
/// plan stayed cached in each node, so memory grew with the square of the depth (issue 21).
/// An output schema depends on the input schemas only, except where a step reads data to
/// know its columns (pivot), which resolves it on the real frame.
pub(crate) fn build_step(op: &Op, inputs: &[Arc<Node>]) -> EngineResult<(Frame, SchemaRef)> {
    let operation = op_name(op);
    let frames: Vec<Frame> = inputs.iter().map(|n| n.frame.clone()).collect();
    let schemas: Vec<SchemaRef> = inputs.iter().map(|n| n.schema.clone()).collect();
    let modes: Vec<Mode> = inputs.iter().map(|n| n.mode).collect();
    let frame = plan::apply(
        op,
        &StepContext {
            inputs: &frames,
            input_schemas: &schemas,
            mode: Mode::of_step(op, &modes),
        },
    )?;
    // Steps that only choose rows keep their input's schema and cannot fail on it.
    if keeps_input_schema(op) {
        return Ok((frame, schemas[0].clone()));
    }
    if reads_data_for_schema(op) {
        let schema = plan::detached(&frame.lazy()?)
            .collect_schema()
            .map_err(EngineError::polars(operation))?;
        return Ok((frame, schema));
    }
    let stand_ins: Vec<Frame> = frames
        .iter()
        .zip(&schemas)
        .map(|(frame, schema)| plan::stand_in(frame, schema))
        .collect();
    let probe = plan::apply(
        op,
        &StepContext {
            inputs: &stand_ins,
            input_schemas: &schemas,
            mode: Mode::InMemory,
        },
    )?;
    let schema = match probe {
        Frame::Lazy(mut lf) | Frame::TimeSeries { frame: mut lf, .. } => {
            let schema = lf
                .collect_schema()
                .map_err(EngineError::polars(operation))?;
            if checks_types_on_no_rows(op) {
                // Polars resolves some expressions' schemas without checking their inputs'
                // types (`upper` of an integer column passes); running the step on no
                // rows reports such errors now rather than at collect.
                lf.collect().map_err(EngineError::polars(operation))?;
            }
            schema
        }
        Frame::Grouped { input, keys } => {
            input
                .select(keys)
                .collect_schema()
                .map_err(EngineError::polars(operation))?;
            schemas[0].clone()
        }
    };
    Ok((frame, schema))
}

/// Steps whose output columns depend on the data (pivot: one per distinct value of `on`).
fn reads_data_for_schema(op: &Op) -> bool {
    matches!(op, Op::Pivot(_))
}

/// Steps whose expressions are type-checked by running them on no rows.
fn checks_types_on_no_rows(op: &Op) -> bool {
    matches!(
        op,
        Op::Select(_) | Op::WithColumn(_) | Op::WithColumns(_) | Op::Filter(_)
    )
}

fn keeps_input_schema(op: &Op) -> bool {
    matches!(op, Op::Head(_) | Op::Tail(_) | Op::Slice(_) | Op::Limit(_))
}

impl Engine {
    pub fn new(
        config: &WorkerConfig,
        catalog: Catalog,
        roots: DataRoots,
        outbound: Arc<crate::outbound::Outbound>,
    ) -> Self {
        let ttl_ms = config.handle_ttl().map_or(u64::MAX, |ttl| {
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
        });
        let node_capacity =
            NonZeroUsize::new(config.plan_cache_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            catalog,
            tenant_roots: (!config.shared_data_roots
                && !config.auth.tokens_file.as_os_str().is_empty())
            .then(Default::default),
            roots,
            limits: ResultLimits {
                max_rows: config.max_result_rows,
                max_columns: config.max_result_columns,
                max_bytes: config.max_result_bytes,
            },
            nodes: Mutex::new(LruCache::new(node_capacity)),
            results: ResultCache::new(config.cache_bytes),
            encoded: Mutex::new(LruCache::new(ENCODED_RESULTS)),
            outbound,
            rest_limits: crate::rest::RestLimits {
                max_answer_bytes: config.max_rest_response_bytes,
                max_pages: config.max_rest_pages,
                max_requests_per_second: None,
            },
            panic_on_operation: Some(config.debug_panic_on_operation.clone())
                .filter(|op| !op.is_empty()),
            handle_ttl_ms: ttl_ms,
            access_refresh_ms: (ttl_ms / 4).min(60_000),
            write_behind_after: config.write_behind_after(),
            max_lineage_depth: config.max_lineage_depth,
            max_upload_bytes: config.max_upload_bytes,
            streaming_engine: config.streaming_engine,
        }
    }

    /// The data roots `tenant` reads and writes files in: the configured ones, or its own
    /// directory in each when tenants' files are kept apart.
    fn roots_of(&self, tenant: TenantId) -> EngineResult<DataRoots> {
        let Some(narrowed) = &self.tenant_roots else {
            return Ok(self.roots.clone());
        };
        let mut narrowed = narrowed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(roots) = narrowed.get(&tenant) {
            return Ok(roots.clone());
        }
        let roots = self
            .roots
            .narrowed(&tenant.to_hex())
            .map_err(EngineError::io("tenant data roots"))?;
        narrowed.insert(tenant, roots.clone());
        Ok(roots)
    }

    /// The mode of a frame over rows in memory (an upload, a stored result).
    fn rows_mode(&self) -> Mode {
        if self.streaming_engine {
            Mode::Streaming
        } else {
            Mode::InMemory
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn cache(&self) -> &ResultCache {
        &self.results
    }

    /// Runs Polars work off the async threads. A panic becomes INTERNAL naming `operation`.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce() -> EngineResult<T> + Send + 'static,
    ) -> EngineResult<T> {
        let inject_panic = self.inject_panic(operation);
        let queued = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            metrics::histogram!("polaroid_worker_blocking_wait_seconds", "operation" => operation)
                .record(queued.elapsed().as_secs_f64());
            guarded(operation, inject_panic, work)
        })
        .await
        .unwrap_or_else(|e| {
            Err(EngineError::Internal {
                operation,
                reason: e.to_string(),
            })
        })
    }

    fn cached_node(&self, tenant: TenantId, id: &PlanId) -> Option<Arc<Node>> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(&(tenant, id.clone())).cloned()
    }

    fn remember_node(&self, node: Arc<Node>) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.put((node.tenant, node.id.clone()), node);
    }

    /// Records a fresh handle naming `node`. `shape` is its rows and bytes when known.
    async fn register(
        &self,
        node: Arc<Node>,
        affinity: AffinityKey,
        shape: Option<(u64, u64)>,
    ) -> EngineResult<Handle> {
        // The same step made again (a repeated call) has its plan record already.
        if let Some(known) = self.cached_node(node.tenant, &node.id) {
            node.plan_stored_unix_ms.store(
                known.plan_stored_unix_ms.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        self.remember_node(node.clone());
        let handle = Handle::new(node.tenant, affinity);
        let now = now_unix_ms();
        let schema = schema_fields(&node.schema);
        let record = HandleRecord {
            plan: node.id.to_string(),
            node: Some(node.record.clone()),
            tenant: node.tenant.to_hex(),
            created_unix_ms: now,
            last_access_unix_ms: now,
            ttl_ms: self.handle_ttl_ms,
            pinned: false,
            dropped_unix_ms: None,
            schema_hash: polaroid_store::schema_hash(
                schema
                    .iter()
                    .map(|f| (f.name.as_str(), f.data_type.as_str())),
            ),
            schema,
            rows: shape.map(|(rows, _)| rows),
            bytes: shape.map(|(_, bytes)| bytes),
            artifacts: node.artifacts.clone(),
        };
        self.catalog.create_handle(&handle, &record).await?;
        // The plan record is needed only when a call derives from this node, which
        // makes sure of it; written now, off the caller's path, it is there by then.
        if node.plan_stored_unix_ms.load(Ordering::Relaxed) == 0 {
            let catalog = self.catalog.clone();
            tokio::spawn(async move {
                if let Err(e) = store_plan(&catalog, &node).await {
                    tracing::warn!(plan = %node.id, error = %e, "storing a plan record failed");
                }
            });
        }
        Ok(handle)
    }

    /// A node for a new step, with the id and artifacts it gets from its inputs.
    fn new_node(
        &self,
        tenant: TenantId,
        record: PlanNode,
        frame: Frame,
        schema: SchemaRef,
        inputs: &[Arc<Node>],
        own_artifact: Option<String>,
    ) -> Arc<Node> {
        let mut artifacts: Vec<String> = inputs
            .iter()
            .flat_map(|input| input.artifacts.iter().cloned())
            .chain(own_artifact)
            .collect();
        artifacts.sort();
        artifacts.dedup();
        let modes: Vec<Mode> = inputs.iter().map(|input| input.mode).collect();
        let mode = match record.step.as_ref().and_then(|s| s.op.as_ref()) {
            Some(op) if self.streaming_engine => Mode::of_step(op, &modes),
            _ => self.rows_mode(),
        };
        let depth = inputs
            .iter()
            .map(|input| input.depth.saturating_add(1))
            .max()
            .unwrap_or(0);
        Arc::new(Node {
            tenant,
            id: PlanId::of(&record),
            record,
            frame,
            schema,
            artifacts,
            mode,
            depth,
            plan_stored_unix_ms: Default::default(),
        })
    }

    fn parse_handle(&self, tenant: TenantId, text: &str) -> EngineResult<Handle> {
        let handle = Handle::parse(text).map_err(|reason| EngineError::MalformedHandle {
            handle: text.to_owned(),
            reason,
        })?;
        // Another tenant's handle is answered exactly as an unknown one.
        if handle.tenant() != tenant {
            return Err(EngineError::HandleNotFound(text.to_owned()));
        }
        Ok(handle)
    }

    /// The record of a live handle, its access time refreshed when due.
    async fn live_record(
        &self,
        tenant: TenantId,
        text: &str,
    ) -> EngineResult<(Handle, HandleRecord)> {
        let handle = self.parse_handle(tenant, text)?;
        let not_found = || EngineError::HandleNotFound(text.to_owned());
        let record = self
            .catalog
            .get_handle(&handle)
            .await?
            .ok_or_else(not_found)?;
        let now = now_unix_ms();
        if !record.is_live(now) {
            return Err(not_found());
        }
        // Access extends the TTL; the write is skipped while the last one is recent.
        if now.saturating_sub(record.last_access_unix_ms) < self.access_refresh_ms {
            return Ok((handle, record));
        }
        let refresh_ms = self.access_refresh_ms;
        let refreshed = self
            .catalog
            .update_handle(&handle, |record| {
                if !record.is_live(now) {
                    RecordChange::Keep(None)
                } else if now.saturating_sub(record.last_access_unix_ms) >= refresh_ms {
                    record.last_access_unix_ms = now;
                    RecordChange::Write(Some(record.clone()))
                } else {
                    RecordChange::Keep(Some(record.clone()))
                }
            })
            .await?;
        // Dropped (or collected) since the read above.
        let record = refreshed.flatten().ok_or_else(not_found)?;
        Ok((handle, record))
    }

    /// Parses and looks up a client's handle.
    pub async fn resolve(&self, tenant: TenantId, text: &str) -> EngineResult<(Handle, Arc<Node>)> {
        let (handle, record) = self.live_record(tenant, text).await?;
        let id = PlanId::parse(&record.plan)?;
        if let Some(node) = self.cached_node(tenant, &id) {
            metrics::counter!("polaroid_worker_cache_hits_total", "cache" => "plan").increment(1);
            return Ok((handle, node));
        }
        metrics::counter!("polaroid_worker_cache_misses_total", "cache" => "plan").increment(1);
        let plan = record.node.ok_or_else(|| EngineError::Internal {
            operation: "replay",
            reason: format!("the record of handle {text} has no plan"),
        })?;
        Ok((handle, self.build_node(tenant, id, plan).await?))
    }

    /// Rebuilds a plan node and whichever of its ancestors this worker does not hold: from
    /// a persisted result where there is one (the nearest persisted ancestor ends the
    /// replay), else by replaying each step over its inputs.
    ///
    /// The lineage is walked with a stack of its own, not by recursion: a replay thousands
    /// of steps deep overflowed a runtime thread's stack when each step awaited its
    /// inputs' replay.
    async fn build_node(
        &self,
        tenant: TenantId,
        id: PlanId,
        record: PlanNode,
    ) -> EngineResult<Arc<Node>> {
        use std::collections::{HashMap, HashSet};
        // Depth-first over the nodes to rebuild, in an order where each comes after its
        // inputs. A node is pushed again for each user; it is emitted once, once every
        // input pushed after it has been.
        let mut fetched =
            HashMap::from([(id.clone(), self.missing(tenant, id.clone(), record).await?)]);
        let (mut visiting, mut done) = (HashSet::new(), HashSet::new());
        let mut order = Vec::new();
        let mut stack = vec![(id, false)];
        while let Some((next, inputs_done)) = stack.pop() {
            if done.contains(&next) {
                continue;
            }
            if inputs_done {
                done.insert(next.clone());
                order.push(next);
                continue;
            }
            if !visiting.insert(next.clone()) {
                return Err(EngineError::Internal {
                    operation: "replay",
                    reason: format!("plan {next} is its own ancestor"),
                });
            }
            if !fetched.contains_key(&next) {
                let record = self.catalog.get_plan(tenant, &next).await?.ok_or_else(|| {
                    EngineError::Internal {
                        operation: "replay",
                        reason: format!("plan {next} is not recorded"),
                    }
                })?;
                fetched.insert(
                    next.clone(),
                    self.missing(tenant, next.clone(), record).await?,
                );
            }
            let missing = &fetched[&next];
            let replays_inputs = missing.persisted.is_none() && !is_source(&missing.record);
            let inputs = if replays_inputs {
                missing.record.inputs.clone()
            } else {
                Vec::new()
            };
            stack.push((next, true));
            for input in inputs {
                let input = PlanId::parse(&input)?;
                if !done.contains(&input) && self.cached_node(tenant, &input).is_none() {
                    stack.push((input, false));
                }
            }
        }
        let mut built = HashMap::with_capacity(order.len());
        let mut last = None;
        for id in order {
            let missing = fetched.remove(&id).ok_or_else(|| EngineError::Internal {
                operation: "replay",
                reason: format!("plan {id} was not fetched"),
            })?;
            let node = self.build_one(tenant, missing, &built).await?;
            built.insert(node.id.clone(), node.clone());
            last = Some(node);
        }
        last.ok_or_else(|| EngineError::Internal {
            operation: "replay",
            reason: "nothing to replay".into(),
        })
    }

    /// A node to rebuild, with its persisted result when it has one.
    async fn missing(
        &self,
        tenant: TenantId,
        id: PlanId,
        record: PlanNode,
    ) -> EngineResult<Missing> {
        let persisted = self.catalog.get_result(tenant, &id).await?;
        Ok(Missing {
            id,
            record,
            persisted,
        })
    }

    /// Rebuilds one node whose inputs are built (in `built`, or cached).
    async fn build_one(
        &self,
        tenant: TenantId,
        missing: Missing,
        built: &std::collections::HashMap<PlanId, Arc<Node>>,
    ) -> EngineResult<Arc<Node>> {
        let Missing {
            id,
            record,
            persisted,
        } = missing;
        if let Some(bytes) = persisted {
            let limit = self.max_upload_bytes.max(bytes.len());
            let df = self
                .blocking("load_result", move || ipc::decode(&bytes, limit))
                .await?;
            self.results.insert((tenant, id.clone()), df.clone());
            let node = Arc::new(Node {
                tenant,
                artifacts: vec![Catalog::result_ref(tenant, &id)],
                id,
                record,
                schema: df.schema().clone(),
                frame: Frame::Lazy(df.lazy()),
                // Rows in memory: nothing left whose order an engine could change.
                mode: self.rows_mode(),
                depth: 0,
                plan_stored_unix_ms: Default::default(),
            });
            self.remember_node(node.clone());
            return Ok(node);
        }
        let missing = || EngineError::Internal {
            operation: "replay",
            reason: format!("plan {id} has no step"),
        };
        // A record written before the contract's shapes is built as today's step; the
        // record itself (and so the plan's id) stays as stored.
        let op = crate::legacy::upgrade(
            record
                .step
                .as_ref()
                .and_then(|s| s.op.clone())
                .ok_or_else(missing)?,
        )?;
        let mut inputs = Vec::with_capacity(record.inputs.len());
        let mut own_artifact = None;
        let (frame, schema) = match &op {
            Op::Upload(upload) => {
                let artifact = ArtifactId::parse(&upload.artifact)?;
                own_artifact = Some(Catalog::artifact_ref(tenant, &artifact));
                let bytes = self
                    .catalog
                    .get_artifact(tenant, &artifact)
                    .await?
                    .ok_or_else(|| EngineError::Internal {
                        operation: "replay",
                        reason: format!("uploaded artifact {} is missing", artifact.as_str()),
                    })?;
                let limit = self.max_upload_bytes;
                self.blocking("upload", move || {
                    let df = ipc::decode(&bytes, limit)?;
                    Ok((Frame::Lazy(df.clone().lazy()), df.schema().clone()))
                })
                .await?
            }
            Op::ReadParquet(_) | Op::ReadCsv(_) | Op::ReadIpc(_) | Op::ReadJson(_) => {
                if let Some(recorded) = &record.source {
                    let current = sources::fingerprint(std::path::Path::new(&recorded.path))?;
                    if current != *recorded {
                        return Err(EngineError::SourceChanged(recorded.path.clone()));
                    }
                }
                self.open_source(op.clone()).await?
            }
            _ => {
                for input in &record.inputs {
                    let input = PlanId::parse(input)?;
                    let node = built
                        .get(&input)
                        .cloned()
                        .or_else(|| self.cached_node(tenant, &input))
                        .ok_or_else(|| EngineError::Internal {
                            operation: "replay",
                            reason: format!("input {input} of plan {id} was not rebuilt"),
                        })?;
                    inputs.push(node);
                }
                self.apply(op, inputs.clone()).await?
            }
        };
        let node = self.new_node(tenant, record, frame, schema, &inputs, own_artifact);
        self.remember_node(node.clone());
        Ok(node)
    }

    async fn open_source(&self, op: Op) -> EngineResult<(Frame, SchemaRef)> {
        self.blocking(op_name(&op), move || {
            let mut lf = plan::open_source(&op)?;
            let schema = lf
                .collect_schema()
                .map_err(EngineError::polars(op_name(&op)))?;
            Ok((Frame::Lazy(lf), schema))
        })
        .await
    }

    async fn apply(&self, op: Op, inputs: Vec<Arc<Node>>) -> EngineResult<(Frame, SchemaRef)> {
        let operation = op_name(&op);
        let work = move || build_step(&op, &inputs);
        // Building a plan is cheap, so it runs here rather than paying a thread hop, except
        // pivot, which reads the distinct values of `on`.
        if operation == "pivot" {
            self.blocking(operation, work).await
        } else {
            self.inline(operation, work)
        }
    }

    /// Runs cheap Polars work on this thread. A panic becomes INTERNAL naming `operation`.
    fn inline<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce() -> EngineResult<T>,
    ) -> EngineResult<T> {
        guarded(operation, self.inject_panic(operation), work)
    }

    fn inject_panic(&self, operation: &str) -> bool {
        self.panic_on_operation.as_deref() == Some(operation)
    }

    /// A file source's request with its path confined to the data roots and resolved,
    /// and the file's fingerprint.
    fn confine_source(
        &self,
        tenant: TenantId,
        mut op: Op,
    ) -> EngineResult<(Op, pb::SourceFingerprint)> {
        let path = match &mut op {
            Op::ReadParquet(r) => &mut r.path,
            Op::ReadCsv(r) => &mut r.path,
            Op::ReadIpc(r) => &mut r.path,
            Op::ReadJson(r) => &mut r.path,
            _ => {
                return Err(EngineError::Internal {
                    operation: "read",
                    reason: "not a file source".into(),
                });
            }
        };
        let resolved = self.roots_of(tenant)?.read_path(path)?;
        if !resolved.is_file() {
            return Err(EngineError::invalid(format!(
                "`{}` is not a file",
                excerpt(path)
            )));
        }
        *path = resolved.to_string_lossy().into_owned();
        let source = sources::fingerprint(&resolved)?;
        Ok((op, source))
    }

    /// A file source: the path is confined to the data roots and fingerprinted.
    pub async fn read_file(&self, tenant: TenantId, op: Op) -> EngineResult<Handle> {
        let (op, source) = self.confine_source(tenant, op)?;
        let (frame, schema) = self.open_source(op.clone()).await?;
        let record = PlanNode {
            step: Some(PlanStep { op: Some(op) }),
            inputs: vec![],
            source: Some(source),
        };
        let node = self.new_node(tenant, record, frame, schema, &[], None);
        self.register(node, new_pipeline_affinity(), None).await
    }

    /// One step of a batch job over its inputs' nodes: built (so paths, columns, types and
    /// expressions are checked) but not recorded. Validation stops there; a run goes on to
    /// [`Engine::write_node`] and [`Engine::keep_node`] with the last one.
    pub async fn job_step(
        &self,
        tenant: TenantId,
        op: Op,
        inputs: Vec<Arc<Node>>,
    ) -> EngineResult<Arc<Node>> {
        // A job queued by an older worker, or sent by an older client, may hold steps of
        // the shapes from before the contract: they run, and are recorded, as today's.
        let op = crate::legacy::upgrade(op)?;
        let mut source = None;
        let mut own_artifact = None;
        let (op, (frame, schema)) = match op {
            Op::ReadParquet(_) | Op::ReadCsv(_) | Op::ReadIpc(_) | Op::ReadJson(_) => {
                let (op, fingerprint) = self.confine_source(tenant, op)?;
                source = Some(fingerprint);
                let opened = self.open_source(op.clone()).await?;
                (op, opened)
            }
            Op::ReadRestApi(request) => {
                // Kept as an upload, as interactively: the answer is not replayable, and
                // its content address makes the plan's id (so a later run with another
                // answer is another plan, not a stale cache hit).
                let url = request.url.clone();
                let (bytes, df) = self.fetch_rest(request).await?;
                let artifact = self.catalog.put_artifact(tenant, bytes).await?;
                own_artifact = Some(Catalog::artifact_ref(tenant, &artifact));
                let schema = df.schema().clone();
                let upload = Op::Upload(pb::UploadedArtifact {
                    artifact: artifact.as_str().to_owned(),
                    name: Some(url),
                });
                (upload, (Frame::Lazy(df.lazy()), schema))
            }
            Op::Upload(_) => {
                return Err(EngineError::invalid(
                    "a job cannot upload data: upload it with UploadArrow and give the handle as an input",
                ));
            }
            op => {
                let applied = self.apply(op.clone(), inputs.clone()).await?;
                (op, applied)
            }
        };
        let record = PlanNode {
            step: Some(PlanStep { op: Some(op) }),
            inputs: inputs.iter().map(|n| n.id.to_string()).collect(),
            source,
        };
        Ok(self.new_node(tenant, record, frame, schema, &inputs, own_artifact))
    }

    /// Keeps a batch job's result: computes and stores it, then makes a handle for it.
    /// The stored result is what the handle replays from, so the job's steps need no
    /// records of their own.
    pub async fn keep_node(
        &self,
        node: &Node,
        affinity: Option<AffinityKey>,
    ) -> EngineResult<(Handle, u64)> {
        let (df, stored) = self.store_result(node).await?;
        let rows = df.height() as u64;
        let kept = Arc::new(Node {
            tenant: node.tenant,
            id: node.id.clone(),
            record: node.record.clone(),
            frame: node.frame.clone(),
            schema: node.schema.clone(),
            artifacts: vec![Catalog::result_ref(node.tenant, &node.id)],
            mode: node.mode,
            depth: node.depth,
            plan_stored_unix_ms: Default::default(),
        });
        let handle = self
            .register(
                kept,
                affinity.unwrap_or_else(AffinityKey::random),
                Some((rows, stored)),
            )
            .await?;
        Ok((handle, rows))
    }

    /// Uploaded Arrow IPC bytes: validated, then stored durably before the handle exists.
    pub async fn upload(
        &self,
        tenant: TenantId,
        bytes: Bytes,
        name: Option<String>,
    ) -> EngineResult<Handle> {
        let decoded = bytes.clone();
        let limit = self.max_upload_bytes;
        let df = self
            .blocking("upload", move || ipc::decode(&decoded, limit))
            .await?;
        self.register_upload(tenant, bytes, df, name, new_pipeline_affinity())
            .await
    }

    /// A captured stream's frame (`CaptureStream`), kept as an upload is: encoded, held to
    /// `max_upload_bytes`, stored durably (within the tenant's quota), then its handle.
    /// `affinity` is the call's, taken while its scope was current: a capture stores from
    /// the task that feeds its answer.
    pub async fn keep_capture(
        &self,
        tenant: TenantId,
        df: DataFrame,
        name: Option<String>,
        affinity: AffinityKey,
    ) -> EngineResult<(Handle, u64)> {
        let limit = self.max_upload_bytes;
        let (bytes, df) = self
            .blocking("capture_stream", move || {
                let mut df = df;
                let bytes = ipc::encode(&mut df)?;
                if bytes.len() > limit {
                    return Err(EngineError::LimitExceeded(format!(
                        "the captured frame is {} bytes as Arrow IPC, past the {limit} an upload may be (max_upload_bytes)",
                        bytes.len()
                    )));
                }
                Ok((Bytes::from(bytes), df))
            })
            .await?;
        let stored = bytes.len() as u64;
        let handle = self
            .register_upload(tenant, bytes, df, name, affinity)
            .await?;
        Ok((handle, stored))
    }

    /// The largest upload (`max_upload_bytes`), which a capture is held to as it grows.
    pub fn max_upload_bytes(&self) -> usize {
        self.max_upload_bytes
    }

    async fn register_upload(
        &self,
        tenant: TenantId,
        bytes: Bytes,
        df: DataFrame,
        name: Option<String>,
        affinity: AffinityKey,
    ) -> EngineResult<Handle> {
        let stored_bytes = bytes.len() as u64;
        let artifact = self.catalog.put_artifact(tenant, bytes).await?;
        let artifact_ref = Catalog::artifact_ref(tenant, &artifact);
        let op = Op::Upload(pb::UploadedArtifact {
            artifact: artifact.as_str().to_owned(),
            name,
        });
        let record = PlanNode {
            step: Some(PlanStep { op: Some(op) }),
            inputs: vec![],
            source: None,
        };
        let schema = df.schema().clone();
        let rows = df.height() as u64;
        let node = self.new_node(
            tenant,
            record,
            Frame::Lazy(df.lazy()),
            schema,
            &[],
            Some(artifact_ref),
        );
        self.register(node, affinity, Some((rows, stored_bytes)))
            .await
    }

    /// A REST source, fetched now and kept as an upload.
    pub async fn read_rest(
        &self,
        tenant: TenantId,
        req: pb::RestApiRequest,
    ) -> EngineResult<Handle> {
        let url = req.url.clone();
        let (bytes, df) = self.fetch_rest(req).await?;
        self.register_upload(tenant, bytes, df, Some(url), new_pipeline_affinity())
            .await
    }

    /// Fetches a REST source, every page, and parses it, as a frame and the Arrow IPC
    /// bytes it is stored as.
    async fn fetch_rest(&self, req: pb::RestApiRequest) -> EngineResult<(Bytes, DataFrame)> {
        let mut source =
            crate::rest::RestSource::new(self.outbound.clone(), req, self.rest_limits, false)?;
        let records = source.fetch_all().await?;
        let (schema, cast_only) = (source.schema.clone(), source.cast_only);
        self.blocking("read_rest_api", move || {
            let mut df = records.into_frame(schema.as_ref(), cast_only)?;
            Ok((Bytes::from(ipc::encode(&mut df)?), df))
        })
        .await
    }

    /// Where REST sources may reach (streams take their own clients from it).
    pub fn outbound(&self) -> &Arc<crate::outbound::Outbound> {
        &self.outbound
    }

    /// What the worker allows one REST answer.
    pub fn rest_limits(&self) -> crate::rest::RestLimits {
        self.rest_limits
    }

    /// A step over existing handles; the new handle inherits the first parent's affinity.
    pub async fn derive(
        &self,
        tenant: TenantId,
        parents: Vec<String>,
        op: Op,
    ) -> EngineResult<Handle> {
        let mut inputs = Vec::with_capacity(parents.len());
        let mut affinity = None;
        for parent in &parents {
            let (handle, node) = self.resolve(tenant, parent).await?;
            affinity.get_or_insert(handle.affinity());
            inputs.push(node);
        }
        let affinity = affinity.unwrap_or_else(AffinityKey::random);
        // The new record names its inputs by plan id: their records must be durable first.
        futures::future::try_join_all(
            inputs
                .iter()
                .map(|input| ensure_plan_stored(&self.catalog, input)),
        )
        .await?;
        let input_ids = inputs.iter().map(|n| n.id.to_string()).collect();
        let (frame, schema) = self.apply(op.clone(), inputs.clone()).await?;
        let record = PlanNode {
            step: Some(PlanStep { op: Some(op) }),
            inputs: input_ids,
            source: None,
        };
        let node = self.new_node(tenant, record, frame, schema, &inputs, None);
        // Polars converts, optimizes and drops plans recursively: a lineage without end
        // would end in a stack overflow, which aborts the whole worker.
        if node.depth > self.max_lineage_depth {
            return Err(EngineError::LineageTooDeep {
                depth: node.depth,
                limit: self.max_lineage_depth,
            });
        }
        self.register(node, affinity, None).await
    }

    /// SQL over named handles.
    pub async fn sql(
        &self,
        tenant: TenantId,
        query: String,
        tables: BTreeMap<String, String>,
    ) -> EngineResult<Handle> {
        if tables.is_empty() {
            return Err(EngineError::invalid("sql needs at least one table"));
        }
        let names = tables
            .keys()
            .map(|name| (name.clone(), String::new()))
            .collect();
        let parents = tables.into_values().collect();
        self.derive(
            tenant,
            parents,
            Op::Sql(pb::SqlRequest {
                query,
                tables: names,
            }),
        )
        .await
    }

    /// A new handle for the same plan.
    pub async fn clone_handle(&self, tenant: TenantId, text: &str) -> EngineResult<Handle> {
        let (handle, node) = self.resolve(tenant, text).await?;
        self.register(node, handle.affinity(), None).await
    }

    pub async fn schema(&self, tenant: TenantId, handle: &str) -> EngineResult<SchemaRef> {
        Ok(self.resolve(tenant, handle).await?.1.schema.clone())
    }

    /// The schema, and the rows and in-memory bytes of the result when it is computed
    /// already (in the result cache); nothing is computed to find them.
    pub async fn schema_and_known_size(
        &self,
        tenant: TenantId,
        handle: &str,
    ) -> EngineResult<(SchemaRef, Option<(usize, usize)>)> {
        let (_, node) = self.resolve(tenant, handle).await?;
        let size = self
            .cached(&node)
            .map(|df| (df.height(), df.estimated_size()));
        Ok((node.schema.clone(), size))
    }

    /// Rows and columns; rows from the cache, or by a count query Polars can answer from metadata.
    pub async fn shape(&self, tenant: TenantId, handle: &str) -> EngineResult<(usize, usize)> {
        let (_, node) = self.resolve(tenant, handle).await?;
        let columns = node.schema.len();
        if let Some(df) = self.results.get(&(tenant, node.id.clone())) {
            return Ok((df.height(), columns));
        }
        let (lf, mode) = (node.frame.lazy()?, node.mode);
        let rows = self
            .blocking("shape", move || {
                let counted = query::collect(lf.select([len()]), mode)
                    .map_err(EngineError::polars("shape"))?;
                let value = counted.columns()[0]
                    .get(0)
                    .map_err(EngineError::polars("shape"))?;
                value
                    .extract::<u64>()
                    .map(|v| v as usize)
                    .ok_or_else(|| EngineError::Internal {
                        operation: "shape",
                        reason: format!("row count is {value}"),
                    })
            })
            .await?;
        Ok((rows, columns))
    }

    /// A handle's logical plan (optimized or as built, as text or a tree), the
    /// optimizations Polars runs when `optimized`, and the rows and bytes of its result
    /// when that is cached already (nothing is computed to find them).
    pub async fn explain(
        &self,
        tenant: TenantId,
        handle: &str,
        optimized: bool,
        tree: bool,
    ) -> EngineResult<Explained> {
        let (_, node) = self.resolve(tenant, handle).await?;
        let known = self
            .cached(&node)
            .map(|df| (df.height(), df.estimated_size()));
        let lf = node.frame.lazy()?;
        self.blocking("explain", move || {
            let plan = match (optimized, tree) {
                (true, true) => lf.describe_optimized_plan_tree(),
                (true, false) => lf.describe_optimized_plan(),
                (false, true) => lf.describe_plan_tree(),
                (false, false) => lf.describe_plan(),
            }
            .map_err(EngineError::polars("explain"))?;
            let optimizations = if optimized {
                lf.get_current_optimizations()
                    .iter_names()
                    .map(|(name, _)| name.to_ascii_lowercase())
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Explained {
                plan,
                optimizations,
                known,
            })
        })
        .await
    }

    fn cached(&self, node: &Node) -> Option<DataFrame> {
        self.results.get(&(node.tenant, node.id.clone()))
    }

    /// The frame of a node, from the cache or computed.
    async fn materialize(&self, node: &Node, row_cap: Option<usize>) -> EngineResult<DataFrame> {
        match self.cached(node) {
            Some(df) => Ok(df),
            None => self.compute(node, row_cap).await,
        }
    }

    /// Computes a node's frame and caches it, unless it has more than `row_cap` rows.
    async fn compute(&self, node: &Node, row_cap: Option<usize>) -> EngineResult<DataFrame> {
        let key = (node.tenant, node.id.clone());
        let mut lf = node.frame.lazy()?;
        if let Some(cap) = row_cap {
            // One row past the cap tells "too many" without computing everything.
            lf = lf.limit(IdxSize::try_from(cap.saturating_add(1)).unwrap_or(IdxSize::MAX));
        }
        let started = Instant::now();
        let mode = node.mode;
        let df = self
            .blocking("collect", move || {
                query::collect(lf, mode).map_err(EngineError::polars("collect"))
            })
            .await?;
        if row_cap.is_none_or(|cap| df.height() <= cap) {
            self.results.insert(key, df.clone());
            if self
                .write_behind_after
                .is_some_and(|after| started.elapsed() >= after)
            {
                self.write_behind(node.tenant, node.id.clone(), df.clone());
            }
        }
        Ok(df)
    }

    /// Stores a result that was expensive to compute, in the background: a later cache
    /// miss on any worker loads it instead of recomputing it.
    fn write_behind(&self, tenant: TenantId, id: PlanId, df: DataFrame) {
        let catalog = self.catalog.clone();
        tokio::spawn(async move {
            let stored = async {
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut df = df;
                    ipc::encode(&mut df)
                })
                .await
                .map_err(|e| EngineError::Internal {
                    operation: "write_behind",
                    reason: e.to_string(),
                })??;
                catalog.put_result(tenant, &id, Bytes::from(bytes)).await?;
                EngineResult::Ok(())
            };
            match stored.await {
                Ok(()) => tracing::debug!(plan = %id, "result written behind"),
                // The result can still be recomputed: losing it costs time, not data.
                Err(e) => tracing::warn!(plan = %id, error = %e, "write-behind failed"),
            }
        });
    }

    /// The rows of a handle for a client, within the result limits; a small result
    /// encoded as the messages of `shape` (once, when the result is cached), a large one
    /// left for the caller to encode as it streams.
    pub async fn collect_batches(
        &self,
        tenant: TenantId,
        handle: &str,
        limit: Option<i64>,
        shape: BatchShape,
    ) -> EngineResult<Collected> {
        let limit = parse_limit(limit)?;
        let (_, node) = self.resolve(tenant, handle).await?;
        let key = EncodedKey {
            tenant,
            plan: node.id.clone(),
            limit,
            shape,
        };
        if let Some(batches) = self.encoded_cache().get(&key) {
            metrics::counter!("polaroid_worker_cache_hits_total", "cache" => "encoded")
                .increment(1);
            return Ok(Collected::Encoded(batches.clone()));
        }
        let df = self.collect_node(&node, limit).await?;
        if df.estimated_size() > SMALL_RESULT_BYTES {
            return Ok(Collected::Frame(df));
        }
        let batches: Arc<[Bytes]> = self
            .inline("collect", || {
                let mut batches = Vec::new();
                ipc::encode_chunks(&df, shape.max_bytes, shape.max_rows, &mut |bytes| {
                    batches.push(bytes);
                    true
                })?;
                Ok(batches)
            })?
            .into();
        // Only a result the cache holds is known to be the plan's result for good; a
        // limited one computed on the side is sent and forgotten. Small rows in many
        // small messages (a tiny batch size) can encode far larger than the rows: those
        // are not kept either.
        let encoded_bytes: usize = batches.iter().map(Bytes::len).sum();
        if encoded_bytes <= SMALL_RESULT_BYTES && self.results.contains(&(tenant, node.id.clone()))
        {
            metrics::counter!("polaroid_worker_cache_misses_total", "cache" => "encoded")
                .increment(1);
            self.encoded_cache().put(key, batches.clone());
        }
        Ok(Collected::Encoded(batches))
    }

    /// A handle's rows for a client, within the result limits.
    pub async fn collect_frame(&self, tenant: TenantId, handle: &str) -> EngineResult<DataFrame> {
        let (_, node) = self.resolve(tenant, handle).await?;
        self.collect_node(&node, None).await
    }

    fn encoded_cache(&self) -> std::sync::MutexGuard<'_, LruCache<EncodedKey, Arc<[Bytes]>>> {
        self.encoded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A node's rows for a client, within the result limits.
    async fn collect_node(&self, node: &Node, limit: Option<usize>) -> EngineResult<DataFrame> {
        let limits = self.limits;
        if node.schema.len() > limits.max_columns {
            return Err(EngineError::LimitExceeded(format!(
                "result has {} columns, over the limit of {}",
                node.schema.len(),
                limits.max_columns
            )));
        }
        let df = match (self.cached(node), limit) {
            (Some(df), Some(n)) => df.head(Some(n)),
            (Some(df), None) => df,
            // A limit under the cap computes only the rows asked for (and is not cached).
            (None, Some(n)) if n < limits.max_rows => {
                let lf = node
                    .frame
                    .lazy()?
                    .limit(IdxSize::try_from(n).unwrap_or(IdxSize::MAX));
                let mode = node.mode;
                self.blocking("collect", move || {
                    query::collect(lf, mode).map_err(EngineError::polars("collect"))
                })
                .await?
            }
            (None, limit) => {
                let df = self.compute(node, Some(limits.max_rows)).await?;
                match limit {
                    Some(n) => df.head(Some(n)),
                    None => df,
                }
            }
        };
        if df.height() > limits.max_rows {
            return Err(EngineError::LimitExceeded(format!(
                "result has more than {} rows (the limit); use a limit, or write it to a file",
                limits.max_rows
            )));
        }
        let bytes = df.estimated_size();
        if bytes > limits.max_bytes {
            return Err(EngineError::LimitExceeded(format!(
                "result is about {bytes} bytes, over the limit of {} bytes",
                limits.max_bytes
            )));
        }
        Ok(df)
    }

    /// Writes a handle's rows to a file under the data roots, atomically.
    pub async fn write(
        &self,
        tenant: TenantId,
        handle: &str,
        path: &str,
        format: SinkFormat,
        append: bool,
    ) -> EngineResult<usize> {
        self.write_reporting(tenant, handle, path, format, append, Box::new(|_| Ok(())))
            .await
    }

    /// [`Engine::write`], calling `progress` with the rows written so far as it goes; an
    /// error from `progress` (a cancelled job) abandons the write, leaving no file.
    pub async fn write_reporting(
        &self,
        tenant: TenantId,
        handle: &str,
        path: &str,
        format: SinkFormat,
        append: bool,
        progress: Box<dyn FnMut(usize) -> EngineResult<()> + Send>,
    ) -> EngineResult<usize> {
        let (_, node) = self.resolve(tenant, handle).await?;
        self.write_node(&node, path, format, append, progress).await
    }

    /// Writes a node's rows to a file under the data roots, atomically, reporting progress.
    pub async fn write_node(
        &self,
        node: &Node,
        path: &str,
        format: SinkFormat,
        append: bool,
        mut progress: Box<dyn FnMut(usize) -> EngineResult<()> + Send>,
    ) -> EngineResult<usize> {
        let target = self.roots_of(node.tenant)?.write_path(path)?;
        let rows = match self.cached(node) {
            Some(df) => sinks::Rows::Frame(df),
            // Streamed to the file as the query runs: the result is never held whole (nor
            // cached), so a worker can write results larger than its memory.
            None => sinks::Rows::Query {
                lf: Box::new(node.frame.lazy()?),
                schema: node.schema.clone(),
                mode: node.mode,
            },
        };
        self.blocking("write", move || {
            sinks::write_atomic(&target, rows, &format, append, &mut progress)
        })
        .await
    }

    /// Checks that `path` may be written (inside the data roots, in an existing directory).
    pub fn check_write_path(&self, tenant: TenantId, path: &str) -> EngineResult<()> {
        self.roots_of(tenant)?.write_path(path).map(|_| ())
    }

    /// Forgets a handle; other handles, even of the same plan, are unaffected. The record
    /// stays as a tombstone until the collector's grace period has passed, so a call
    /// deriving from the handle at this moment still finds its lineage.
    pub async fn drop_handle(&self, tenant: TenantId, text: &str) -> EngineResult<bool> {
        let handle = match self.parse_handle(tenant, text) {
            Ok(handle) => handle,
            Err(EngineError::HandleNotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let now = now_unix_ms();
        let dropped = self
            .catalog
            .update_handle(&handle, |record| {
                if record.is_live(now) {
                    record.dropped_unix_ms = Some(now);
                    RecordChange::Write(true)
                } else {
                    RecordChange::Keep(false)
                }
            })
            .await?;
        Ok(dropped.unwrap_or(false))
    }

    /// Whether each handle is live; live ones have their TTL extended.
    pub async fn heartbeat(
        &self,
        tenant: TenantId,
        handles: Vec<String>,
    ) -> BTreeMap<String, bool> {
        let mut alive = BTreeMap::new();
        for text in handles {
            let ok = self.live_record(tenant, &text).await.is_ok();
            alive.insert(text, ok);
        }
        alive
    }

    /// Computes a node's result and stores it; returns its rows and stored bytes. Encoded
    /// even when the result is stored already: an old copy is rewritten, so the collector
    /// never takes it for garbage while a handle is being recorded to need it.
    async fn store_result(&self, node: &Node) -> EngineResult<(DataFrame, u64)> {
        let df = self.materialize(node, None).await?;
        let encoded = df.clone();
        let bytes = self
            .blocking("persist", move || {
                let mut df = encoded;
                ipc::encode(&mut df)
            })
            .await?;
        let stored = self
            .catalog
            .put_result(node.tenant, &node.id, Bytes::from(bytes))
            .await?;
        Ok((df, stored))
    }

    /// Computes a handle's result and stores it; returns its rows and stored bytes.
    pub async fn persist(&self, tenant: TenantId, text: &str) -> EngineResult<(u64, u64)> {
        let (handle, node) = self.resolve(tenant, text).await?;
        let (df, stored) = self.store_result(&node).await?;
        let rows = df.height() as u64;
        // The stored result starts a new lineage, as it does for a worker that replays
        // the handle: later steps read its rows, and their depth counts from here.
        self.remember_node(Arc::new(Node {
            tenant: node.tenant,
            id: node.id.clone(),
            record: node.record.clone(),
            schema: node.schema.clone(),
            frame: Frame::Lazy(df.lazy()),
            artifacts: vec![Catalog::result_ref(node.tenant, &node.id)],
            mode: self.rows_mode(),
            depth: 0,
            plan_stored_unix_ms: Default::default(),
        }));
        // A compare-and-set on the record as it is now: the work above may have taken a
        // while, and a pin or a drop made meanwhile must stay.
        let result = Catalog::result_ref(node.tenant, &node.id);
        self.catalog
            .update_handle(&handle, |record| {
                if !record.artifacts.contains(&result) {
                    record.artifacts.push(result.clone());
                }
                record.rows = Some(rows);
                record.bytes = Some(stored);
                RecordChange::Write(())
            })
            .await?;
        Ok((rows, stored))
    }

    /// Pins or unpins a live handle; unpinning restarts its TTL.
    pub async fn set_pinned(
        &self,
        tenant: TenantId,
        text: &str,
        pinned: bool,
    ) -> EngineResult<bool> {
        let handle = self.parse_handle(tenant, text)?;
        let now = now_unix_ms();
        let live = self
            .catalog
            .update_handle(&handle, |record| {
                if !record.is_live(now) {
                    RecordChange::Keep(false)
                } else if record.pinned != pinned {
                    record.pinned = pinned;
                    record.last_access_unix_ms = now;
                    RecordChange::Write(true)
                } else {
                    RecordChange::Keep(true)
                }
            })
            .await?;
        match live {
            Some(true) => Ok(pinned),
            _ => Err(EngineError::HandleNotFound(text.to_owned())),
        }
    }

    /// The record of a live handle, with what this worker's cache adds.
    pub async fn handle_info(&self, tenant: TenantId, text: &str) -> EngineResult<HandleInfo> {
        let (_, record) = self.live_record(tenant, text).await?;
        let id = PlanId::parse(&record.plan)?;
        let cached_shape = self
            .results
            .get(&(tenant, id.clone()))
            .map(|df| (df.height() as u64, df.estimated_size() as u64));
        let persisted = self.catalog.result_size(tenant, &id).await?.is_some();
        Ok(HandleInfo {
            record,
            cached_shape,
            persisted,
        })
    }
}

/// Writes (or refreshes) the plan record of `node` and notes when.
async fn store_plan(catalog: &Catalog, node: &Node) -> EngineResult<()> {
    catalog.put_plan(node.tenant, &node.record).await?;
    node.plan_stored_unix_ms
        .store(now_unix_ms(), Ordering::Relaxed);
    Ok(())
}

/// Makes sure the plan record of `node` is in the store, and fresh enough that the
/// collector will not take it before the handle being made can protect it.
async fn ensure_plan_stored(catalog: &Catalog, node: &Node) -> EngineResult<()> {
    let stored = node.plan_stored_unix_ms.load(Ordering::Relaxed);
    let fresh = u64::try_from(catalog.refresh_after().as_millis()).unwrap_or(u64::MAX);
    if stored != 0 && now_unix_ms().saturating_sub(stored) < fresh {
        return Ok(());
    }
    store_plan(catalog, node).await
}

/// A schema as the wire's name/type pairs.
pub fn schema_fields(schema: &Schema) -> Vec<pb::Field> {
    schema
        .iter()
        .map(|(name, dtype)| pb::Field {
            name: name.to_string(),
            data_type: crate::dtype::name(dtype),
        })
        .collect()
}
