from polaroid.v1 import expr_pb2 as _expr_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JsonFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JSON_FORMAT_UNSPECIFIED: _ClassVar[JsonFormat]
    JSON_FORMAT_JSON: _ClassVar[JsonFormat]
    JSON_FORMAT_NDJSON: _ClassVar[JsonFormat]

class RestTextFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REST_TEXT_FORMAT_UNSPECIFIED: _ClassVar[RestTextFormat]
    REST_TEXT_FORMAT_NDJSON: _ClassVar[RestTextFormat]
    REST_TEXT_FORMAT_CSV: _ClassVar[RestTextFormat]

class MessageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_FORMAT_UNSPECIFIED: _ClassVar[MessageFormat]
    JSON: _ClassVar[MessageFormat]
    ARROW_IPC: _ClassVar[MessageFormat]
    MSGPACK: _ClassVar[MessageFormat]
    PROTOBUF: _ClassVar[MessageFormat]

class MessageQueueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_QUEUE_TYPE_UNSPECIFIED: _ClassVar[MessageQueueType]
    KAFKA: _ClassVar[MessageQueueType]
    RABBITMQ: _ClassVar[MessageQueueType]
    NATS: _ClassVar[MessageQueueType]
    REDIS_STREAM: _ClassVar[MessageQueueType]

class CaptureStop(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPTURE_STOP_UNSPECIFIED: _ClassVar[CaptureStop]
    CAPTURE_STOP_MAX_ROWS: _ClassVar[CaptureStop]
    CAPTURE_STOP_MAX_DURATION: _ClassVar[CaptureStop]
    CAPTURE_STOP_IDLE: _ClassVar[CaptureStop]
    CAPTURE_STOP_SOURCE_ENDED: _ClassVar[CaptureStop]

class UniqueKeep(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNIQUE_KEEP_UNSPECIFIED: _ClassVar[UniqueKeep]
    UNIQUE_KEEP_FIRST: _ClassVar[UniqueKeep]
    UNIQUE_KEEP_LAST: _ClassVar[UniqueKeep]
    UNIQUE_KEEP_NONE: _ClassVar[UniqueKeep]
    UNIQUE_KEEP_ANY: _ClassVar[UniqueKeep]

class JoinType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOIN_TYPE_UNSPECIFIED: _ClassVar[JoinType]
    INNER: _ClassVar[JoinType]
    LEFT: _ClassVar[JoinType]
    RIGHT: _ClassVar[JoinType]
    FULL: _ClassVar[JoinType]
    CROSS: _ClassVar[JoinType]

class JoinHow(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOIN_HOW_UNSPECIFIED: _ClassVar[JoinHow]
    JOIN_HOW_INNER: _ClassVar[JoinHow]
    JOIN_HOW_LEFT: _ClassVar[JoinHow]
    JOIN_HOW_RIGHT: _ClassVar[JoinHow]
    JOIN_HOW_FULL: _ClassVar[JoinHow]
    JOIN_HOW_SEMI: _ClassVar[JoinHow]
    JOIN_HOW_ANTI: _ClassVar[JoinHow]
    JOIN_HOW_CROSS: _ClassVar[JoinHow]

class ClosedWindow(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLOSED_WINDOW_UNSPECIFIED: _ClassVar[ClosedWindow]
    CLOSED_WINDOW_LEFT: _ClassVar[ClosedWindow]
    CLOSED_WINDOW_RIGHT: _ClassVar[ClosedWindow]
    CLOSED_WINDOW_BOTH: _ClassVar[ClosedWindow]
    CLOSED_WINDOW_NONE: _ClassVar[ClosedWindow]

class WindowLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_LABEL_UNSPECIFIED: _ClassVar[WindowLabel]
    WINDOW_LABEL_LEFT: _ClassVar[WindowLabel]
    WINDOW_LABEL_RIGHT: _ClassVar[WindowLabel]
    WINDOW_LABEL_DATAPOINT: _ClassVar[WindowLabel]

class AsofStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASOF_STRATEGY_UNSPECIFIED: _ClassVar[AsofStrategy]
    ASOF_STRATEGY_BACKWARD: _ClassVar[AsofStrategy]
    ASOF_STRATEGY_FORWARD: _ClassVar[AsofStrategy]
    ASOF_STRATEGY_NEAREST: _ClassVar[AsofStrategy]

class FillMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILL_METHOD_UNSPECIFIED: _ClassVar[FillMethod]
    FILL_FORWARD: _ClassVar[FillMethod]
    FILL_BACKWARD: _ClassVar[FillMethod]
    FILL_MEAN: _ClassVar[FillMethod]
    FILL_MIN: _ClassVar[FillMethod]
    FILL_MAX: _ClassVar[FillMethod]
    FILL_ZERO: _ClassVar[FillMethod]
    FILL_ONE: _ClassVar[FillMethod]

class InterpolationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERPOLATION_METHOD_UNSPECIFIED: _ClassVar[InterpolationMethod]
    INTERPOLATION_METHOD_LINEAR: _ClassVar[InterpolationMethod]
    INTERPOLATION_METHOD_NEAREST: _ClassVar[InterpolationMethod]
JSON_FORMAT_UNSPECIFIED: JsonFormat
JSON_FORMAT_JSON: JsonFormat
JSON_FORMAT_NDJSON: JsonFormat
REST_TEXT_FORMAT_UNSPECIFIED: RestTextFormat
REST_TEXT_FORMAT_NDJSON: RestTextFormat
REST_TEXT_FORMAT_CSV: RestTextFormat
MESSAGE_FORMAT_UNSPECIFIED: MessageFormat
JSON: MessageFormat
ARROW_IPC: MessageFormat
MSGPACK: MessageFormat
PROTOBUF: MessageFormat
MESSAGE_QUEUE_TYPE_UNSPECIFIED: MessageQueueType
KAFKA: MessageQueueType
RABBITMQ: MessageQueueType
NATS: MessageQueueType
REDIS_STREAM: MessageQueueType
CAPTURE_STOP_UNSPECIFIED: CaptureStop
CAPTURE_STOP_MAX_ROWS: CaptureStop
CAPTURE_STOP_MAX_DURATION: CaptureStop
CAPTURE_STOP_IDLE: CaptureStop
CAPTURE_STOP_SOURCE_ENDED: CaptureStop
UNIQUE_KEEP_UNSPECIFIED: UniqueKeep
UNIQUE_KEEP_FIRST: UniqueKeep
UNIQUE_KEEP_LAST: UniqueKeep
UNIQUE_KEEP_NONE: UniqueKeep
UNIQUE_KEEP_ANY: UniqueKeep
JOIN_TYPE_UNSPECIFIED: JoinType
INNER: JoinType
LEFT: JoinType
RIGHT: JoinType
FULL: JoinType
CROSS: JoinType
JOIN_HOW_UNSPECIFIED: JoinHow
JOIN_HOW_INNER: JoinHow
JOIN_HOW_LEFT: JoinHow
JOIN_HOW_RIGHT: JoinHow
JOIN_HOW_FULL: JoinHow
JOIN_HOW_SEMI: JoinHow
JOIN_HOW_ANTI: JoinHow
JOIN_HOW_CROSS: JoinHow
CLOSED_WINDOW_UNSPECIFIED: ClosedWindow
CLOSED_WINDOW_LEFT: ClosedWindow
CLOSED_WINDOW_RIGHT: ClosedWindow
CLOSED_WINDOW_BOTH: ClosedWindow
CLOSED_WINDOW_NONE: ClosedWindow
WINDOW_LABEL_UNSPECIFIED: WindowLabel
WINDOW_LABEL_LEFT: WindowLabel
WINDOW_LABEL_RIGHT: WindowLabel
WINDOW_LABEL_DATAPOINT: WindowLabel
ASOF_STRATEGY_UNSPECIFIED: AsofStrategy
ASOF_STRATEGY_BACKWARD: AsofStrategy
ASOF_STRATEGY_FORWARD: AsofStrategy
ASOF_STRATEGY_NEAREST: AsofStrategy
FILL_METHOD_UNSPECIFIED: FillMethod
FILL_FORWARD: FillMethod
FILL_BACKWARD: FillMethod
FILL_MEAN: FillMethod
FILL_MIN: FillMethod
FILL_MAX: FillMethod
FILL_ZERO: FillMethod
FILL_ONE: FillMethod
INTERPOLATION_METHOD_UNSPECIFIED: InterpolationMethod
INTERPOLATION_METHOD_LINEAR: InterpolationMethod
INTERPOLATION_METHOD_NEAREST: InterpolationMethod

class DataFrameHandle(_message.Message):
    __slots__ = ("handle", "error")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    error: str
    def __init__(self, handle: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("name", "data_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    data_type: str
    def __init__(self, name: _Optional[str] = ..., data_type: _Optional[str] = ...) -> None: ...

class ReadParquetRequest(_message.Message):
    __slots__ = ("path", "columns", "predicate", "n_rows", "row_index_offset", "parallel", "row_index_name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    ROW_INDEX_OFFSET_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_FIELD_NUMBER: _ClassVar[int]
    ROW_INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    predicate: str
    n_rows: int
    row_index_offset: int
    parallel: bool
    row_index_name: str
    def __init__(self, path: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., predicate: _Optional[str] = ..., n_rows: _Optional[int] = ..., row_index_offset: _Optional[int] = ..., parallel: _Optional[bool] = ..., row_index_name: _Optional[str] = ...) -> None: ...

class ReadCsvRequest(_message.Message):
    __slots__ = ("path", "has_header", "separator", "quote_char", "skip_rows", "n_rows", "columns", "schema_json", "infer_schema_length", "null_values", "try_parse_dates", "schema")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HAS_HEADER_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    QUOTE_CHAR_FIELD_NUMBER: _ClassVar[int]
    SKIP_ROWS_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    INFER_SCHEMA_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUES_FIELD_NUMBER: _ClassVar[int]
    TRY_PARSE_DATES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    path: str
    has_header: bool
    separator: str
    quote_char: str
    skip_rows: int
    n_rows: int
    columns: _containers.RepeatedScalarFieldContainer[str]
    schema_json: str
    infer_schema_length: int
    null_values: _containers.RepeatedScalarFieldContainer[str]
    try_parse_dates: bool
    schema: _containers.RepeatedCompositeFieldContainer[Field]
    def __init__(self, path: _Optional[str] = ..., has_header: _Optional[bool] = ..., separator: _Optional[str] = ..., quote_char: _Optional[str] = ..., skip_rows: _Optional[int] = ..., n_rows: _Optional[int] = ..., columns: _Optional[_Iterable[str]] = ..., schema_json: _Optional[str] = ..., infer_schema_length: _Optional[int] = ..., null_values: _Optional[_Iterable[str]] = ..., try_parse_dates: _Optional[bool] = ..., schema: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class ReadIpcRequest(_message.Message):
    __slots__ = ("path", "columns", "n_rows", "row_index_offset", "row_index_name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    ROW_INDEX_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ROW_INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    n_rows: int
    row_index_offset: int
    row_index_name: str
    def __init__(self, path: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., n_rows: _Optional[int] = ..., row_index_offset: _Optional[int] = ..., row_index_name: _Optional[str] = ...) -> None: ...

class ReadJsonRequest(_message.Message):
    __slots__ = ("path", "format", "n_rows", "schema", "infer_schema_length")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    INFER_SCHEMA_LENGTH_FIELD_NUMBER: _ClassVar[int]
    path: str
    format: JsonFormat
    n_rows: int
    schema: _containers.RepeatedCompositeFieldContainer[Field]
    infer_schema_length: int
    def __init__(self, path: _Optional[str] = ..., format: _Optional[_Union[JsonFormat, str]] = ..., n_rows: _Optional[int] = ..., schema: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., infer_schema_length: _Optional[int] = ...) -> None: ...

class RestApiRequest(_message.Message):
    __slots__ = ("url", "headers", "method", "body", "pagination", "schema_json", "rate_limit", "format", "timeout_ms", "records_path", "text_format", "max_pages", "start_page", "page_size_param", "limit_param", "poll_interval_ms", "cast_only", "min_request_interval_ms")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PATH_FIELD_NUMBER: _ClassVar[int]
    TEXT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    START_PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_PARAM_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PARAM_FIELD_NUMBER: _ClassVar[int]
    POLL_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    CAST_ONLY_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUEST_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    url: str
    headers: _containers.ScalarMap[str, str]
    method: str
    body: str
    pagination: PaginationConfig
    schema_json: str
    rate_limit: RateLimitConfig
    format: MessageFormat
    timeout_ms: int
    records_path: str
    text_format: RestTextFormat
    max_pages: int
    start_page: int
    page_size_param: str
    limit_param: str
    poll_interval_ms: int
    cast_only: bool
    min_request_interval_ms: int
    def __init__(self, url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., method: _Optional[str] = ..., body: _Optional[str] = ..., pagination: _Optional[_Union[PaginationConfig, _Mapping]] = ..., schema_json: _Optional[str] = ..., rate_limit: _Optional[_Union[RateLimitConfig, _Mapping]] = ..., format: _Optional[_Union[MessageFormat, str]] = ..., timeout_ms: _Optional[int] = ..., records_path: _Optional[str] = ..., text_format: _Optional[_Union[RestTextFormat, str]] = ..., max_pages: _Optional[int] = ..., start_page: _Optional[int] = ..., page_size_param: _Optional[str] = ..., limit_param: _Optional[str] = ..., poll_interval_ms: _Optional[int] = ..., cast_only: _Optional[bool] = ..., min_request_interval_ms: _Optional[int] = ...) -> None: ...

class PaginationConfig(_message.Message):
    __slots__ = ("offset", "cursor", "link_header", "page_number")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LINK_HEADER_FIELD_NUMBER: _ClassVar[int]
    PAGE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    offset: OffsetPagination
    cursor: CursorPagination
    link_header: LinkHeaderPagination
    page_number: PageNumberPagination
    def __init__(self, offset: _Optional[_Union[OffsetPagination, _Mapping]] = ..., cursor: _Optional[_Union[CursorPagination, _Mapping]] = ..., link_header: _Optional[_Union[LinkHeaderPagination, _Mapping]] = ..., page_number: _Optional[_Union[PageNumberPagination, _Mapping]] = ...) -> None: ...

class OffsetPagination(_message.Message):
    __slots__ = ("limit", "offset_field")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset_field: str
    def __init__(self, limit: _Optional[int] = ..., offset_field: _Optional[str] = ...) -> None: ...

class CursorPagination(_message.Message):
    __slots__ = ("cursor_field", "cursor_param")
    CURSOR_FIELD_FIELD_NUMBER: _ClassVar[int]
    CURSOR_PARAM_FIELD_NUMBER: _ClassVar[int]
    cursor_field: str
    cursor_param: str
    def __init__(self, cursor_field: _Optional[str] = ..., cursor_param: _Optional[str] = ...) -> None: ...

class LinkHeaderPagination(_message.Message):
    __slots__ = ("rel",)
    REL_FIELD_NUMBER: _ClassVar[int]
    rel: str
    def __init__(self, rel: _Optional[str] = ...) -> None: ...

class PageNumberPagination(_message.Message):
    __slots__ = ("page_size", "page_param")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_PARAM_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_param: str
    def __init__(self, page_size: _Optional[int] = ..., page_param: _Optional[str] = ...) -> None: ...

class RateLimitConfig(_message.Message):
    __slots__ = ("requests_per_second", "burst_size")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_SIZE_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: int
    burst_size: int
    def __init__(self, requests_per_second: _Optional[int] = ..., burst_size: _Optional[int] = ...) -> None: ...

class CreateFromArrowRequest(_message.Message):
    __slots__ = ("arrow_ipc", "name")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    name: str
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class UploadArrowChunk(_message.Message):
    __slots__ = ("data", "name")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    name: str
    def __init__(self, data: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class WebSocketSourceRequest(_message.Message):
    __slots__ = ("url", "headers", "schema_json", "reconnect_policy", "buffer_size", "format")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_POLICY_FIELD_NUMBER: _ClassVar[int]
    BUFFER_SIZE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    url: str
    headers: _containers.ScalarMap[str, str]
    schema_json: str
    reconnect_policy: ReconnectPolicy
    buffer_size: int
    format: MessageFormat
    def __init__(self, url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., schema_json: _Optional[str] = ..., reconnect_policy: _Optional[_Union[ReconnectPolicy, _Mapping]] = ..., buffer_size: _Optional[int] = ..., format: _Optional[_Union[MessageFormat, str]] = ...) -> None: ...

class ReconnectPolicy(_message.Message):
    __slots__ = ("max_retries", "initial_delay_ms", "max_delay_ms", "backoff_multiplier")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    initial_delay_ms: int
    max_delay_ms: int
    backoff_multiplier: float
    def __init__(self, max_retries: _Optional[int] = ..., initial_delay_ms: _Optional[int] = ..., max_delay_ms: _Optional[int] = ..., backoff_multiplier: _Optional[float] = ...) -> None: ...

class GrpcStreamRequest(_message.Message):
    __slots__ = ("endpoint", "service", "method", "request_proto", "metadata", "tls", "batch_rows", "max_wait_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PROTO_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    service: str
    method: str
    request_proto: bytes
    metadata: _containers.ScalarMap[str, str]
    tls: TlsConfig
    batch_rows: int
    max_wait_ms: int
    def __init__(self, endpoint: _Optional[str] = ..., service: _Optional[str] = ..., method: _Optional[str] = ..., request_proto: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tls: _Optional[_Union[TlsConfig, _Mapping]] = ..., batch_rows: _Optional[int] = ..., max_wait_ms: _Optional[int] = ...) -> None: ...

class TlsConfig(_message.Message):
    __slots__ = ("enabled", "ca_cert", "client_cert", "client_key")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    ca_cert: str
    client_cert: str
    client_key: str
    def __init__(self, enabled: _Optional[bool] = ..., ca_cert: _Optional[str] = ..., client_cert: _Optional[str] = ..., client_key: _Optional[str] = ...) -> None: ...

class MessageQueueRequest(_message.Message):
    __slots__ = ("type", "connection_string", "topic", "consumer_group", "schema_json", "format", "consumer_name", "start_id", "payload_field", "batch_rows", "max_wait_ms")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_STRING_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_NAME_FIELD_NUMBER: _ClassVar[int]
    START_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    type: MessageQueueType
    connection_string: str
    topic: str
    consumer_group: str
    schema_json: str
    format: MessageFormat
    consumer_name: str
    start_id: str
    payload_field: str
    batch_rows: int
    max_wait_ms: int
    def __init__(self, type: _Optional[_Union[MessageQueueType, str]] = ..., connection_string: _Optional[str] = ..., topic: _Optional[str] = ..., consumer_group: _Optional[str] = ..., schema_json: _Optional[str] = ..., format: _Optional[_Union[MessageFormat, str]] = ..., consumer_name: _Optional[str] = ..., start_id: _Optional[str] = ..., payload_field: _Optional[str] = ..., batch_rows: _Optional[int] = ..., max_wait_ms: _Optional[int] = ...) -> None: ...

class CaptureStreamRequest(_message.Message):
    __slots__ = ("max_rows", "max_duration_ms", "idle_ms", "name", "rest_api", "web_socket", "grpc", "message_queue")
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    IDLE_MS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REST_API_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_FIELD_NUMBER: _ClassVar[int]
    GRPC_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_QUEUE_FIELD_NUMBER: _ClassVar[int]
    max_rows: int
    max_duration_ms: int
    idle_ms: int
    name: str
    rest_api: RestApiRequest
    web_socket: WebSocketSourceRequest
    grpc: GrpcStreamRequest
    message_queue: MessageQueueRequest
    def __init__(self, max_rows: _Optional[int] = ..., max_duration_ms: _Optional[int] = ..., idle_ms: _Optional[int] = ..., name: _Optional[str] = ..., rest_api: _Optional[_Union[RestApiRequest, _Mapping]] = ..., web_socket: _Optional[_Union[WebSocketSourceRequest, _Mapping]] = ..., grpc: _Optional[_Union[GrpcStreamRequest, _Mapping]] = ..., message_queue: _Optional[_Union[MessageQueueRequest, _Mapping]] = ...) -> None: ...

class CaptureProgress(_message.Message):
    __slots__ = ("rows", "bytes", "elapsed_ms", "handle", "stopped")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    rows: int
    bytes: int
    elapsed_ms: int
    handle: DataFrameHandle
    stopped: CaptureStop
    def __init__(self, rows: _Optional[int] = ..., bytes: _Optional[int] = ..., elapsed_ms: _Optional[int] = ..., handle: _Optional[_Union[DataFrameHandle, _Mapping]] = ..., stopped: _Optional[_Union[CaptureStop, str]] = ...) -> None: ...

class SelectRequest(_message.Message):
    __slots__ = ("handle", "columns", "exprs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EXPRS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class FilterRequest(_message.Message):
    __slots__ = ("handle", "predicate")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    predicate: _expr_pb2.Expression
    def __init__(self, handle: _Optional[str] = ..., predicate: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ...) -> None: ...

class WithColumnRequest(_message.Message):
    __slots__ = ("handle", "name", "expr")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    name: str
    expr: _expr_pb2.Expression
    def __init__(self, handle: _Optional[str] = ..., name: _Optional[str] = ..., expr: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ...) -> None: ...

class WithColumnsRequest(_message.Message):
    __slots__ = ("handle", "columns", "exprs")
    class ColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _expr_pb2.Expression
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ...) -> None: ...
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EXPRS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.MessageMap[str, _expr_pb2.Expression]
    exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Mapping[str, _expr_pb2.Expression]] = ..., exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class DropRequest(_message.Message):
    __slots__ = ("handle", "columns")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("handle", "mapping")
    class MappingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    handle: str
    mapping: _containers.ScalarMap[str, str]
    def __init__(self, handle: _Optional[str] = ..., mapping: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SortColumn(_message.Message):
    __slots__ = ("name", "descending", "nulls_last")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    NULLS_LAST_FIELD_NUMBER: _ClassVar[int]
    name: str
    descending: bool
    nulls_last: bool
    def __init__(self, name: _Optional[str] = ..., descending: _Optional[bool] = ..., nulls_last: _Optional[bool] = ...) -> None: ...

class SortExpr(_message.Message):
    __slots__ = ("expr", "descending", "nulls_last")
    EXPR_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    NULLS_LAST_FIELD_NUMBER: _ClassVar[int]
    expr: _expr_pb2.Expression
    descending: bool
    nulls_last: bool
    def __init__(self, expr: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ..., descending: _Optional[bool] = ..., nulls_last: _Optional[bool] = ...) -> None: ...

class SortRequest(_message.Message):
    __slots__ = ("handle", "columns", "exprs", "maintain_order")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EXPRS_FIELD_NUMBER: _ClassVar[int]
    MAINTAIN_ORDER_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedCompositeFieldContainer[SortColumn]
    exprs: _containers.RepeatedCompositeFieldContainer[SortExpr]
    maintain_order: bool
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[SortColumn, _Mapping]]] = ..., exprs: _Optional[_Iterable[_Union[SortExpr, _Mapping]]] = ..., maintain_order: _Optional[bool] = ...) -> None: ...

class UniqueRequest(_message.Message):
    __slots__ = ("handle", "subset", "keep_first", "keep", "maintain_order")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SUBSET_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIRST_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    MAINTAIN_ORDER_FIELD_NUMBER: _ClassVar[int]
    handle: str
    subset: _containers.RepeatedScalarFieldContainer[str]
    keep_first: bool
    keep: UniqueKeep
    maintain_order: bool
    def __init__(self, handle: _Optional[str] = ..., subset: _Optional[_Iterable[str]] = ..., keep_first: _Optional[bool] = ..., keep: _Optional[_Union[UniqueKeep, str]] = ..., maintain_order: _Optional[bool] = ...) -> None: ...

class LimitRequest(_message.Message):
    __slots__ = ("handle", "n")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    handle: str
    n: int
    def __init__(self, handle: _Optional[str] = ..., n: _Optional[int] = ...) -> None: ...

class HeadRequest(_message.Message):
    __slots__ = ("handle", "n")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    handle: str
    n: int
    def __init__(self, handle: _Optional[str] = ..., n: _Optional[int] = ...) -> None: ...

class TailRequest(_message.Message):
    __slots__ = ("handle", "n")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    handle: str
    n: int
    def __init__(self, handle: _Optional[str] = ..., n: _Optional[int] = ...) -> None: ...

class SliceRequest(_message.Message):
    __slots__ = ("handle", "offset", "length", "to_end")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TO_END_FIELD_NUMBER: _ClassVar[int]
    handle: str
    offset: int
    length: int
    to_end: bool
    def __init__(self, handle: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., to_end: _Optional[bool] = ...) -> None: ...

class GroupByRequest(_message.Message):
    __slots__ = ("handle", "columns", "aggs", "maintain_order", "by_exprs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    AGGS_FIELD_NUMBER: _ClassVar[int]
    MAINTAIN_ORDER_FIELD_NUMBER: _ClassVar[int]
    BY_EXPRS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    aggs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    maintain_order: bool
    by_exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., aggs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ..., maintain_order: _Optional[bool] = ..., by_exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class GroupByHandle(_message.Message):
    __slots__ = ("handle", "group_columns", "error")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    GROUP_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    group_columns: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, handle: _Optional[str] = ..., group_columns: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class Aggregation(_message.Message):
    __slots__ = ("column", "alias", "function")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    column: str
    alias: str
    function: _expr_pb2.AggFunction
    def __init__(self, column: _Optional[str] = ..., alias: _Optional[str] = ..., function: _Optional[_Union[_expr_pb2.AggFunction, str]] = ...) -> None: ...

class AggRequest(_message.Message):
    __slots__ = ("handle", "aggregations", "exprs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPRS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    aggregations: _containers.RepeatedCompositeFieldContainer[Aggregation]
    exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., aggregations: _Optional[_Iterable[_Union[Aggregation, _Mapping]]] = ..., exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class PivotRequest(_message.Message):
    __slots__ = ("handle", "index", "columns", "values", "aggregate", "sort_columns", "separator", "on_columns", "index_columns", "values_columns")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    SORT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    ON_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    INDEX_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    VALUES_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    index: str
    columns: str
    values: str
    aggregate: _expr_pb2.AggFunction
    sort_columns: bool
    separator: str
    on_columns: _containers.RepeatedScalarFieldContainer[str]
    index_columns: _containers.RepeatedScalarFieldContainer[str]
    values_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handle: _Optional[str] = ..., index: _Optional[str] = ..., columns: _Optional[str] = ..., values: _Optional[str] = ..., aggregate: _Optional[_Union[_expr_pb2.AggFunction, str]] = ..., sort_columns: _Optional[bool] = ..., separator: _Optional[str] = ..., on_columns: _Optional[_Iterable[str]] = ..., index_columns: _Optional[_Iterable[str]] = ..., values_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class MeltRequest(_message.Message):
    __slots__ = ("handle", "id_vars", "value_vars", "variable_name", "value_name")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ID_VARS_FIELD_NUMBER: _ClassVar[int]
    VALUE_VARS_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_NAME_FIELD_NUMBER: _ClassVar[int]
    handle: str
    id_vars: _containers.RepeatedScalarFieldContainer[str]
    value_vars: _containers.RepeatedScalarFieldContainer[str]
    variable_name: str
    value_name: str
    def __init__(self, handle: _Optional[str] = ..., id_vars: _Optional[_Iterable[str]] = ..., value_vars: _Optional[_Iterable[str]] = ..., variable_name: _Optional[str] = ..., value_name: _Optional[str] = ...) -> None: ...

class JoinOn(_message.Message):
    __slots__ = ("columns",)
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, columns: _Optional[_Iterable[str]] = ...) -> None: ...

class JoinLeftRight(_message.Message):
    __slots__ = ("left", "right")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    left: _containers.RepeatedScalarFieldContainer[str]
    right: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, left: _Optional[_Iterable[str]] = ..., right: _Optional[_Iterable[str]] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("left_handle", "right_handle", "on", "left_right", "join_type", "suffix", "coalesce", "how")
    LEFT_HANDLE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_HANDLE_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    LEFT_RIGHT_FIELD_NUMBER: _ClassVar[int]
    JOIN_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    COALESCE_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    left_handle: str
    right_handle: str
    on: JoinOn
    left_right: JoinLeftRight
    join_type: JoinType
    suffix: str
    coalesce: bool
    how: JoinHow
    def __init__(self, left_handle: _Optional[str] = ..., right_handle: _Optional[str] = ..., on: _Optional[_Union[JoinOn, _Mapping]] = ..., left_right: _Optional[_Union[JoinLeftRight, _Mapping]] = ..., join_type: _Optional[_Union[JoinType, str]] = ..., suffix: _Optional[str] = ..., coalesce: _Optional[bool] = ..., how: _Optional[_Union[JoinHow, str]] = ...) -> None: ...

class CrossRequest(_message.Message):
    __slots__ = ("left_handle", "right_handle", "suffix")
    LEFT_HANDLE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_HANDLE_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    left_handle: str
    right_handle: str
    suffix: str
    def __init__(self, left_handle: _Optional[str] = ..., right_handle: _Optional[str] = ..., suffix: _Optional[str] = ...) -> None: ...

class SqlRequest(_message.Message):
    __slots__ = ("query", "tables")
    class TablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    query: str
    tables: _containers.ScalarMap[str, str]
    def __init__(self, query: _Optional[str] = ..., tables: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CloneRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class AsTimeSeriesRequest(_message.Message):
    __slots__ = ("handle", "timestamp_column", "frequency", "ensure_sorted", "by")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    ENSURE_SORTED_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    handle: str
    timestamp_column: str
    frequency: str
    ensure_sorted: bool
    by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handle: _Optional[str] = ..., timestamp_column: _Optional[str] = ..., frequency: _Optional[str] = ..., ensure_sorted: _Optional[bool] = ..., by: _Optional[_Iterable[str]] = ...) -> None: ...

class TimeSeriesHandle(_message.Message):
    __slots__ = ("handle", "timestamp_column", "frequency", "error")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    timestamp_column: str
    frequency: str
    error: str
    def __init__(self, handle: _Optional[str] = ..., timestamp_column: _Optional[str] = ..., frequency: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ResampleRequest(_message.Message):
    __slots__ = ("handle", "frequency", "aggregations", "label", "offset", "exprs", "by", "closed", "window_label", "include_boundaries", "time_column", "period")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    EXPRS_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_LABEL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BOUNDARIES_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    handle: str
    frequency: str
    aggregations: _containers.RepeatedCompositeFieldContainer[Aggregation]
    label: str
    offset: str
    exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    by: _containers.RepeatedScalarFieldContainer[str]
    closed: ClosedWindow
    window_label: WindowLabel
    include_boundaries: bool
    time_column: str
    period: str
    def __init__(self, handle: _Optional[str] = ..., frequency: _Optional[str] = ..., aggregations: _Optional[_Iterable[_Union[Aggregation, _Mapping]]] = ..., label: _Optional[str] = ..., offset: _Optional[str] = ..., exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ..., by: _Optional[_Iterable[str]] = ..., closed: _Optional[_Union[ClosedWindow, str]] = ..., window_label: _Optional[_Union[WindowLabel, str]] = ..., include_boundaries: _Optional[bool] = ..., time_column: _Optional[str] = ..., period: _Optional[str] = ...) -> None: ...

class RollingAggregation(_message.Message):
    __slots__ = ("column", "alias", "function")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    column: str
    alias: str
    function: _expr_pb2.AggFunction
    def __init__(self, column: _Optional[str] = ..., alias: _Optional[str] = ..., function: _Optional[_Union[_expr_pb2.AggFunction, str]] = ...) -> None: ...

class RollingWindowRequest(_message.Message):
    __slots__ = ("handle", "window_size", "aggregations", "min_periods", "center", "time_column", "suffix", "closed", "every_numeric_column")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_PERIODS_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    EVERY_NUMERIC_COLUMN_FIELD_NUMBER: _ClassVar[int]
    handle: str
    window_size: str
    aggregations: _containers.RepeatedCompositeFieldContainer[RollingAggregation]
    min_periods: int
    center: bool
    time_column: str
    suffix: str
    closed: ClosedWindow
    every_numeric_column: _expr_pb2.AggFunction
    def __init__(self, handle: _Optional[str] = ..., window_size: _Optional[str] = ..., aggregations: _Optional[_Iterable[_Union[RollingAggregation, _Mapping]]] = ..., min_periods: _Optional[int] = ..., center: _Optional[bool] = ..., time_column: _Optional[str] = ..., suffix: _Optional[str] = ..., closed: _Optional[_Union[ClosedWindow, str]] = ..., every_numeric_column: _Optional[_Union[_expr_pb2.AggFunction, str]] = ...) -> None: ...

class LagColumn(_message.Message):
    __slots__ = ("column", "periods", "alias")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    column: str
    periods: int
    alias: str
    def __init__(self, column: _Optional[str] = ..., periods: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...

class LagRequest(_message.Message):
    __slots__ = ("handle", "columns", "every_column_periods", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EVERY_COLUMN_PERIODS_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedCompositeFieldContainer[LagColumn]
    every_column_periods: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[LagColumn, _Mapping]]] = ..., every_column_periods: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class LeadRequest(_message.Message):
    __slots__ = ("handle", "columns", "every_column_periods", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EVERY_COLUMN_PERIODS_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedCompositeFieldContainer[LagColumn]
    every_column_periods: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[LagColumn, _Mapping]]] = ..., every_column_periods: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class DiffRequest(_message.Message):
    __slots__ = ("handle", "columns", "periods", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    periods: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., periods: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class PctChangeRequest(_message.Message):
    __slots__ = ("handle", "columns", "periods", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    periods: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., periods: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class AsofJoinRequest(_message.Message):
    __slots__ = ("left_handle", "right_handle", "left_on", "right_on", "by", "tolerance", "strategy", "suffix", "on", "by_left", "by_right")
    LEFT_HANDLE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_HANDLE_FIELD_NUMBER: _ClassVar[int]
    LEFT_ON_FIELD_NUMBER: _ClassVar[int]
    RIGHT_ON_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    BY_LEFT_FIELD_NUMBER: _ClassVar[int]
    BY_RIGHT_FIELD_NUMBER: _ClassVar[int]
    left_handle: str
    right_handle: str
    left_on: str
    right_on: str
    by: _containers.RepeatedScalarFieldContainer[str]
    tolerance: str
    strategy: str
    suffix: str
    on: str
    by_left: _containers.RepeatedScalarFieldContainer[str]
    by_right: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, left_handle: _Optional[str] = ..., right_handle: _Optional[str] = ..., left_on: _Optional[str] = ..., right_on: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ..., tolerance: _Optional[str] = ..., strategy: _Optional[str] = ..., suffix: _Optional[str] = ..., on: _Optional[str] = ..., by_left: _Optional[_Iterable[str]] = ..., by_right: _Optional[_Iterable[str]] = ...) -> None: ...

class FillValue(_message.Message):
    __slots__ = ("int_val", "float_val", "string_val")
    INT_VAL_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VAL_FIELD_NUMBER: _ClassVar[int]
    STRING_VAL_FIELD_NUMBER: _ClassVar[int]
    int_val: int
    float_val: float
    string_val: str
    def __init__(self, int_val: _Optional[int] = ..., float_val: _Optional[float] = ..., string_val: _Optional[str] = ...) -> None: ...

class FillNullRequest(_message.Message):
    __slots__ = ("handle", "value", "method", "columns", "limit", "fill_expr")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILL_EXPR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    value: FillValue
    method: FillMethod
    columns: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    fill_expr: _expr_pb2.Expression
    def __init__(self, handle: _Optional[str] = ..., value: _Optional[_Union[FillValue, _Mapping]] = ..., method: _Optional[_Union[FillMethod, str]] = ..., columns: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., fill_expr: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ...) -> None: ...

class FillNanRequest(_message.Message):
    __slots__ = ("handle", "value", "method", "columns", "fill_expr")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FILL_EXPR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    value: float
    method: FillMethod
    columns: _containers.RepeatedScalarFieldContainer[str]
    fill_expr: _expr_pb2.Expression
    def __init__(self, handle: _Optional[str] = ..., value: _Optional[float] = ..., method: _Optional[_Union[FillMethod, str]] = ..., columns: _Optional[_Iterable[str]] = ..., fill_expr: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("handle", "method", "columns", "interpolation")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATION_FIELD_NUMBER: _ClassVar[int]
    handle: str
    method: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    interpolation: InterpolationMethod
    def __init__(self, handle: _Optional[str] = ..., method: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., interpolation: _Optional[_Union[InterpolationMethod, str]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("handle", "columns", "percentiles")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    percentiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., percentiles: _Optional[_Iterable[float]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("handle", "columns")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class ColumnStats(_message.Message):
    __slots__ = ("data_type", "count", "null_count", "n_unique", "min", "max", "mean", "std")
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    N_UNIQUE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    data_type: str
    count: int
    null_count: int
    n_unique: int
    min: str
    max: str
    mean: float
    std: float
    def __init__(self, data_type: _Optional[str] = ..., count: _Optional[int] = ..., null_count: _Optional[int] = ..., n_unique: _Optional[int] = ..., min: _Optional[str] = ..., max: _Optional[str] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("stats", "handle")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ColumnStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ColumnStats, _Mapping]] = ...) -> None: ...
    STATS_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.MessageMap[str, ColumnStats]
    handle: str
    def __init__(self, stats: _Optional[_Mapping[str, ColumnStats]] = ..., handle: _Optional[str] = ...) -> None: ...

class CollectRequest(_message.Message):
    __slots__ = ("handle", "limit")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    handle: str
    limit: int
    def __init__(self, handle: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ArrowBatch(_message.Message):
    __slots__ = ("arrow_ipc", "error", "alignment")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    error: str
    alignment: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., error: _Optional[str] = ..., alignment: _Optional[bytes] = ...) -> None: ...

class CollectStreamingRequest(_message.Message):
    __slots__ = ("handle", "batch_size", "limit")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    handle: str
    batch_size: int
    limit: int
    def __init__(self, handle: _Optional[str] = ..., batch_size: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class WriteParquetRequest(_message.Message):
    __slots__ = ("handle", "path", "compression", "row_group_size", "append")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    ROW_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    handle: str
    path: str
    compression: str
    row_group_size: int
    append: bool
    def __init__(self, handle: _Optional[str] = ..., path: _Optional[str] = ..., compression: _Optional[str] = ..., row_group_size: _Optional[int] = ..., append: _Optional[bool] = ...) -> None: ...

class WriteCsvRequest(_message.Message):
    __slots__ = ("handle", "path", "include_header", "separator", "append")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HEADER_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    handle: str
    path: str
    include_header: bool
    separator: str
    append: bool
    def __init__(self, handle: _Optional[str] = ..., path: _Optional[str] = ..., include_header: _Optional[bool] = ..., separator: _Optional[str] = ..., append: _Optional[bool] = ...) -> None: ...

class WriteIpcRequest(_message.Message):
    __slots__ = ("handle", "path", "compression", "append")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    handle: str
    path: str
    compression: str
    append: bool
    def __init__(self, handle: _Optional[str] = ..., path: _Optional[str] = ..., compression: _Optional[str] = ..., append: _Optional[bool] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("success", "error", "rows_written")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ROWS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    rows_written: int
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., rows_written: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("handle", "optimized", "format_tree")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_TREE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    optimized: bool
    format_tree: bool
    def __init__(self, handle: _Optional[str] = ..., optimized: _Optional[bool] = ..., format_tree: _Optional[bool] = ...) -> None: ...

class QueryStats(_message.Message):
    __slots__ = ("estimated_rows", "estimated_bytes", "partitions")
    ESTIMATED_ROWS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    estimated_rows: int
    estimated_bytes: int
    partitions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, estimated_rows: _Optional[int] = ..., estimated_bytes: _Optional[int] = ..., partitions: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("logical_plan", "physical_plan", "optimizations", "stats")
    LOGICAL_PLAN_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_PLAN_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATIONS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    logical_plan: str
    physical_plan: str
    optimizations: _containers.RepeatedScalarFieldContainer[str]
    stats: QueryStats
    def __init__(self, logical_plan: _Optional[str] = ..., physical_plan: _Optional[str] = ..., optimizations: _Optional[_Iterable[str]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class GetSchemaRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class ColumnInfo(_message.Message):
    __slots__ = ("name", "data_type", "nullable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    data_type: str
    nullable: bool
    def __init__(self, name: _Optional[str] = ..., data_type: _Optional[str] = ..., nullable: _Optional[bool] = ...) -> None: ...

class SchemaResponse(_message.Message):
    __slots__ = ("schema_json", "columns")
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    schema_json: str
    columns: _containers.RepeatedCompositeFieldContainer[ColumnInfo]
    def __init__(self, schema_json: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[ColumnInfo, _Mapping]]] = ...) -> None: ...

class GetShapeRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class ShapeResponse(_message.Message):
    __slots__ = ("rows", "columns")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    columns: int
    def __init__(self, rows: _Optional[int] = ..., columns: _Optional[int] = ...) -> None: ...

class DropHandleRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class DropHandleResponse(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("handles",)
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handles: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("alive",)
    class AliveEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    alive: _containers.ScalarMap[str, bool]
    def __init__(self, alive: _Optional[_Mapping[str, bool]] = ...) -> None: ...

class PersistRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class PersistResponse(_message.Message):
    __slots__ = ("rows", "stored_bytes")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    rows: int
    stored_bytes: int
    def __init__(self, rows: _Optional[int] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class PinRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class PinResponse(_message.Message):
    __slots__ = ("pinned",)
    PINNED_FIELD_NUMBER: _ClassVar[int]
    pinned: bool
    def __init__(self, pinned: _Optional[bool] = ...) -> None: ...

class HandleInfoRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class HandleInfo(_message.Message):
    __slots__ = ("handle", "plan_id", "created_unix_ms", "last_access_unix_ms", "expires_unix_ms", "pinned", "schema", "schema_hash", "rows", "bytes", "artifacts", "persisted")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    PERSISTED_FIELD_NUMBER: _ClassVar[int]
    handle: str
    plan_id: str
    created_unix_ms: int
    last_access_unix_ms: int
    expires_unix_ms: int
    pinned: bool
    schema: _containers.RepeatedCompositeFieldContainer[Field]
    schema_hash: str
    rows: int
    bytes: int
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    persisted: bool
    def __init__(self, handle: _Optional[str] = ..., plan_id: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., last_access_unix_ms: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ..., pinned: _Optional[bool] = ..., schema: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., schema_hash: _Optional[str] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., artifacts: _Optional[_Iterable[str]] = ..., persisted: _Optional[bool] = ...) -> None: ...
