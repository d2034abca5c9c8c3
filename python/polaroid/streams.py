"""Network sources: REST answers read once into a frame (`read_rest_api`), the
streaming sources (`stream_rest_api`, `stream_web_socket`, `stream_message_queue`,
`stream_grpc`), iterators of Polars DataFrames as the server receives the data, and
`read_stream`, a bounded window of any of them kept as a frame (docs/streams.md)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from polaroid import errors
from polaroid.connection import Connection, default_connection
from polaroid.v1 import dataframe_pb2 as pb

if TYPE_CHECKING:
    import polars

#: `format=` names: the contract's MessageFormat, and Polaroid's text formats.
_FORMATS: dict[str, tuple[pb.MessageFormat, pb.RestTextFormat]] = {
    "json": (pb.JSON, pb.REST_TEXT_FORMAT_UNSPECIFIED),
    "arrow": (pb.ARROW_IPC, pb.REST_TEXT_FORMAT_UNSPECIFIED),
    "arrow_ipc": (pb.ARROW_IPC, pb.REST_TEXT_FORMAT_UNSPECIFIED),
    "msgpack": (pb.MSGPACK, pb.REST_TEXT_FORMAT_UNSPECIFIED),
    "ndjson": (pb.MESSAGE_FORMAT_UNSPECIFIED, pb.REST_TEXT_FORMAT_NDJSON),
    "jsonl": (pb.MESSAGE_FORMAT_UNSPECIFIED, pb.REST_TEXT_FORMAT_NDJSON),
    "csv": (pb.MESSAGE_FORMAT_UNSPECIFIED, pb.REST_TEXT_FORMAT_CSV),
}

_PAGINATION = {
    "page_number": pb.PageNumberPagination,
    "offset": pb.OffsetPagination,
    "cursor": pb.CursorPagination,
    "link_header": pb.LinkHeaderPagination,
}

_QUEUES = {
    "redis": pb.REDIS_STREAM,
    "redis_stream": pb.REDIS_STREAM,
    "nats": pb.NATS,
    "rabbitmq": pb.RABBITMQ,
    "kafka": pb.KAFKA,
}


def schema_json(schema: str | Mapping[str, Any] | None) -> str:
    """`schema_json` from a JSON text or a mapping of column names to type names
    (`"Int64"`, `"String"`, `"Datetime[ms, UTC]"`) or simple Polars types (`pl.Int64`)."""
    if schema is None:
        return ""
    if isinstance(schema, str):
        return schema
    return json.dumps({str(name): str(kind) for name, kind in schema.items()})


def _format(format: str | None) -> tuple[pb.MessageFormat, pb.RestTextFormat]:
    if format is None:
        return pb.MESSAGE_FORMAT_UNSPECIFIED, pb.REST_TEXT_FORMAT_UNSPECIFIED
    try:
        return _FORMATS[format.lower()]
    except KeyError:
        raise ValueError(f"unknown format {format!r}: one of {sorted(_FORMATS)}") from None


def _pagination(pagination: Mapping[str, Mapping[str, Any]] | pb.PaginationConfig | None) -> Any:
    if pagination is None or isinstance(pagination, pb.PaginationConfig):
        return pagination
    if len(pagination) != 1:
        raise ValueError(f"pagination names one scheme of {sorted(_PAGINATION)}")
    [(kind, settings)] = pagination.items()
    if kind not in _PAGINATION:
        raise ValueError(f"unknown pagination {kind!r}: one of {sorted(_PAGINATION)}")
    return pb.PaginationConfig(**{kind: _PAGINATION[kind](**settings)})


def rest_request(
    url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
    body: str | None = None, records_path: str | None = None, format: str | None = None,
    schema: str | Mapping[str, Any] | None = None,
    pagination: Mapping[str, Mapping[str, Any]] | pb.PaginationConfig | None = None,
    rate_limit: float | tuple[int, int] | None = None, max_pages: int | None = None,
    timeout: float | None = None, poll_interval: float | None = None,
) -> pb.RestApiRequest:
    """The `RestApiRequest` for a REST source.

    `format`: "json" (the default), "ndjson", "csv", "arrow" or "msgpack". `schema`: the
    columns, in order, and their types (a JSON text or a mapping); without it they are
    inferred. `pagination`: one scheme, e.g. `{"page_number": {"page_param": "page",
    "page_size": 100}}`, `{"offset": {"limit": 100}}`, `{"cursor": {"cursor_field":
    "meta.next", "cursor_param": "after"}}` or `{"link_header": {}}`. `rate_limit`:
    requests a second, or (requests a second, burst); below one a second, as a float.
    `timeout` and `poll_interval` in seconds."""
    message_format, text_format = _format(format)
    request = pb.RestApiRequest(
        url=url, method=method, headers=dict(headers or {}), body=body,
        records_path=records_path, format=message_format, text_format=text_format,
        schema_json=schema_json(schema), pagination=_pagination(pagination),
        max_pages=max_pages,
    )
    if isinstance(rate_limit, tuple):
        request.rate_limit.CopyFrom(pb.RateLimitConfig(requests_per_second=rate_limit[0], burst_size=rate_limit[1]))
    elif rate_limit is not None:
        if rate_limit >= 1 and float(rate_limit).is_integer():
            request.rate_limit.CopyFrom(pb.RateLimitConfig(requests_per_second=int(rate_limit)))
        elif rate_limit > 0:
            request.min_request_interval_ms = max(1, round(1000 / rate_limit))
    if timeout is not None:
        request.timeout_ms = max(1, round(timeout * 1000))
    if poll_interval is not None:
        request.poll_interval_ms = max(1, round(poll_interval * 1000))
    return request


def _connection(connection: Connection | None) -> Connection:
    return connection if connection is not None else default_connection()


def _frames(conn: Connection, method: str, request: Any, timeout: float | None) -> Iterator[polars.DataFrame]:
    """The frames of a server stream of `ArrowBatch`, one per message, as they arrive.
    Leaving the loop (or closing the iterator) cancels the call, which stops the source."""
    import polars

    call = getattr(conn.stub, method)(request, timeout=timeout, metadata=conn._metadata)
    try:
        for batch in call:
            if batch.error:
                raise errors.InternalError(batch.error)
            yield polars.read_ipc_stream(io.BytesIO(batch.arrow_ipc))
    except grpc.RpcError as error:
        raise errors.from_rpc_error(error) from None
    finally:
        call.cancel()


def stream_rest_api(
    url: str, *, poll_interval: float | None = None, timeout: float | None = None,
    connection: Connection | None = None, **kwargs: Any,
) -> Iterator[polars.DataFrame]:
    """The records of a REST source as Polars DataFrames, page by page as the server
    fetches them. With `poll_interval` (seconds) the server fetches the answer again at
    that pace and sends the records that were not in the previous answer, until the
    iterator is closed; without, the iterator ends after the last page. `timeout` bounds
    the whole stream (None: none). Other arguments as `rest_request`; every frame also
    has `_received_at` and `_source_position` columns."""
    request = rest_request(url, poll_interval=poll_interval, **kwargs)
    return _frames(_connection(connection), "StreamRestApi", request, timeout)


def stream_web_socket(
    url: str, *, headers: Mapping[str, str] | None = None, format: str | None = None,
    schema: str | Mapping[str, Any] | None = None, buffer_size: int | None = None,
    max_retries: int = 0, initial_delay: float = 0.1, max_delay: float = 30.0,
    backoff_multiplier: float = 2.0, timeout: float | None = None,
    connection: Connection | None = None,
) -> Iterator[polars.DataFrame]:
    """A WebSocket's records (`ws://` or `wss://`) as Polars DataFrames of at most
    `buffer_size` rows, as the server receives them: each text or binary frame decoded
    by `format` (None or "json": JSON records; "arrow", "msgpack"), until the peer closes
    or the iterator is closed. A connection lost without a close is dialled again up to
    `max_retries` times, waiting `initial_delay` seconds, times `backoff_multiplier` each
    time, at most `max_delay`. Every frame also has `_received_at` and
    `_source_position` (`<connection>:<frame>`) columns."""
    request = web_socket_request(
        url, headers=headers, format=format, schema=schema, buffer_size=buffer_size,
        max_retries=max_retries, initial_delay=initial_delay, max_delay=max_delay,
        backoff_multiplier=backoff_multiplier,
    )
    return _frames(_connection(connection), "StreamWebSocket", request, timeout)


def web_socket_request(
    url: str, *, headers: Mapping[str, str] | None = None, format: str | None = None,
    schema: str | Mapping[str, Any] | None = None, buffer_size: int | None = None,
    max_retries: int = 0, initial_delay: float = 0.1, max_delay: float = 30.0,
    backoff_multiplier: float = 2.0,
) -> pb.WebSocketSourceRequest:
    """The `WebSocketSourceRequest` for a WebSocket source (arguments as
    `stream_web_socket`)."""
    message_format, text_format = _format(format)
    if text_format != pb.REST_TEXT_FORMAT_UNSPECIFIED:
        raise ValueError(f"format {format!r} is for REST answers only")
    return pb.WebSocketSourceRequest(
        url=url, headers=dict(headers or {}), schema_json=schema_json(schema),
        buffer_size=buffer_size, format=message_format,
        reconnect_policy=pb.ReconnectPolicy(
            max_retries=max_retries, initial_delay_ms=round(initial_delay * 1000),
            max_delay_ms=round(max_delay * 1000), backoff_multiplier=backoff_multiplier,
        ),
    )


def stream_message_queue(
    connection_string: str, topic: str, *, type: str = "redis", consumer_group: str | None = None,
    consumer_name: str | None = None, start_id: str | None = None, format: str | None = None,
    schema: str | Mapping[str, Any] | None = None, payload_field: str | None = None,
    batch_rows: int | None = None, max_wait: float | None = None, timeout: float | None = None,
    connection: Connection | None = None,
) -> Iterator[polars.DataFrame]:
    """A message queue's messages as Polars DataFrames, as the server receives them.

    `type="redis"`: the entries of the Redis stream `topic` at `connection_string`
    (`redis://host:port/db`) added from now on, or from `start_id` ("0": the first), or as
    `consumer_group` (each entry acknowledged once the server has sent it). `format`: None
    (an entry's fields are the record), "json", "arrow" or "msgpack" (its payload field).

    `type="nats"`: the JetStream messages of subject `topic` at `nats://host:port`, from
    now on, from `start_id` ("0": the stream's first; N: after stream sequence N), or as
    the durable consumer `consumer_group`.

    `type="rabbitmq"`: what is published to exchange `topic` at
    `amqp://user:password@host:port/vhost`, through a queue of the stream's own (from now
    on), or through the durable queue `consumer_group` (its readers compete; what none
    took waits there).

    `type="kafka"`: the records of every partition of topic `topic` at
    `kafka://host:port` (a bootstrap broker), written from now on, from `start_id` ("0":
    the earliest; "0:41,1:7": after those partition:offset positions), or as
    `consumer_group` (from its committed offsets, committing what the server has sent).

    NATS, RabbitMQ and Kafka messages are payloads of `format` (None: "json"). Groups
    acknowledge a message once the server has sent it. Every frame also has `_received_at`
    and `_source_position` (the entry ID, stream sequence, delivery tag or
    partition:offset) columns; docs/streams.md has the details."""
    request = message_queue_request(
        connection_string, topic, type=type, consumer_group=consumer_group,
        consumer_name=consumer_name, start_id=start_id, format=format, schema=schema,
        payload_field=payload_field, batch_rows=batch_rows, max_wait=max_wait,
    )
    return _frames(_connection(connection), "StreamMessageQueue", request, timeout)


def message_queue_request(
    connection_string: str, topic: str, *, type: str = "redis", consumer_group: str | None = None,
    consumer_name: str | None = None, start_id: str | None = None, format: str | None = None,
    schema: str | Mapping[str, Any] | None = None, payload_field: str | None = None,
    batch_rows: int | None = None, max_wait: float | None = None,
) -> pb.MessageQueueRequest:
    """The `MessageQueueRequest` for a queue source (arguments as
    `stream_message_queue`)."""
    try:
        kind = _QUEUES[type.lower()]
    except KeyError:
        raise ValueError(f"unknown queue type {type!r}: one of {sorted(_QUEUES)}") from None
    message_format, text_format = _format(format)
    if text_format != pb.REST_TEXT_FORMAT_UNSPECIFIED:
        raise ValueError(f"format {format!r} is for REST answers only")
    request = pb.MessageQueueRequest(
        type=kind, connection_string=connection_string, topic=topic,
        consumer_group=consumer_group, consumer_name=consumer_name, start_id=start_id,
        schema_json=schema_json(schema), format=message_format, payload_field=payload_field,
        batch_rows=batch_rows,
    )
    if max_wait is not None:
        request.max_wait_ms = max(1, round(max_wait * 1000))
    return request


#: Which `CaptureStreamRequest.source` field each source request goes in.
_CAPTURED = {
    pb.RestApiRequest: "rest_api",
    pb.WebSocketSourceRequest: "web_socket",
    pb.GrpcStreamRequest: "grpc",
    pb.MessageQueueRequest: "message_queue",
}


def _millis(seconds: float | None, name: str) -> int | None:
    if seconds is None:
        return None
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {seconds!r}")
    return max(1, round(seconds * 1000))


def read_stream(
    source: Any, *, max_rows: int | None = None, duration: float | None = None,
    idle: float | None = None, name: str | None = None, progress: bool = False,
    timeout: float | None = None, connection: Connection | None = None,
) -> Any:
    """Captures a bounded window of a streaming source into a new `DataFrame` (a handle,
    stored as an upload is: it outlives the server that captured it).

    `source` is one of `polaroid.sources`: `rest_api(url, ...)`, `web_socket(url, ...)`,
    `message_queue(connection_string, topic, ...)`, `grpc(endpoint, service, method,
    request, ...)` (or the request message itself). The
    capture ends at the first bound reached: `max_rows` rows (the frame then holds exactly
    that many), `duration` seconds, or `idle` seconds without a message (counted from the
    start, then from each message); or when the source ends. At least one bound is needed.
    `progress=True` shows a progress bar (rows, and bytes received) while it waits.
    `timeout` bounds the whole call (None: the bounds do). A source that fails makes no
    frame: its error is raised. Every row also has the `_received_at` and
    `_source_position` columns of the `stream_*` functions."""
    from polaroid.frame import DataFrame

    field = _CAPTURED.get(type(source))
    if field is None:
        raise TypeError(
            "source is a polaroid.sources request (rest_api, web_socket, message_queue, grpc), "
            f"not {type(source).__name__}"
        )
    if max_rows is None and duration is None and idle is None:
        raise ValueError("read_stream needs a bound: max_rows, duration or idle")
    if max_rows is not None and max_rows <= 0:
        raise ValueError(f"max_rows must be positive, got {max_rows!r}")
    request = pb.CaptureStreamRequest(
        max_rows=max_rows, max_duration_ms=_millis(duration, "duration"),
        idle_ms=_millis(idle, "idle"), name=name, **{field: source},
    )
    conn = _connection(connection)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_rows, unit=" rows", desc="capture")
    call = conn.stub.CaptureStream(request, timeout=timeout, metadata=conn._metadata)
    try:
        for message in call:
            if bar is not None:
                bar.update(message.rows - bar.n)
                bar.set_postfix(received=f"{message.bytes} B", elapsed=f"{message.elapsed_ms / 1000:.1f} s")
            if message.HasField("handle"):
                return DataFrame(message.handle.handle, conn)
        raise errors.InternalError("the capture ended without a handle")
    except grpc.RpcError as error:
        raise errors.from_rpc_error(error) from None
    finally:
        call.cancel()
        if bar is not None:
            bar.close()


def stream_grpc(
    endpoint: str, service: str, method: str, request: Any = b"", *,
    metadata: Mapping[str, str] | None = None, tls: bool | None = None,
    ca_cert: str | None = None, client_cert: str | None = None, client_key: str | None = None,
    batch_rows: int | None = None, max_wait: float | None = None, timeout: float | None = None,
    connection: Connection | None = None,
) -> Iterator[polars.DataFrame]:
    """The replies of a server-streaming gRPC method as Polars DataFrames, one row a
    reply, as the server receives them, until the peer ends the call or the iterator is
    closed (which cancels the peer's call). `endpoint` is `http://host:port` or
    `https://host:port`; `service` the full name (`package.Service`); `request` the
    method's input message, encoded (bytes) or a protobuf message (serialized here). The
    server decodes the replies by the peer's gRPC reflection: each top-level field is a
    column (enums as names, messages as structs, repeated fields as lists, Timestamps as
    datetimes). `metadata` is sent with the call; `tls` (default: on for https) with
    `ca_cert`, `client_cert`, `client_key` as PEM text. `max_wait` in seconds. Every
    frame also has `_received_at` and `_source_position` (the reply's index) columns."""
    message = grpc_request(
        endpoint, service, method, request, metadata=metadata, tls=tls, ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key, batch_rows=batch_rows,
        max_wait=max_wait,
    )
    return _frames(_connection(connection), "StreamGrpc", message, timeout)


def grpc_request(
    endpoint: str, service: str, method: str, request: Any = b"", *,
    metadata: Mapping[str, str] | None = None, tls: bool | None = None,
    ca_cert: str | None = None, client_cert: str | None = None, client_key: str | None = None,
    batch_rows: int | None = None, max_wait: float | None = None,
) -> pb.GrpcStreamRequest:
    """The `GrpcStreamRequest` for a gRPC source (arguments as `stream_grpc`)."""
    if not isinstance(request, (bytes, bytearray, memoryview)):
        request = request.SerializeToString()
    message = pb.GrpcStreamRequest(
        endpoint=endpoint, service=service, method=method, request_proto=bytes(request),
        metadata=dict(metadata or {}), batch_rows=batch_rows,
    )
    if tls is not None or ca_cert is not None or client_cert is not None or client_key is not None:
        enabled = tls if tls is not None else True
        message.tls.CopyFrom(pb.TlsConfig(
            enabled=enabled, ca_cert=ca_cert, client_cert=client_cert, client_key=client_key,
        ))
    if max_wait is not None:
        message.max_wait_ms = max(1, round(max_wait * 1000))
    return message
