"""Batch jobs from Python: `polaroid.jobs.submit(df, sink="out.parquet")` returns a `Job`
to wait on (with a progress bar), cancel, or take the result of."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from polaroid import errors
from polaroid.connection import Connection, default_connection
from polaroid.expr import col
from polaroid.v1 import jobs_pb2 as pb
from polaroid.v1 import plan_pb2
from polaroid.v1 import dataframe_pb2

if TYPE_CHECKING:
    from polaroid.frame import DataFrame

Priority = Literal["high", "normal", "low"]

_PRIORITY = {
    "high": pb.JOB_PRIORITY_HIGH,
    "normal": pb.JOB_PRIORITY_NORMAL,
    "low": pb.JOB_PRIORITY_LOW,
}


class JobFailedError(errors.PolaroidError):
    """The job failed after its last attempt, or was cancelled; `job` is its record."""

    def __init__(self, job: pb.Job) -> None:
        state = pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
        super().__init__(f"job {job.id} {state}: {job.error or 'no error recorded'}")
        self.job = job


class Job:
    """A submitted batch job."""

    def __init__(self, record: pb.Job, connection: Connection) -> None:
        self.id = record.id
        self._record = record
        self._connection = connection

    def __repr__(self) -> str:
        return f"<polaroid.Job {self.id} {self.state}>"

    @property
    def state(self) -> str:
        """queued, running, retrying, succeeded, failed or cancelled (as last read)."""
        return pb.JobState.Name(self._record.state).removeprefix("JOB_STATE_").lower()

    def status(self) -> pb.Job:
        """The job's record, read now."""
        self._record = self._connection.call_jobs("GetJob", pb.GetJobRequest(job_id=self.id))
        return self._record

    def cancel(self) -> pb.Job:
        """Cancels the job (a running one stops within a second or two)."""
        self._record = self._connection.call_jobs("CancelJob", pb.CancelJobRequest(job_id=self.id))
        return self._record

    def wait(self, *, progress: bool = True, timeout: float | None = None) -> pb.Job:
        """Waits until the job ends, following its events (a progress bar when
        `progress`); returns its record, or raises `JobFailedError`."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=None, unit=" steps", desc=f"job {self.id[-8:]}")
        import grpc

        from polaroid.connection import RETRYABLE

        failures = 0
        try:
            while True:
                events = self._connection.jobs_stub.WatchJob(
                    pb.WatchJobRequest(job_id=self.id), timeout=timeout,
                    metadata=self._connection._metadata,
                )
                try:
                    for event in events:
                        if bar is not None and event.HasField("progress"):
                            bar.total = event.progress.steps_total or None
                            bar.n = event.progress.steps_done
                            bar.set_postfix_str(
                                pb.JobEventKind.Name(event.kind).removeprefix("JOB_EVENT_KIND_").lower()
                            )
                            bar.refresh()
                    break
                except grpc.RpcError as error:
                    # The coordinator restarting, say: watch again (the events replay).
                    failures += 1
                    if error.code() not in RETRYABLE or failures > self._connection.retries:
                        raise errors.from_rpc_error(error) from None
                    time.sleep(min(self._connection.backoff * 2**failures, self._connection.max_backoff))
        finally:
            if bar is not None:
                bar.close()
        record = self.status()
        if record.state != pb.JOB_STATE_SUCCEEDED:
            raise JobFailedError(record)
        return record

    def result(self, *, progress: bool = False) -> DataFrame | str:
        """Waits, then returns the kept result as a DataFrame, or else the sink's path."""
        from polaroid.frame import DataFrame

        record = self.wait(progress=progress)
        if record.result.handle:
            return DataFrame(record.result.handle, self._connection)
        return record.result.path


def submit(
    plan_or_dataframe: DataFrame | pb.JobSpec | pb.JobPlan,
    *,
    sink: str | None = None,
    keep_handle: bool = False,
    priority: Priority | None = None,
    max_attempts: int = 0,
    timeout: float | None = None,
    idempotency_key: str = "",
    name: str = "",
    connection: Connection | None = None,
) -> Job:
    """Submits a batch job and returns at once.

    A DataFrame's whole plan runs as the job (its rows are computed by a worker, not over
    this session's connection); `sink` is a path under the server's data roots (.parquet,
    .csv or .arrow), and/or `keep_handle` keeps the result as a handle.

    >>> job = polaroid.jobs.submit(df, sink="reports/daily.parquet")   # doctest: +SKIP
    >>> job.wait()                                                      # doctest: +SKIP
    """
    from polaroid.frame import DataFrame

    frame: DataFrame | None = None
    if isinstance(plan_or_dataframe, pb.JobSpec):
        spec = pb.JobSpec()
        spec.CopyFrom(plan_or_dataframe)
        conn = connection or default_connection()
        if sink is not None or keep_handle:
            spec.sink.CopyFrom(pb.JobSink(path=sink or spec.sink.path, keep_handle=keep_handle or spec.sink.keep_handle))
    else:
        if isinstance(plan_or_dataframe, DataFrame):
            frame = plan_or_dataframe
            conn = connection or plan_or_dataframe._connection
            everything = dataframe_pb2.SelectRequest(exprs=[col("*").pb])
            plan = pb.JobPlan(
                steps=[
                    pb.JobStep(
                        step=plan_pb2.PlanStep(select=everything),
                        inputs=[pb.JobInput(handle=plan_or_dataframe.handle)],
                    )
                ]
            )
        else:
            conn = connection or default_connection()
            plan = plan_or_dataframe
        if not sink and not keep_handle:
            raise errors.InvalidArgumentError("a job needs a sink path, keep_handle=True, or both")
        spec = pb.JobSpec(plan=plan, sink=pb.JobSink(path=sink or "", keep_handle=keep_handle))
    if priority is not None:
        if priority not in _PRIORITY:
            raise errors.InvalidArgumentError(
                f"unknown priority {priority!r}; expected high, normal or low"
            )
        spec.priority = _PRIORITY[priority]
    spec.max_attempts = max_attempts or spec.max_attempts
    if timeout is not None:
        spec.timeout_ms = int(timeout * 1000)
    # A key of our own when none is given: a retried submit then names the same job
    # instead of queueing a second one.
    spec.idempotency_key = idempotency_key or spec.idempotency_key or uuid.uuid4().hex
    spec.name = name or spec.name
    reply = conn.call_jobs("SubmitJob", pb.SubmitJobRequest(spec=spec))
    if frame is not None:
        # The job reads the frame's handle: it must not be dropped before the job ends.
        conn.keep_for_job(reply.job.id, frame)
    return Job(reply.job, conn)


def get(job_id: str, *, connection: Connection | None = None) -> Job:
    conn = connection or default_connection()
    return Job(conn.call_jobs("GetJob", pb.GetJobRequest(job_id=job_id)), conn)


def list_jobs(state: str | None = None, *, limit: int = 100,
              connection: Connection | None = None) -> list[Job]:
    """Jobs, newest first, optionally only in `state`."""
    conn = connection or default_connection()
    code: Any = 0
    if state is not None:
        code = pb.JobState.Value(f"JOB_STATE_{state.upper()}")
    reply = conn.call_jobs("ListJobs", pb.ListJobsRequest(state=code, page_size=limit))
    return [Job(record, conn) for record in reply.jobs]

