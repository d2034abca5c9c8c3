from polaroid.v1 import dataframe_pb2 as _dataframe_pb2
from polaroid.v1 import expr_pb2 as _expr_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FillNullStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILL_NULL_STRATEGY_UNSPECIFIED: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_FORWARD: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_BACKWARD: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_MIN: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_MAX: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_MEAN: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_ZERO: _ClassVar[FillNullStrategy]
    FILL_NULL_STRATEGY_ONE: _ClassVar[FillNullStrategy]
FILL_NULL_STRATEGY_UNSPECIFIED: FillNullStrategy
FILL_NULL_STRATEGY_FORWARD: FillNullStrategy
FILL_NULL_STRATEGY_BACKWARD: FillNullStrategy
FILL_NULL_STRATEGY_MIN: FillNullStrategy
FILL_NULL_STRATEGY_MAX: FillNullStrategy
FILL_NULL_STRATEGY_MEAN: FillNullStrategy
FILL_NULL_STRATEGY_ZERO: FillNullStrategy
FILL_NULL_STRATEGY_ONE: FillNullStrategy

class PlanStep(_message.Message):
    __slots__ = ("read_parquet", "read_csv_v0", "read_ipc", "read_json", "read_rest_api_v0", "upload", "select", "filter", "with_column", "with_columns_v0", "drop", "rename", "sort_v0", "unique_v0", "limit", "head", "tail", "slice_v0", "group_by", "agg_v0", "pivot_v0", "melt", "join_v0", "cross", "sql", "as_time_series_v0", "resample_v0", "rolling_window_v0", "lag_v0", "lead_v0", "diff_v0", "pct_change_v0", "asof_join_v0", "fill_null_v0", "fill_nan_v0", "interpolate_v0", "describe_v0", "stats", "read_csv", "agg", "as_time_series", "resample", "rolling_window", "read_rest_api", "with_columns", "sort", "unique", "slice", "diff", "pct_change", "pivot", "join", "lag", "lead", "asof_join", "fill_null", "fill_nan", "interpolate", "describe")
    READ_PARQUET_FIELD_NUMBER: _ClassVar[int]
    READ_CSV_V0_FIELD_NUMBER: _ClassVar[int]
    READ_IPC_FIELD_NUMBER: _ClassVar[int]
    READ_JSON_FIELD_NUMBER: _ClassVar[int]
    READ_REST_API_V0_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WITH_COLUMN_FIELD_NUMBER: _ClassVar[int]
    WITH_COLUMNS_V0_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    RENAME_FIELD_NUMBER: _ClassVar[int]
    SORT_V0_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_V0_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SLICE_V0_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    AGG_V0_FIELD_NUMBER: _ClassVar[int]
    PIVOT_V0_FIELD_NUMBER: _ClassVar[int]
    MELT_FIELD_NUMBER: _ClassVar[int]
    JOIN_V0_FIELD_NUMBER: _ClassVar[int]
    CROSS_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    AS_TIME_SERIES_V0_FIELD_NUMBER: _ClassVar[int]
    RESAMPLE_V0_FIELD_NUMBER: _ClassVar[int]
    ROLLING_WINDOW_V0_FIELD_NUMBER: _ClassVar[int]
    LAG_V0_FIELD_NUMBER: _ClassVar[int]
    LEAD_V0_FIELD_NUMBER: _ClassVar[int]
    DIFF_V0_FIELD_NUMBER: _ClassVar[int]
    PCT_CHANGE_V0_FIELD_NUMBER: _ClassVar[int]
    ASOF_JOIN_V0_FIELD_NUMBER: _ClassVar[int]
    FILL_NULL_V0_FIELD_NUMBER: _ClassVar[int]
    FILL_NAN_V0_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATE_V0_FIELD_NUMBER: _ClassVar[int]
    DESCRIBE_V0_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    READ_CSV_FIELD_NUMBER: _ClassVar[int]
    AGG_FIELD_NUMBER: _ClassVar[int]
    AS_TIME_SERIES_FIELD_NUMBER: _ClassVar[int]
    RESAMPLE_FIELD_NUMBER: _ClassVar[int]
    ROLLING_WINDOW_FIELD_NUMBER: _ClassVar[int]
    READ_REST_API_FIELD_NUMBER: _ClassVar[int]
    WITH_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    PCT_CHANGE_FIELD_NUMBER: _ClassVar[int]
    PIVOT_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    LEAD_FIELD_NUMBER: _ClassVar[int]
    ASOF_JOIN_FIELD_NUMBER: _ClassVar[int]
    FILL_NULL_FIELD_NUMBER: _ClassVar[int]
    FILL_NAN_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIBE_FIELD_NUMBER: _ClassVar[int]
    read_parquet: _dataframe_pb2.ReadParquetRequest
    read_csv_v0: ReadCsvStepV0
    read_ipc: _dataframe_pb2.ReadIpcRequest
    read_json: _dataframe_pb2.ReadJsonRequest
    read_rest_api_v0: RestApiStepV0
    upload: UploadedArtifact
    select: _dataframe_pb2.SelectRequest
    filter: _dataframe_pb2.FilterRequest
    with_column: _dataframe_pb2.WithColumnRequest
    with_columns_v0: WithColumnsStepV0
    drop: _dataframe_pb2.DropRequest
    rename: _dataframe_pb2.RenameRequest
    sort_v0: SortStepV0
    unique_v0: UniqueStepV0
    limit: _dataframe_pb2.LimitRequest
    head: _dataframe_pb2.HeadRequest
    tail: _dataframe_pb2.TailRequest
    slice_v0: SliceStepV0
    group_by: _dataframe_pb2.GroupByRequest
    agg_v0: AggStepV0
    pivot_v0: PivotStepV0
    melt: _dataframe_pb2.MeltRequest
    join_v0: JoinStepV0
    cross: _dataframe_pb2.CrossRequest
    sql: _dataframe_pb2.SqlRequest
    as_time_series_v0: AsTimeSeriesStepV0
    resample_v0: ResampleStepV0
    rolling_window_v0: RollingWindowStepV0
    lag_v0: ShiftStepV0
    lead_v0: ShiftStepV0
    diff_v0: DiffStepV0
    pct_change_v0: PctChangeStepV0
    asof_join_v0: AsofJoinStepV0
    fill_null_v0: FillNullStepV0
    fill_nan_v0: FillNanStepV0
    interpolate_v0: InterpolateStepV0
    describe_v0: DescribeStepV0
    stats: _dataframe_pb2.GetStatsRequest
    read_csv: _dataframe_pb2.ReadCsvRequest
    agg: _dataframe_pb2.AggRequest
    as_time_series: _dataframe_pb2.AsTimeSeriesRequest
    resample: _dataframe_pb2.ResampleRequest
    rolling_window: _dataframe_pb2.RollingWindowRequest
    read_rest_api: _dataframe_pb2.RestApiRequest
    with_columns: _dataframe_pb2.WithColumnsRequest
    sort: _dataframe_pb2.SortRequest
    unique: _dataframe_pb2.UniqueRequest
    slice: _dataframe_pb2.SliceRequest
    diff: _dataframe_pb2.DiffRequest
    pct_change: _dataframe_pb2.PctChangeRequest
    pivot: _dataframe_pb2.PivotRequest
    join: _dataframe_pb2.JoinRequest
    lag: _dataframe_pb2.LagRequest
    lead: _dataframe_pb2.LeadRequest
    asof_join: _dataframe_pb2.AsofJoinRequest
    fill_null: _dataframe_pb2.FillNullRequest
    fill_nan: _dataframe_pb2.FillNanRequest
    interpolate: _dataframe_pb2.InterpolateRequest
    describe: _dataframe_pb2.DescribeRequest
    def __init__(self, read_parquet: _Optional[_Union[_dataframe_pb2.ReadParquetRequest, _Mapping]] = ..., read_csv_v0: _Optional[_Union[ReadCsvStepV0, _Mapping]] = ..., read_ipc: _Optional[_Union[_dataframe_pb2.ReadIpcRequest, _Mapping]] = ..., read_json: _Optional[_Union[_dataframe_pb2.ReadJsonRequest, _Mapping]] = ..., read_rest_api_v0: _Optional[_Union[RestApiStepV0, _Mapping]] = ..., upload: _Optional[_Union[UploadedArtifact, _Mapping]] = ..., select: _Optional[_Union[_dataframe_pb2.SelectRequest, _Mapping]] = ..., filter: _Optional[_Union[_dataframe_pb2.FilterRequest, _Mapping]] = ..., with_column: _Optional[_Union[_dataframe_pb2.WithColumnRequest, _Mapping]] = ..., with_columns_v0: _Optional[_Union[WithColumnsStepV0, _Mapping]] = ..., drop: _Optional[_Union[_dataframe_pb2.DropRequest, _Mapping]] = ..., rename: _Optional[_Union[_dataframe_pb2.RenameRequest, _Mapping]] = ..., sort_v0: _Optional[_Union[SortStepV0, _Mapping]] = ..., unique_v0: _Optional[_Union[UniqueStepV0, _Mapping]] = ..., limit: _Optional[_Union[_dataframe_pb2.LimitRequest, _Mapping]] = ..., head: _Optional[_Union[_dataframe_pb2.HeadRequest, _Mapping]] = ..., tail: _Optional[_Union[_dataframe_pb2.TailRequest, _Mapping]] = ..., slice_v0: _Optional[_Union[SliceStepV0, _Mapping]] = ..., group_by: _Optional[_Union[_dataframe_pb2.GroupByRequest, _Mapping]] = ..., agg_v0: _Optional[_Union[AggStepV0, _Mapping]] = ..., pivot_v0: _Optional[_Union[PivotStepV0, _Mapping]] = ..., melt: _Optional[_Union[_dataframe_pb2.MeltRequest, _Mapping]] = ..., join_v0: _Optional[_Union[JoinStepV0, _Mapping]] = ..., cross: _Optional[_Union[_dataframe_pb2.CrossRequest, _Mapping]] = ..., sql: _Optional[_Union[_dataframe_pb2.SqlRequest, _Mapping]] = ..., as_time_series_v0: _Optional[_Union[AsTimeSeriesStepV0, _Mapping]] = ..., resample_v0: _Optional[_Union[ResampleStepV0, _Mapping]] = ..., rolling_window_v0: _Optional[_Union[RollingWindowStepV0, _Mapping]] = ..., lag_v0: _Optional[_Union[ShiftStepV0, _Mapping]] = ..., lead_v0: _Optional[_Union[ShiftStepV0, _Mapping]] = ..., diff_v0: _Optional[_Union[DiffStepV0, _Mapping]] = ..., pct_change_v0: _Optional[_Union[PctChangeStepV0, _Mapping]] = ..., asof_join_v0: _Optional[_Union[AsofJoinStepV0, _Mapping]] = ..., fill_null_v0: _Optional[_Union[FillNullStepV0, _Mapping]] = ..., fill_nan_v0: _Optional[_Union[FillNanStepV0, _Mapping]] = ..., interpolate_v0: _Optional[_Union[InterpolateStepV0, _Mapping]] = ..., describe_v0: _Optional[_Union[DescribeStepV0, _Mapping]] = ..., stats: _Optional[_Union[_dataframe_pb2.GetStatsRequest, _Mapping]] = ..., read_csv: _Optional[_Union[_dataframe_pb2.ReadCsvRequest, _Mapping]] = ..., agg: _Optional[_Union[_dataframe_pb2.AggRequest, _Mapping]] = ..., as_time_series: _Optional[_Union[_dataframe_pb2.AsTimeSeriesRequest, _Mapping]] = ..., resample: _Optional[_Union[_dataframe_pb2.ResampleRequest, _Mapping]] = ..., rolling_window: _Optional[_Union[_dataframe_pb2.RollingWindowRequest, _Mapping]] = ..., read_rest_api: _Optional[_Union[_dataframe_pb2.RestApiRequest, _Mapping]] = ..., with_columns: _Optional[_Union[_dataframe_pb2.WithColumnsRequest, _Mapping]] = ..., sort: _Optional[_Union[_dataframe_pb2.SortRequest, _Mapping]] = ..., unique: _Optional[_Union[_dataframe_pb2.UniqueRequest, _Mapping]] = ..., slice: _Optional[_Union[_dataframe_pb2.SliceRequest, _Mapping]] = ..., diff: _Optional[_Union[_dataframe_pb2.DiffRequest, _Mapping]] = ..., pct_change: _Optional[_Union[_dataframe_pb2.PctChangeRequest, _Mapping]] = ..., pivot: _Optional[_Union[_dataframe_pb2.PivotRequest, _Mapping]] = ..., join: _Optional[_Union[_dataframe_pb2.JoinRequest, _Mapping]] = ..., lag: _Optional[_Union[_dataframe_pb2.LagRequest, _Mapping]] = ..., lead: _Optional[_Union[_dataframe_pb2.LeadRequest, _Mapping]] = ..., asof_join: _Optional[_Union[_dataframe_pb2.AsofJoinRequest, _Mapping]] = ..., fill_null: _Optional[_Union[_dataframe_pb2.FillNullRequest, _Mapping]] = ..., fill_nan: _Optional[_Union[_dataframe_pb2.FillNanRequest, _Mapping]] = ..., interpolate: _Optional[_Union[_dataframe_pb2.InterpolateRequest, _Mapping]] = ..., describe: _Optional[_Union[_dataframe_pb2.DescribeRequest, _Mapping]] = ...) -> None: ...

class ReadCsvStepV0(_message.Message):
    __slots__ = ("path", "has_header", "separator", "quote_char", "skip_rows", "n_rows", "columns", "schema", "infer_schema_length", "null_values", "try_parse_dates")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HAS_HEADER_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    QUOTE_CHAR_FIELD_NUMBER: _ClassVar[int]
    SKIP_ROWS_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    INFER_SCHEMA_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUES_FIELD_NUMBER: _ClassVar[int]
    TRY_PARSE_DATES_FIELD_NUMBER: _ClassVar[int]
    path: str
    has_header: bool
    separator: str
    quote_char: str
    skip_rows: int
    n_rows: int
    columns: _containers.RepeatedScalarFieldContainer[str]
    schema: _containers.RepeatedCompositeFieldContainer[_dataframe_pb2.Field]
    infer_schema_length: int
    null_values: _containers.RepeatedScalarFieldContainer[str]
    try_parse_dates: bool
    def __init__(self, path: _Optional[str] = ..., has_header: _Optional[bool] = ..., separator: _Optional[str] = ..., quote_char: _Optional[str] = ..., skip_rows: _Optional[int] = ..., n_rows: _Optional[int] = ..., columns: _Optional[_Iterable[str]] = ..., schema: _Optional[_Iterable[_Union[_dataframe_pb2.Field, _Mapping]]] = ..., infer_schema_length: _Optional[int] = ..., null_values: _Optional[_Iterable[str]] = ..., try_parse_dates: _Optional[bool] = ...) -> None: ...

class AggStepV0(_message.Message):
    __slots__ = ("handle", "aggs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    AGGS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    aggs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., aggs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class AsTimeSeriesStepV0(_message.Message):
    __slots__ = ("handle", "time_column", "by")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    handle: str
    time_column: str
    by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handle: _Optional[str] = ..., time_column: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ...) -> None: ...

class ResampleStepV0(_message.Message):
    __slots__ = ("handle", "time_column", "every", "period", "offset", "aggs", "by", "closed", "label", "include_boundaries")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    AGGS_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BOUNDARIES_FIELD_NUMBER: _ClassVar[int]
    handle: str
    time_column: str
    every: str
    period: str
    offset: str
    aggs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    by: _containers.RepeatedScalarFieldContainer[str]
    closed: _dataframe_pb2.ClosedWindow
    label: _dataframe_pb2.WindowLabel
    include_boundaries: bool
    def __init__(self, handle: _Optional[str] = ..., time_column: _Optional[str] = ..., every: _Optional[str] = ..., period: _Optional[str] = ..., offset: _Optional[str] = ..., aggs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ..., by: _Optional[_Iterable[str]] = ..., closed: _Optional[_Union[_dataframe_pb2.ClosedWindow, str]] = ..., label: _Optional[_Union[_dataframe_pb2.WindowLabel, str]] = ..., include_boundaries: _Optional[bool] = ...) -> None: ...

class RollingWindowStepV0(_message.Message):
    __slots__ = ("handle", "columns", "function", "window_size", "period", "time_column", "min_periods", "center", "suffix", "closed")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    MIN_PERIODS_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    function: _expr_pb2.RollingFunction
    window_size: int
    period: str
    time_column: str
    min_periods: int
    center: bool
    suffix: str
    closed: _dataframe_pb2.ClosedWindow
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., function: _Optional[_Union[_expr_pb2.RollingFunction, str]] = ..., window_size: _Optional[int] = ..., period: _Optional[str] = ..., time_column: _Optional[str] = ..., min_periods: _Optional[int] = ..., center: _Optional[bool] = ..., suffix: _Optional[str] = ..., closed: _Optional[_Union[_dataframe_pb2.ClosedWindow, str]] = ...) -> None: ...

class RestApiStepV0(_message.Message):
    __slots__ = ("url", "headers", "method", "body", "pagination", "schema", "rate_limit", "format", "timeout_ms", "records_path")
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
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PATH_FIELD_NUMBER: _ClassVar[int]
    url: str
    headers: _containers.ScalarMap[str, str]
    method: str
    body: str
    pagination: RestPaginationV0
    schema: _containers.RepeatedCompositeFieldContainer[_dataframe_pb2.Field]
    rate_limit: RestRateLimitV0
    format: str
    timeout_ms: int
    records_path: str
    def __init__(self, url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., method: _Optional[str] = ..., body: _Optional[str] = ..., pagination: _Optional[_Union[RestPaginationV0, _Mapping]] = ..., schema: _Optional[_Iterable[_Union[_dataframe_pb2.Field, _Mapping]]] = ..., rate_limit: _Optional[_Union[RestRateLimitV0, _Mapping]] = ..., format: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., records_path: _Optional[str] = ...) -> None: ...

class RestPaginationV0(_message.Message):
    __slots__ = ("page_param", "start_page", "max_pages", "page_size_param", "page_size")
    PAGE_PARAM_FIELD_NUMBER: _ClassVar[int]
    START_PAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_PARAM_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_param: str
    start_page: int
    max_pages: int
    page_size_param: str
    page_size: int
    def __init__(self, page_param: _Optional[str] = ..., start_page: _Optional[int] = ..., max_pages: _Optional[int] = ..., page_size_param: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class RestRateLimitV0(_message.Message):
    __slots__ = ("requests_per_second",)
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: float
    def __init__(self, requests_per_second: _Optional[float] = ...) -> None: ...

class WithColumnsStepV0(_message.Message):
    __slots__ = ("handle", "exprs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    EXPRS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class SortStepV0(_message.Message):
    __slots__ = ("handle", "by", "descending", "nulls_last", "maintain_order", "by_exprs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    NULLS_LAST_FIELD_NUMBER: _ClassVar[int]
    MAINTAIN_ORDER_FIELD_NUMBER: _ClassVar[int]
    BY_EXPRS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    by: _containers.RepeatedScalarFieldContainer[str]
    descending: _containers.RepeatedScalarFieldContainer[bool]
    nulls_last: _containers.RepeatedScalarFieldContainer[bool]
    maintain_order: bool
    by_exprs: _containers.RepeatedCompositeFieldContainer[_expr_pb2.Expression]
    def __init__(self, handle: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ..., descending: _Optional[_Iterable[bool]] = ..., nulls_last: _Optional[_Iterable[bool]] = ..., maintain_order: _Optional[bool] = ..., by_exprs: _Optional[_Iterable[_Union[_expr_pb2.Expression, _Mapping]]] = ...) -> None: ...

class UniqueStepV0(_message.Message):
    __slots__ = ("handle", "subset", "keep", "maintain_order")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SUBSET_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    MAINTAIN_ORDER_FIELD_NUMBER: _ClassVar[int]
    handle: str
    subset: _containers.RepeatedScalarFieldContainer[str]
    keep: _dataframe_pb2.UniqueKeep
    maintain_order: bool
    def __init__(self, handle: _Optional[str] = ..., subset: _Optional[_Iterable[str]] = ..., keep: _Optional[_Union[_dataframe_pb2.UniqueKeep, str]] = ..., maintain_order: _Optional[bool] = ...) -> None: ...

class SliceStepV0(_message.Message):
    __slots__ = ("handle", "offset", "length")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    handle: str
    offset: int
    length: int
    def __init__(self, handle: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DiffStepV0(_message.Message):
    __slots__ = ("handle", "columns", "n", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    n: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., n: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class PctChangeStepV0(_message.Message):
    __slots__ = ("handle", "columns", "n", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    n: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., n: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class InterpolateStepV0(_message.Message):
    __slots__ = ("handle", "columns", "method")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    method: _dataframe_pb2.InterpolationMethod
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., method: _Optional[_Union[_dataframe_pb2.InterpolationMethod, str]] = ...) -> None: ...

class PivotStepV0(_message.Message):
    __slots__ = ("handle", "on", "index", "values", "aggregate", "sort_columns", "separator")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    SORT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    handle: str
    on: _containers.RepeatedScalarFieldContainer[str]
    index: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[str]
    aggregate: _expr_pb2.AggFunction
    sort_columns: bool
    separator: str
    def __init__(self, handle: _Optional[str] = ..., on: _Optional[_Iterable[str]] = ..., index: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[str]] = ..., aggregate: _Optional[_Union[_expr_pb2.AggFunction, str]] = ..., sort_columns: _Optional[bool] = ..., separator: _Optional[str] = ...) -> None: ...

class JoinStepV0(_message.Message):
    __slots__ = ("handle", "right", "on", "left_on", "right_on", "how", "suffix", "coalesce")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    LEFT_ON_FIELD_NUMBER: _ClassVar[int]
    RIGHT_ON_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    COALESCE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    right: str
    on: _containers.RepeatedScalarFieldContainer[str]
    left_on: _containers.RepeatedScalarFieldContainer[str]
    right_on: _containers.RepeatedScalarFieldContainer[str]
    how: _dataframe_pb2.JoinHow
    suffix: str
    coalesce: bool
    def __init__(self, handle: _Optional[str] = ..., right: _Optional[str] = ..., on: _Optional[_Iterable[str]] = ..., left_on: _Optional[_Iterable[str]] = ..., right_on: _Optional[_Iterable[str]] = ..., how: _Optional[_Union[_dataframe_pb2.JoinHow, str]] = ..., suffix: _Optional[str] = ..., coalesce: _Optional[bool] = ...) -> None: ...

class AsofJoinStepV0(_message.Message):
    __slots__ = ("handle", "right", "on", "left_on", "right_on", "by", "by_left", "by_right", "strategy", "tolerance", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    LEFT_ON_FIELD_NUMBER: _ClassVar[int]
    RIGHT_ON_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    BY_LEFT_FIELD_NUMBER: _ClassVar[int]
    BY_RIGHT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    right: str
    on: str
    left_on: str
    right_on: str
    by: _containers.RepeatedScalarFieldContainer[str]
    by_left: _containers.RepeatedScalarFieldContainer[str]
    by_right: _containers.RepeatedScalarFieldContainer[str]
    strategy: _dataframe_pb2.AsofStrategy
    tolerance: str
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., right: _Optional[str] = ..., on: _Optional[str] = ..., left_on: _Optional[str] = ..., right_on: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ..., by_left: _Optional[_Iterable[str]] = ..., by_right: _Optional[_Iterable[str]] = ..., strategy: _Optional[_Union[_dataframe_pb2.AsofStrategy, str]] = ..., tolerance: _Optional[str] = ..., suffix: _Optional[str] = ...) -> None: ...

class ShiftStepV0(_message.Message):
    __slots__ = ("handle", "columns", "n", "suffix")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    handle: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    n: int
    suffix: str
    def __init__(self, handle: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., n: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class FillNullStepV0(_message.Message):
    __slots__ = ("handle", "value", "strategy", "columns", "limit")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    handle: str
    value: _expr_pb2.Expression
    strategy: FillNullStrategy
    columns: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, handle: _Optional[str] = ..., value: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ..., strategy: _Optional[_Union[FillNullStrategy, str]] = ..., columns: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class FillNanStepV0(_message.Message):
    __slots__ = ("handle", "value", "columns")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    value: _expr_pb2.Expression
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, handle: _Optional[str] = ..., value: _Optional[_Union[_expr_pb2.Expression, _Mapping]] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeStepV0(_message.Message):
    __slots__ = ("handle", "percentiles")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    handle: str
    percentiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, handle: _Optional[str] = ..., percentiles: _Optional[_Iterable[float]] = ...) -> None: ...

class UploadedArtifact(_message.Message):
    __slots__ = ("artifact", "name")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    artifact: str
    name: str
    def __init__(self, artifact: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SourceFingerprint(_message.Message):
    __slots__ = ("path", "size", "modified_unix_nanos")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    modified_unix_nanos: int
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., modified_unix_nanos: _Optional[int] = ...) -> None: ...

class PlanNode(_message.Message):
    __slots__ = ("step", "inputs", "source")
    STEP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    step: PlanStep
    inputs: _containers.RepeatedScalarFieldContainer[str]
    source: SourceFingerprint
    def __init__(self, step: _Optional[_Union[PlanStep, _Mapping]] = ..., inputs: _Optional[_Iterable[str]] = ..., source: _Optional[_Union[SourceFingerprint, _Mapping]] = ...) -> None: ...

class HandleRecord(_message.Message):
    __slots__ = ("plan", "node", "tenant", "created_unix_ms", "last_access_unix_ms", "ttl_ms", "pinned", "dropped_unix_ms", "schema", "schema_hash", "rows", "bytes", "artifacts")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    plan: str
    node: PlanNode
    tenant: str
    created_unix_ms: int
    last_access_unix_ms: int
    ttl_ms: int
    pinned: bool
    dropped_unix_ms: int
    schema: _containers.RepeatedCompositeFieldContainer[_dataframe_pb2.Field]
    schema_hash: str
    rows: int
    bytes: int
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, plan: _Optional[str] = ..., node: _Optional[_Union[PlanNode, _Mapping]] = ..., tenant: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., last_access_unix_ms: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., pinned: _Optional[bool] = ..., dropped_unix_ms: _Optional[int] = ..., schema: _Optional[_Iterable[_Union[_dataframe_pb2.Field, _Mapping]]] = ..., schema_hash: _Optional[str] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., artifacts: _Optional[_Iterable[str]] = ...) -> None: ...
