from polaroid.v1 import dataframe_pb2 as _dataframe_pb2
from polaroid.v1 import plan_pb2 as _plan_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobSinkFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_SINK_FORMAT_UNSPECIFIED: _ClassVar[JobSinkFormat]
    JOB_SINK_FORMAT_PARQUET: _ClassVar[JobSinkFormat]
    JOB_SINK_FORMAT_CSV: _ClassVar[JobSinkFormat]
    JOB_SINK_FORMAT_IPC: _ClassVar[JobSinkFormat]

class JobPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_PRIORITY_NORMAL: _ClassVar[JobPriority]
    JOB_PRIORITY_HIGH: _ClassVar[JobPriority]
    JOB_PRIORITY_LOW: _ClassVar[JobPriority]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_RETRYING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_KIND_UNSPECIFIED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_QUEUED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_STARTED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_STEP: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_ROWS_WRITTEN: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_SUCCEEDED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_RETRYING: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_FAILED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_CANCEL_REQUESTED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_CANCELLED: _ClassVar[JobEventKind]
JOB_SINK_FORMAT_UNSPECIFIED: JobSinkFormat
JOB_SINK_FORMAT_PARQUET: JobSinkFormat
JOB_SINK_FORMAT_CSV: JobSinkFormat
JOB_SINK_FORMAT_IPC: JobSinkFormat
JOB_PRIORITY_NORMAL: JobPriority
JOB_PRIORITY_HIGH: JobPriority
JOB_PRIORITY_LOW: JobPriority
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_RETRYING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_EVENT_KIND_UNSPECIFIED: JobEventKind
JOB_EVENT_KIND_QUEUED: JobEventKind
JOB_EVENT_KIND_STARTED: JobEventKind
JOB_EVENT_KIND_STEP: JobEventKind
JOB_EVENT_KIND_ROWS_WRITTEN: JobEventKind
JOB_EVENT_KIND_SUCCEEDED: JobEventKind
JOB_EVENT_KIND_RETRYING: JobEventKind
JOB_EVENT_KIND_FAILED: JobEventKind
JOB_EVENT_KIND_CANCEL_REQUESTED: JobEventKind
JOB_EVENT_KIND_CANCELLED: JobEventKind

class JobPlan(_message.Message):
    __slots__ = ("steps",)
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[JobStep]
    def __init__(self, steps: _Optional[_Iterable[_Union[JobStep, _Mapping]]] = ...) -> None: ...

class JobStep(_message.Message):
    __slots__ = ("step", "inputs")
    STEP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    step: _plan_pb2.PlanStep
    inputs: _containers.RepeatedCompositeFieldContainer[JobInput]
    def __init__(self, step: _Optional[_Union[_plan_pb2.PlanStep, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[JobInput, _Mapping]]] = ...) -> None: ...

class JobInput(_message.Message):
    __slots__ = ("handle", "step")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    handle: str
    step: int
    def __init__(self, handle: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class JobSink(_message.Message):
    __slots__ = ("path", "format", "keep_handle")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    KEEP_HANDLE_FIELD_NUMBER: _ClassVar[int]
    path: str
    format: JobSinkFormat
    keep_handle: bool
    def __init__(self, path: _Optional[str] = ..., format: _Optional[_Union[JobSinkFormat, str]] = ..., keep_handle: _Optional[bool] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("plan", "sink", "priority", "max_attempts", "timeout_ms", "idempotency_key", "name")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    plan: JobPlan
    sink: JobSink
    priority: JobPriority
    max_attempts: int
    timeout_ms: int
    idempotency_key: str
    name: str
    def __init__(self, plan: _Optional[_Union[JobPlan, _Mapping]] = ..., sink: _Optional[_Union[JobSink, _Mapping]] = ..., priority: _Optional[_Union[JobPriority, str]] = ..., max_attempts: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("steps_done", "steps_total", "rows_written")
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    STEPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    steps_done: int
    steps_total: int
    rows_written: int
    def __init__(self, steps_done: _Optional[int] = ..., steps_total: _Optional[int] = ..., rows_written: _Optional[int] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("handle", "path", "rows")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    handle: str
    path: str
    rows: int
    def __init__(self, handle: _Optional[str] = ..., path: _Optional[str] = ..., rows: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "spec", "state", "attempts", "worker", "submitted_unix_ms", "started_unix_ms", "finished_unix_ms", "error", "result", "progress", "cancel_requested", "tenant")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: JobSpec
    state: JobState
    attempts: int
    worker: str
    submitted_unix_ms: int
    started_unix_ms: int
    finished_unix_ms: int
    error: str
    result: JobResult
    progress: JobProgress
    cancel_requested: bool
    tenant: str
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., attempts: _Optional[int] = ..., worker: _Optional[str] = ..., submitted_unix_ms: _Optional[int] = ..., started_unix_ms: _Optional[int] = ..., finished_unix_ms: _Optional[int] = ..., error: _Optional[str] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., tenant: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "unix_ms", "kind", "state", "worker", "attempt", "progress", "error", "result", "retry_in_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    unix_ms: int
    kind: JobEventKind
    state: JobState
    worker: str
    attempt: int
    progress: JobProgress
    error: str
    result: JobResult
    retry_in_ms: int
    def __init__(self, job_id: _Optional[str] = ..., unix_ms: _Optional[int] = ..., kind: _Optional[_Union[JobEventKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., worker: _Optional[str] = ..., attempt: _Optional[int] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., error: _Optional[str] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., retry_in_ms: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token", "all_tenants")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    page_size: int
    page_token: str
    all_tenants: bool
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., all_tenants: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ValidateJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class ValidateJobResponse(_message.Message):
    __slots__ = ("schema",)
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    schema: _containers.RepeatedCompositeFieldContainer[_dataframe_pb2.Field]
    def __init__(self, schema: _Optional[_Iterable[_Union[_dataframe_pb2.Field, _Mapping]]] = ...) -> None: ...
