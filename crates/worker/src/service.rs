//! The gRPC edge: `DataFrameService` handlers that hand each request to the engine, and
//! the one mapping from engine errors to `tonic::Status`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use polaroid_proto::v1::{self as pb, data_frame_service_server::DataFrameService, plan_step::Op};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::dtype;
use crate::engine::{BatchShape, Collected, Engine, SinkFormat};
use crate::error::{EngineError, EngineResult};
use polaroid_auth::Caller;
use polaroid_store::{HandleRecordExt, TenantId};

/// The one place engine errors become gRPC statuses (Flight's too). The message is cut to
/// `MAX_STATUS_MESSAGE_BYTES` whatever went into it (Polars quotes column names and
/// expressions whole): the coordinator's HTTP/2 client must always be able to read it.
pub fn status(error: EngineError) -> Status {
    let code = error.code();
    if code == polaroid_proto::ErrorCode::Internal {
        tracing::error!(%error, "call failed");
    } else {
        tracing::debug!(%error, "call rejected");
    }
    code.status(error.to_string())
}

type Reply<T> = Result<Response<T>, Status>;

/// The tenant a call acts for, from the caller the authentication layer found.
pub(crate) fn tenant<T>(request: &Request<T>) -> Result<TenantId, Status> {
    tenant_in(request.extensions())
}

/// [`tenant`] for services that read the HTTP request themselves.
pub(crate) fn tenant_in(extensions: &http::Extensions) -> Result<TenantId, Status> {
    Caller::in_extensions(extensions).map(|caller| TenantId::from_name(&caller.tenant))
}
type BatchStream = Pin<Box<dyn Stream<Item = Result<pb::ArrowBatch, Status>> + Send>>;

/// Stores an upload whose last byte has arrived, unless its client went away meanwhile,
/// and never halfway.
///
/// tonic ends a request stream its client reset with CANCEL as if it were finished
/// (`codec/decode.rs`, 0.14), so a cancelled upload looks complete here; hyper drops the
/// call at its next wait instead, where it finds the reset. The yield is that wait, before
/// anything is stored. Once
/// storing starts it runs in a task of its own: the artifact, plan and handle records are
/// written together even if the client leaves now (as when an answer is lost in transit),
/// never an artifact without its handle. Both were seen: without them, 2 in 40 runs of
/// `flight::an_upload_cancelled_midway_stores_nothing` left an orphan artifact.
pub(crate) async fn store_finished_upload(
    engine: &Arc<Engine>,
    tenant: TenantId,
    bytes: bytes::Bytes,
    name: Option<String>,
) -> EngineResult<polaroid_store::Handle> {
    tokio::task::yield_now().await;
    let engine = Arc::clone(engine);
    let affinity = crate::engine::REQUESTED_AFFINITY
        .try_with(|key| *key)
        .ok()
        .flatten();
    let upload = crate::engine::REQUESTED_AFFINITY.scope(affinity, async move {
        engine.upload(tenant, bytes, name).await
    });
    tokio::spawn(tracing::Instrument::in_current_span(upload))
        .await
        .unwrap_or_else(|e| {
            Err(EngineError::Internal {
                operation: "upload",
                reason: e.to_string(),
            })
        })
}

fn handle_reply(result: EngineResult<polaroid_store::Handle>) -> Reply<pb::DataFrameHandle> {
    result
        .map(|handle| {
            Response::new(pb::DataFrameHandle {
                handle: handle.to_string(),
                error: None,
            })
        })
        .map_err(status)
}

fn write_reply(result: EngineResult<usize>) -> Reply<pb::WriteResponse> {
    result
        .map(|rows| {
            Response::new(pb::WriteResponse {
                success: true,
                error: None,
                rows_written: Some(rows as i64),
            })
        })
        .map_err(status)
}

pub struct DataFrameServer {
    engine: Arc<Engine>,
    streams: crate::streams::Streams,
    max_message_bytes: usize,
    stream_batch_rows: usize,
    max_upload_bytes: usize,
}

impl DataFrameServer {
    pub fn new(engine: Arc<Engine>, config: &crate::WorkerConfig) -> Self {
        let streams = crate::streams::Streams::new(
            engine.outbound().clone(),
            engine.rest_limits(),
            config.stream_caps(),
        );
        Self {
            engine,
            streams,
            max_message_bytes: config.result_payload_bytes(),
            stream_batch_rows: config.stream_batch_rows,
            max_upload_bytes: config.max_upload_bytes,
        }
    }

    /// A transform of one input handle, as the caller's tenant: the handle leaves the
    /// request, the rest is the step.
    async fn derive_one<R>(
        &self,
        request: Request<R>,
        handle: fn(&mut R) -> &mut String,
        op: fn(R) -> Op,
    ) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        let mut request = request.into_inner();
        let parent = std::mem::take(handle(&mut request));
        handle_reply(self.engine.derive(tenant, vec![parent], op(request)).await)
    }

    /// A transform of two input handles (left, then right).
    async fn derive_two<R>(
        &self,
        request: Request<R>,
        handles: fn(&mut R) -> (&mut String, &mut String),
        op: fn(R) -> Op,
    ) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        let mut request = request.into_inner();
        let (left, right) = handles(&mut request);
        let parents = vec![std::mem::take(left), std::mem::take(right)];
        handle_reply(self.engine.derive(tenant, parents, op(request)).await)
    }

    /// Messages of at most `max_rows` rows and the configured message size, each a
    /// self-contained Arrow IPC stream.
    fn shape(&self, max_rows: usize) -> BatchShape {
        BatchShape {
            max_bytes: self.max_message_bytes,
            max_rows,
        }
    }

    /// The messages of a collected result: sent as they are when encoded already,
    /// otherwise encoded off the runtime's threads as the client takes them.
    fn stream_collected(collected: Collected, shape: BatchShape) -> BatchStream {
        let df = match collected {
            Collected::Encoded(batches) => {
                let messages: Vec<Result<pb::ArrowBatch, Status>> = batches
                    .iter()
                    .map(|bytes| {
                        Ok(pb::ArrowBatch {
                            arrow_ipc: bytes.clone(),
                            error: None,
                        })
                    })
                    .collect();
                return Box::pin(tokio_stream::iter(messages));
            }
            Collected::Frame(df) => df,
        };
        stream_from_blocking("Collect", move |emit| {
            crate::ipc::encode_chunks(&df, shape.max_bytes, shape.max_rows, &mut |bytes| {
                emit(pb::ArrowBatch {
                    arrow_ipc: bytes,
                    error: None,
                })
            })
        })
    }
}

/// The messages `produce` makes on a blocking thread, handing each to `emit` (which says
/// whether the client still reads), streamed as the client takes them. An error, or a
/// panic (INTERNAL naming `operation`), ends the stream: never a short result that looks
/// complete.
pub(crate) fn stream_from_blocking<T: Send + 'static>(
    operation: &'static str,
    produce: impl FnOnce(&mut dyn FnMut(T) -> bool) -> EngineResult<()> + Send + 'static,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut emit = |message: T| sender.blocking_send(Ok(message)).is_ok();
        if let Err(error) = crate::engine::catch_panic(operation, || produce(&mut emit)) {
            let _ = sender.blocking_send(Err(status(error)));
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}

#[tonic::async_trait]
impl DataFrameService for DataFrameServer {
    async fn read_parquet(
        &self,
        request: Request<pb::ReadParquetRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        handle_reply(
            self.engine
                .read_file(tenant, Op::ReadParquet(request.into_inner()))
                .await,
        )
    }

    async fn read_csv(&self, request: Request<pb::ReadCsvRequest>) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        handle_reply(
            self.engine
                .read_file(tenant, Op::ReadCsv(request.into_inner()))
                .await,
        )
    }

    async fn read_ipc(&self, request: Request<pb::ReadIpcRequest>) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        handle_reply(
            self.engine
                .read_file(tenant, Op::ReadIpc(request.into_inner()))
                .await,
        )
    }

    async fn read_json(&self, request: Request<pb::ReadJsonRequest>) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        handle_reply(
            self.engine
                .read_file(tenant, Op::ReadJson(request.into_inner()))
                .await,
        )
    }

    async fn read_rest_api(
        &self,
        request: Request<pb::RestApiRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        handle_reply(self.engine.read_rest(tenant, request.into_inner()).await)
    }

    async fn create_from_arrow(
        &self,
        request: Request<pb::CreateFromArrowRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        handle_reply(
            self.engine
                .upload(tenant, request.arrow_ipc, request.name)
                .await,
        )
    }

    async fn upload_arrow(
        &self,
        request: Request<Streaming<pb::UploadArrowChunk>>,
    ) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        let mut chunks = request.into_inner();
        let mut data = Vec::new();
        let mut name = None;
        let mut first = true;
        while let Some(chunk) = chunks.message().await? {
            if std::mem::take(&mut first) {
                name = chunk.name;
            }
            if data.len() + chunk.data.len() > self.max_upload_bytes {
                let limit = self.max_upload_bytes;
                return Err(status(EngineError::LimitExceeded(format!(
                    "upload is over the limit of {limit} bytes"
                ))));
            }
            data.extend_from_slice(&chunk.data);
        }
        handle_reply(store_finished_upload(&self.engine, tenant, data.into(), name).await)
    }

    type StreamRestApiStream = BatchStream;

    async fn stream_rest_api(
        &self,
        request: Request<pb::RestApiRequest>,
    ) -> Reply<Self::StreamRestApiStream> {
        tenant(&request)?;
        let stream = self.streams.rest(request.into_inner()).map_err(status)?;
        Ok(Response::new(stream))
    }

    type StreamWebSocketStream = BatchStream;

    async fn stream_web_socket(
        &self,
        request: Request<pb::WebSocketSourceRequest>,
    ) -> Reply<Self::StreamWebSocketStream> {
        tenant(&request)?;
        let stream = self
            .streams
            .websocket(request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(stream))
    }

    type StreamGrpcStream = BatchStream;

    async fn stream_grpc(
        &self,
        request: Request<pb::GrpcStreamRequest>,
    ) -> Reply<Self::StreamGrpcStream> {
        tenant(&request)?;
        let stream = self
            .streams
            .grpc(request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(stream))
    }

    type StreamMessageQueueStream = BatchStream;

    async fn stream_message_queue(
        &self,
        request: Request<pb::MessageQueueRequest>,
    ) -> Reply<Self::StreamMessageQueueStream> {
        tenant(&request)?;
        let stream = self
            .streams
            .message_queue(request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(stream))
    }

    type CaptureStreamStream = crate::streams::capture::ProgressStream;

    async fn capture_stream(
        &self,
        request: Request<pb::CaptureStreamRequest>,
    ) -> Reply<Self::CaptureStreamStream> {
        let tenant = tenant(&request)?;
        // Read here, in the call's scope: the capture stores its handle from a task.
        let affinity = crate::engine::new_pipeline_affinity();
        let stream = self
            .streams
            .capture(self.engine.clone(), tenant, affinity, request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(stream))
    }

    async fn select(&self, request: Request<pb::SelectRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Select)
            .await
    }

    async fn filter(&self, request: Request<pb::FilterRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Filter)
            .await
    }

    async fn with_column(
        &self,
        request: Request<pb::WithColumnRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::WithColumn)
            .await
    }

    async fn with_columns(
        &self,
        request: Request<pb::WithColumnsRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::WithColumns)
            .await
    }

    async fn drop(&self, request: Request<pb::DropRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Drop).await
    }

    async fn rename(&self, request: Request<pb::RenameRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Rename)
            .await
    }

    async fn sort(&self, request: Request<pb::SortRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Sort).await
    }

    async fn unique(&self, request: Request<pb::UniqueRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Unique)
            .await
    }

    async fn limit(&self, request: Request<pb::LimitRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Limit).await
    }

    async fn head(&self, request: Request<pb::HeadRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Head).await
    }

    async fn tail(&self, request: Request<pb::TailRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Tail).await
    }

    async fn slice(&self, request: Request<pb::SliceRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Slice).await
    }

    async fn group_by(&self, request: Request<pb::GroupByRequest>) -> Reply<pb::GroupByHandle> {
        let tenant = tenant(&request)?;
        let mut request = request.into_inner();
        let parent = std::mem::take(&mut request.handle);
        let schema = self.engine.schema(tenant, &parent).await.map_err(status)?;
        let group_columns = crate::plan::group_key_names(&schema, &request).map_err(status)?;
        let handle = self
            .engine
            .derive(tenant, vec![parent], Op::GroupBy(request))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GroupByHandle {
            handle: handle.to_string(),
            group_columns,
            error: None,
        }))
    }

    async fn agg(&self, request: Request<pb::AggRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Agg).await
    }

    async fn pivot(&self, request: Request<pb::PivotRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Pivot).await
    }

    async fn melt(&self, request: Request<pb::MeltRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Melt).await
    }

    async fn join(&self, request: Request<pb::JoinRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_two(
            request,
            |r| (&mut r.left_handle, &mut r.right_handle),
            Op::Join,
        )
        .await
    }

    async fn cross(&self, request: Request<pb::CrossRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_two(
            request,
            |r| (&mut r.left_handle, &mut r.right_handle),
            Op::Cross,
        )
        .await
    }

    async fn sql(&self, request: Request<pb::SqlRequest>) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        handle_reply(self.engine.sql(tenant, request.query, request.tables).await)
    }

    async fn clone(&self, request: Request<pb::CloneRequest>) -> Reply<pb::DataFrameHandle> {
        let tenant = tenant(&request)?;
        handle_reply(
            self.engine
                .clone_handle(tenant, &request.into_inner().handle)
                .await,
        )
    }

    async fn as_time_series(
        &self,
        request: Request<pb::AsTimeSeriesRequest>,
    ) -> Reply<pb::TimeSeriesHandle> {
        let tenant = tenant(&request)?;
        let mut request = request.into_inner();
        let parent = std::mem::take(&mut request.handle);
        let timestamp_column = request.timestamp_column.clone();
        let frequency = request.frequency.clone().unwrap_or_default();
        let handle = self
            .engine
            .derive(tenant, vec![parent], Op::AsTimeSeries(request))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::TimeSeriesHandle {
            handle: handle.to_string(),
            timestamp_column,
            frequency,
            error: None,
        }))
    }

    async fn resample(&self, request: Request<pb::ResampleRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Resample)
            .await
    }

    async fn rolling_window(
        &self,
        request: Request<pb::RollingWindowRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::RollingWindow)
            .await
    }

    async fn lag(&self, request: Request<pb::LagRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Lag).await
    }

    async fn lead(&self, request: Request<pb::LeadRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Lead).await
    }

    async fn diff(&self, request: Request<pb::DiffRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Diff).await
    }

    async fn pct_change(
        &self,
        request: Request<pb::PctChangeRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::PctChange)
            .await
    }

    async fn asof_join(&self, request: Request<pb::AsofJoinRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_two(
            request,
            |r| (&mut r.left_handle, &mut r.right_handle),
            Op::AsofJoin,
        )
        .await
    }

    async fn fill_null(&self, request: Request<pb::FillNullRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::FillNull)
            .await
    }

    async fn fill_nan(&self, request: Request<pb::FillNanRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::FillNan)
            .await
    }

    async fn interpolate(
        &self,
        request: Request<pb::InterpolateRequest>,
    ) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Interpolate)
            .await
    }

    async fn describe(&self, request: Request<pb::DescribeRequest>) -> Reply<pb::DataFrameHandle> {
        self.derive_one(request, |r| &mut r.handle, Op::Describe)
            .await
    }

    async fn get_stats(&self, request: Request<pb::GetStatsRequest>) -> Reply<pb::StatsResponse> {
        let tenant = tenant(&request)?;
        let mut request = request.into_inner();
        let parent = std::mem::take(&mut request.handle);
        // The statistics are a frame (Polaroid's handle to them), computed here for the
        // contract's map.
        let handle = self
            .engine
            .derive(tenant, vec![parent], Op::Stats(request))
            .await
            .map_err(status)?
            .to_string();
        let frame = self
            .engine
            .collect_frame(tenant, &handle)
            .await
            .map_err(status)?;
        let stats = crate::stats::column_stats_map(&frame).map_err(status)?;
        Ok(Response::new(pb::StatsResponse { stats, handle }))
    }

    type CollectStream = BatchStream;

    async fn collect(&self, request: Request<pb::CollectRequest>) -> Reply<Self::CollectStream> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let shape = self.shape(usize::MAX);
        let collected = self
            .engine
            .collect_batches(tenant, &request.handle, request.limit, shape)
            .await
            .map_err(status)?;
        Ok(Response::new(Self::stream_collected(collected, shape)))
    }

    type CollectStreamingStream = BatchStream;

    async fn collect_streaming(
        &self,
        request: Request<pb::CollectStreamingRequest>,
    ) -> Reply<Self::CollectStreamingStream> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let batch_rows = match request.batch_size {
            None => self.stream_batch_rows,
            Some(n) if n > 0 => n as usize,
            Some(n) => {
                return Err(status(EngineError::invalid(format!(
                    "batch_size must be positive, got {n}"
                ))));
            }
        };
        let shape = self.shape(batch_rows);
        let collected = self
            .engine
            .collect_batches(tenant, &request.handle, request.limit, shape)
            .await
            .map_err(status)?;
        Ok(Response::new(Self::stream_collected(collected, shape)))
    }

    async fn write_parquet(
        &self,
        request: Request<pb::WriteParquetRequest>,
    ) -> Reply<pb::WriteResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let format = SinkFormat::Parquet {
            compression: r.compression,
            row_group_size: r.row_group_size,
        };
        write_reply(
            self.engine
                .write(tenant, &r.handle, &r.path, format, r.append)
                .await,
        )
    }

    async fn write_csv(&self, request: Request<pb::WriteCsvRequest>) -> Reply<pb::WriteResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let format = SinkFormat::Csv {
            separator: r.separator,
            include_header: r.include_header,
        };
        write_reply(
            self.engine
                .write(tenant, &r.handle, &r.path, format, r.append)
                .await,
        )
    }

    async fn write_ipc(&self, request: Request<pb::WriteIpcRequest>) -> Reply<pb::WriteResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        write_reply(
            self.engine
                .write(
                    tenant,
                    &r.handle,
                    &r.path,
                    SinkFormat::Ipc {
                        compression: r.compression,
                    },
                    r.append,
                )
                .await,
        )
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Reply<pb::ExplainResponse> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let explained = self
            .engine
            .explain(
                tenant,
                &request.handle,
                request.optimized,
                request.format_tree,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ExplainResponse {
            logical_plan: explained.plan,
            // Polars shows no physical plan of a lazy query: unset rather than made up.
            physical_plan: None,
            optimizations: explained.optimizations,
            stats: explained.known.map(|(rows, bytes)| pb::QueryStats {
                estimated_rows: saturating_i64(rows as u64),
                estimated_bytes: saturating_i64(bytes as u64),
                partitions: Vec::new(),
            }),
        }))
    }

    async fn get_schema(
        &self,
        request: Request<pb::GetSchemaRequest>,
    ) -> Reply<pb::SchemaResponse> {
        let tenant = tenant(&request)?;
        let schema = self
            .engine
            .schema(tenant, &request.into_inner().handle)
            .await
            .map_err(status)?;
        let columns: Vec<pb::ColumnInfo> = schema
            .iter()
            .map(|(name, dtype)| pb::ColumnInfo {
                name: name.to_string(),
                data_type: dtype::name(dtype),
                nullable: true,
            })
            .collect();
        let fields: Vec<serde_json::Value> = columns
            .iter()
            .map(|c| serde_json::json!({ "name": c.name, "data_type": c.data_type, "nullable": c.nullable }))
            .collect();
        let schema_json = serde_json::json!({ "fields": fields }).to_string();
        Ok(Response::new(pb::SchemaResponse {
            schema_json,
            columns,
        }))
    }

    async fn get_shape(&self, request: Request<pb::GetShapeRequest>) -> Reply<pb::ShapeResponse> {
        let tenant = tenant(&request)?;
        let (rows, columns) = self
            .engine
            .shape(tenant, &request.into_inner().handle)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ShapeResponse {
            rows: rows as i64,
            columns: columns as i64,
        }))
    }

    async fn drop_handle(
        &self,
        request: Request<pb::DropHandleRequest>,
    ) -> Reply<pb::DropHandleResponse> {
        let tenant = tenant(&request)?;
        let success = self
            .engine
            .drop_handle(tenant, &request.into_inner().handle)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DropHandleResponse { success }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Reply<pb::HeartbeatResponse> {
        let tenant = tenant(&request)?;
        let alive = self
            .engine
            .heartbeat(tenant, request.into_inner().handles)
            .await;
        Ok(Response::new(pb::HeartbeatResponse { alive }))
    }

    async fn persist(&self, request: Request<pb::PersistRequest>) -> Reply<pb::PersistResponse> {
        let tenant = tenant(&request)?;
        let (rows, stored) = self
            .engine
            .persist(tenant, &request.into_inner().handle)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PersistResponse {
            rows: saturating_i64(rows),
            stored_bytes: saturating_i64(stored),
        }))
    }

    async fn pin(&self, request: Request<pb::PinRequest>) -> Reply<pb::PinResponse> {
        let tenant = tenant(&request)?;
        let pinned = self
            .engine
            .set_pinned(tenant, &request.into_inner().handle, true)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PinResponse { pinned }))
    }

    async fn unpin(&self, request: Request<pb::PinRequest>) -> Reply<pb::PinResponse> {
        let tenant = tenant(&request)?;
        let pinned = self
            .engine
            .set_pinned(tenant, &request.into_inner().handle, false)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PinResponse { pinned }))
    }

    async fn get_handle_info(
        &self,
        request: Request<pb::HandleInfoRequest>,
    ) -> Reply<pb::HandleInfo> {
        let tenant = tenant(&request)?;
        let handle = request.into_inner().handle;
        let info = self
            .engine
            .handle_info(tenant, &handle)
            .await
            .map_err(status)?;
        let record = info.record;
        // 0 when it never expires (pinned, or no TTL).
        let expires = record.expires_unix_ms().filter(|&at| at != u64::MAX);
        let (rows, bytes) = match (record.rows, record.bytes, info.cached_shape) {
            (Some(rows), Some(bytes), _) => (Some(rows), Some(bytes)),
            (_, _, Some((rows, bytes))) => (Some(rows), Some(bytes)),
            _ => (None, None),
        };
        Ok(Response::new(pb::HandleInfo {
            handle,
            plan_id: record.plan,
            created_unix_ms: saturating_i64(record.created_unix_ms),
            last_access_unix_ms: saturating_i64(record.last_access_unix_ms),
            expires_unix_ms: expires.map_or(0, saturating_i64),
            pinned: record.pinned,
            schema: record.schema,
            schema_hash: record.schema_hash,
            rows: rows.map(saturating_i64),
            bytes: bytes.map(saturating_i64),
            artifacts: record.artifacts,
            persisted: info.persisted,
        }))
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
