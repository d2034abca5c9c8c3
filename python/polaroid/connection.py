"""Connections: the gRPC channel, retries, error mapping, and the background work that
keeps a session's handles alive (heartbeats) and releases the ones Python let go of."""

from __future__ import annotations

import io
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.experimental
import pyarrow as pa
import pyarrow.ipc

from polaroid import _memory, errors
from polaroid.v1 import dataframe_pb2 as pb
from polaroid.v1 import dataframe_pb2_grpc
from polaroid.v1 import jobs_pb2_grpc

if TYPE_CHECKING:
    import polars

T = TypeVar("T")

#: Codes worth another try of a call that is safe to repeat. Not DEADLINE_EXCEEDED: the
#: call's time is spent (the client's `timeout`, or the server's `max_call_secs`), and
#: another try would run the same work again for as long, once per retry.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
# Request metadata on a retried call: which attempt it is (2 for the first retry).
ATTEMPT_METADATA = "x-polaroid-attempt"

_DEFAULT: Connection | None = None
_DEFAULT_LOCK = threading.Lock()


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data) and shift < 64:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise errors.InternalError("the server sent a malformed ArrowBatch (bad varint)")


def arrow_payload(message: bytes) -> memoryview:
    """The `arrow_ipc` field of an encoded `ArrowBatch`, as a view into `message` (no
    copy). A batch that carries an `error` raises it."""
    data = memoryview(message)
    payload = None
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, at = _varint(data, at)
            continue
        if wire_type in (1, 5):
            at += 8 if wire_type == 1 else 4
            continue
        if wire_type != 2:
            raise errors.InternalError(f"the server sent a malformed ArrowBatch (wire type {wire_type})")
        length, at = _varint(data, at)
        if at + length > len(data):
            raise errors.InternalError("the server sent a truncated ArrowBatch")
        value, at = data[at : at + length], at + length
        if field == 1:
            payload = value
        elif field == 2:
            raise errors.InternalError(bytes(value).decode("utf-8", "replace"))
    if at != len(data):
        raise errors.InternalError("the server sent a truncated ArrowBatch")
    if payload is None:
        raise errors.InternalError("the server sent an ArrowBatch without Arrow data")
    return payload


#: Bytes of a whole result received over `Collect` after which the coordinator is asked
#: (GetFlightInfo) whether its worker keeps it, and how large it is. Workers split results
#: into messages of about 3 MiB, so this is reached on a result's second message; below
#: it a result costs one round trip and no Flight connection.
FLIGHT_PROBE_BYTES = 4 * 1024 * 1024
#: A kept result with more than this still to come is fetched over Arrow Flight from
#: its worker instead (the Collect is cancelled and what it brought is dropped). Measured
#: with a release standalone on the 2-vCPU machine (cached results, medians of 7): Flight
#: alone takes about half of Collect's time from 1 MiB up (2.1 against 3.0 ms at 1 MiB,
#: 244 against 504 ms at 256 MiB), but switching costs what came over Collect first plus
#: a GetFlightInfo made while that stream still runs, 6-16 ms in all: with 4 MiB here the
#: switch lost at 8 MiB (13.9 against 10.4 ms) and 32 MiB (61.5 against 50.2 ms), was
#: even at 16 MiB and won from 64 MiB (87 against 102 ms; 257 against 504 ms at 256 MiB).
#: A handle found large goes to Flight at once the next time, without that cost.
FLIGHT_REST_BYTES = 32 * 1024 * 1024

#: A result that arrives as one `Collect` message under this size reaches `collect()`
#: undecoded, and Polars reads it: for head(5) of a 1,000-row frame that took 80 against
#: 194 µs through pyarrow and `polars.from_arrow` (p50, interleaved in one process against
#: a release standalone), of a call of about 1 ms.
SMALL_PAYLOAD_BYTES = 1024 * 1024

#: Flight's location for "the service that answered GetFlightInfo".
REUSE_CONNECTION = "arrow-flight-reuse-connection://?"


class _FlightFetcher:
    """Fetches whole results with Arrow Flight: `GetFlightInfo` on the coordinator names
    the owning worker first, then the coordinator itself; rows come from the first that
    answers. A worker that refuses this client's first connection is skipped for a
    minute, then tried again (a restarting worker comes back at the same address); one
    that does not answer at all (an address not routable from here, such as a pod IP seen
    from a laptop) is skipped for the life of the connection, since each try would cost
    the probe's whole timeout."""

    #: Seconds a location that refused a connection is skipped for.
    UNREACHABLE_SECONDS = 60.0
    #: Seconds a worker's first answer is waited for.
    PROBE_SECONDS = 2.0

    @classmethod
    def create(
        cls, target: str, token: str | None, timeout: float | None, tls: _Tls | None = None
    ) -> _FlightFetcher | None:
        try:
            import pyarrow.flight  # noqa: F401
        except ImportError:
            return None
        return cls(target, token, timeout, tls)

    def __init__(
        self, target: str, token: str | None, timeout: float | None, tls: _Tls | None = None
    ) -> None:
        # Over TLS, locations are followed only where they are TLS too (`grpc+tls://`, as
        # workers that serve TLS advertise themselves): the token never goes in the clear.
        self._tls = tls
        self._target = f"grpc+tls://{target}" if tls else f"grpc+tcp://{target}"
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        self._timeout = timeout
        self._headers = headers
        self._clients: dict[str, Any] = {}
        # Location -> when it may be tried again (time.monotonic()).
        self._unreachable: dict[str, float] = {}
        self._lock = threading.Lock()

    def _options(self) -> Any:
        import pyarrow.flight as flight

        return flight.FlightCallOptions(timeout=self._timeout, headers=self._headers)

    def _client(self, uri: str) -> Any:
        import pyarrow.flight as flight

        with self._lock:
            client = self._clients.get(uri)
        if client is not None:
            return client
        if self._tls is None:
            client = flight.connect(uri)
        else:
            client = flight.connect(
                uri,
                tls_root_certs=self._tls.root_certificates,
                override_hostname=self._tls.server_name,
            )
        if uri != self._target:
            # A worker's address may not be routable from here (a pod IP): find out once,
            # quickly, rather than on every fetch at the call's timeout.
            started = time.monotonic()
            try:
                # Any answer will do: Polaroid answers ListFlights with UNIMPLEMENTED. With
                # the token, or a server that requires one answers UNAUTHENTICATED instead.
                options = flight.FlightCallOptions(timeout=self.PROBE_SECONDS, headers=self._headers)
                list(client.list_flights(options=options))
            except NotImplementedError:
                pass
            except BaseException as error:
                client.close()
                if isinstance(error, (flight.FlightUnavailableError, flight.FlightTimedOutError)):
                    waited = time.monotonic() - started
                    silent = waited >= self.PROBE_SECONDS / 2
                    until = math.inf if silent else time.monotonic() + self.UNREACHABLE_SECONDS
                    with self._lock:
                        self._unreachable[uri] = until
                raise
        with self._lock:
            kept = self._clients.setdefault(uri, client)
        if kept is not client:
            client.close()  # Another thread connected first.
        return kept

    @staticmethod
    def _failures() -> tuple[type[BaseException], ...]:
        import pyarrow.flight as flight

        # What a Flight call raises for a status (NOT_FOUND is a KeyError, UNIMPLEMENTED a
        # NotImplementedError) or a broken connection.
        return (flight.FlightError, pa.ArrowException, OSError, KeyError, NotImplementedError)

    def locate(self, handle: str) -> Any:
        """`handle`'s FlightInfo from the coordinator (where its rows are, and their size
        once computed), or None when Flight cannot say."""
        import pyarrow.flight as flight

        # ValueError: not the one endpoint Polaroid gives.
        failures: tuple[type[BaseException], ...] = (*self._failures(), ValueError)
        try:
            info = self._client(self._target).get_flight_info(
                flight.FlightDescriptor.for_path(handle), self._options()
            )
            [_] = info.endpoints
        except failures:
            return None
        return info

    def fetch(
        self, handle: str, progress: Callable[[int], None] | None, info: Any = None
    ) -> pa.Table | None:
        """The rows of `handle` (from where `info` says, else asked first), or None when
        Flight could not deliver them all."""
        import pyarrow.flight as flight

        failures = self._failures()
        # Failures of the location rather than of the call: the next location may serve it.
        unreachable = (flight.FlightUnavailableError, flight.FlightTimedOutError, OSError)
        if info is None:
            info = self.locate(handle)
            if info is None:
                return None
        [endpoint] = info.endpoints
        for location in endpoint.locations:
            uri = location.uri.decode()
            uri = self._target if uri == REUSE_CONNECTION else uri
            if self._skipped(uri) or (self._tls is not None and not uri.startswith("grpc+tls://")):
                continue
            received = 0
            try:
                reader = self._client(uri).do_get(endpoint.ticket, self._options())
                batches = []
                for chunk in reader:
                    batches.append(chunk.data)
                    received += chunk.data.num_rows
                    if progress is not None:
                        progress(chunk.data.num_rows)
                return pa.Table.from_batches(batches, schema=reader.schema)
            except failures as error:
                # What arrived is discarded; so is its progress.
                if progress is not None and received:
                    progress(-received)
                if not isinstance(error, unreachable):
                    # The same call would fail the same way elsewhere: Collect reports it.
                    return None
                continue
        return None

    def _skipped(self, uri: str) -> bool:
        with self._lock:
            until = self._unreachable.get(uri)
            if until is not None and until <= time.monotonic():
                del self._unreachable[uri]
                return False
            return until is not None

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def _pushback_seconds(error: grpc.RpcError) -> float | None:
    """The wait a RESOURCE_EXHAUSTED answer asks for (`grpc-retry-pushback-ms`), if any."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "grpc-retry-pushback-ms":
            try:
                return max(0, int(value)) / 1000
            except ValueError:
                return None
    return None
class _Tls:
    """How a connection checks the server's certificate: against `root_certificates`
    (PEM; None: gRPC's default roots), for `server_name` when given (else the target's
    host)."""

    def __init__(self, root_certificates: bytes | None, server_name: str | None) -> None:
        self.root_certificates = root_certificates
        self.server_name = server_name


#: URL schemes a target may carry, and whether each is TLS.
_SCHEMES = {
    "https://": True, "grpcs://": True, "grpc+tls://": True,
    "http://": False, "grpc://": False, "grpc+tcp://": False,
}


def _target_and_tls(
    target: str,
    tls: bool | None,
    root_certificates: bytes | None,
    ca_file: str | os.PathLike[str] | None,
    server_name: str | None,
) -> tuple[str, _Tls | None]:
    """`host:port` of `target`, and its TLS: on for an `https://` (or `grpcs://`) target,
    for `tls=True`, or when root certificates or a CA file are given."""
    scheme = next((s for s in _SCHEMES if target.lower().startswith(s)), None)
    if scheme is not None:
        target = target[len(scheme) :].rstrip("/")
        if tls is not None and tls != _SCHEMES[scheme]:
            raise ValueError(f"tls={tls} contradicts the target's scheme {scheme}")
        tls = _SCHEMES[scheme]
    if ca_file is not None:
        if root_certificates is not None:
            raise ValueError("give root_certificates or ca_file, not both")
        with open(ca_file, "rb") as pem:
            root_certificates = pem.read()
    if tls is None:
        tls = root_certificates is not None or server_name is not None
    elif not tls and (root_certificates is not None or server_name is not None):
        raise ValueError("root_certificates, ca_file and server_name are for TLS connections")
    if not tls:
        return target, None
    if root_certificates is None and os.environ.get("POLAROID_CA_FILE"):
        # The same variable the CLI reads.
        with open(os.environ["POLAROID_CA_FILE"], "rb") as pem:
            root_certificates = pem.read()
    return target, _Tls(root_certificates, server_name)


class Connection:
    """A connection to a Polaroid coordinator (or a lone worker).

    >>> import polaroid as pr
    >>> with pr.connect("127.0.0.1:50051") as conn:   # doctest: +SKIP
    ...     df = conn.read_parquet("sales.parquet")

    Over TLS: an `https://` target (or `grpcs://`), or `tls=True`, or a CA to trust
    (`ca_file=` or `root_certificates=` as PEM; else `POLAROID_CA_FILE`, else gRPC's
    default roots). `server_name` is the name to check in the certificate when it is not
    the target's host.

    Calls that are safe to repeat (all DataFrame calls but appending writes) are retried
    on UNAVAILABLE with exponential backoff and jitter (a retry says which attempt it is,
    so the coordinator does not fail over again for it), and on
    RESOURCE_EXHAUSTED after the wait a busy server asks for (`grpc-retry-pushback-ms`). Handles made
    through this connection are kept alive by heartbeats while their Python objects live,
    and dropped on the server, in batches, once they are garbage-collected.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | None = None,
        root_certificates: bytes | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        server_name: str | None = None,
        max_message_bytes: int = 256 * 1024 * 1024,
        timeout: float | None = 300.0,
        retries: int = 6,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        heartbeat_interval: float = 60.0,
        upload_chunk_bytes: int = 4 * 1024 * 1024,
        flight: bool = True,
    ) -> None:
        target, secure = _target_and_tls(target, tls, root_certificates, ca_file, server_name)
        self.target = target
        # Whole results come over Arrow Flight from the worker that owns them (the
        # coordinator says which), skipping the coordinator's hop, unless `flight=False`
        # or pyarrow lacks Flight; over TLS only from workers that serve TLS.
        self._flight = _FlightFetcher.create(target, token, timeout, secure) if flight else None
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Keepalives notice a dead peer (and keep idle NAT/LB paths open).
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # Streaming replies (Collect, WatchJob) read on the calling thread, as unary
            # calls are, instead of handed over by the channel's own thread: a
            # head(5).collect() took 140 µs less (1,069 against 1,207 µs at p50 against a
            # debug worker, interleaved in one process), a 64 MiB Collect the same.
            (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ]
        if secure is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=secure.root_certificates)
            if secure.server_name:
                options.append(("grpc.ssl_target_name_override", secure.server_name))
            if token:
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.access_token_call_credentials(token)
                )
            self._channel = grpc.secure_channel(target, credentials, options=options)
            self._base_metadata: tuple[tuple[str, str], ...] = ()
        else:
            self._channel = grpc.insecure_channel(target, options=options)
            self._base_metadata = (("authorization", f"Bearer {token}"),) if token else ()
        # Which attempt of a call this thread is making (`retrying`): a retry says so, and
        # the coordinator then tries one worker for it instead of failing over across
        # several, so the retries of the two layers add up instead of multiplying.
        self._attempt = threading.local()
        self.stub = dataframe_pb2_grpc.DataFrameServiceStub(self._channel)
        self.jobs_stub = jobs_pb2_grpc.JobServiceStub(self._channel)
        # Collect's replies are read as raw bytes: the Arrow payload is then sliced out
        # without the copy a protobuf message would make of every 4 MiB batch.
        self._collect_raw = self._channel.unary_stream(
            "/polaroid.v1.DataFrameService/Collect",
            request_serializer=pb.CollectRequest.SerializeToString,
            response_deserializer=bytes,
        )
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.upload_chunk_bytes = upload_chunk_bytes
        # Python objects alive per handle: a handle is released when its last one goes.
        self._owners: dict[str, int] = {}
        # Handles whose whole result its worker keeps and is over FLIGHT_PROBE_BYTES, so
        # that their next collect goes to Flight at once (oldest first).
        self._large: dict[str, None] = {}
        self._released: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._channel_closed = False
        # Frames batch jobs read, kept (so not dropped) until those jobs end.
        self._job_inputs: dict[str, Any] = {}
        self._heartbeat_interval = heartbeat_interval
        self._keeper = threading.Thread(
            target=self._keep_alive, name="polaroid-heartbeat", daemon=True
        )
        self._keeper.start()

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        attempt = getattr(self._attempt, "number", 1)
        if attempt <= 1:
            return self._base_metadata
        return self._base_metadata + ((ATTEMPT_METADATA, str(attempt)),)

    # -- calls ----------------------------------------------------------------------

    def call(self, method: str, request: Any, *, idempotent: bool = True) -> Any:
        """Calls a unary DataFrameService method by name, retrying when that is safe."""
        rpc = getattr(self.stub, method)
        return self.retrying(
            lambda: rpc(request, timeout=self.timeout, metadata=self._metadata),
            idempotent=idempotent,
        )

    def call_jobs(self, method: str, request: Any, *, idempotent: bool = True) -> Any:
        rpc = getattr(self.jobs_stub, method)
        return self.retrying(
            lambda: rpc(request, timeout=self.timeout, metadata=self._metadata),
            idempotent=idempotent,
        )

    def retrying(self, attempt: Callable[[], T], *, idempotent: bool = True) -> T:
        """Runs `attempt`, retrying retryable failures; raises the mapped error."""
        delay = self.backoff
        tries = self.retries + 1 if idempotent else 1
        # Retries stay within one call's timeout overall.
        give_up = None if self.timeout is None else time.monotonic() + self.timeout
        outer = getattr(self._attempt, "number", 1)
        for remaining in range(tries - 1, -1, -1):
            self._attempt.number = tries - remaining
            try:
                return attempt()
            except grpc.RpcError as error:
                # A server at its limit says how long to wait (gRPC's retry pushback);
                # a limit that waiting does not lift (a quota of stored bytes, a result
                # too large) carries none and is not retried.
                pushback = _pushback_seconds(error)
                retryable = error.code() in RETRYABLE or pushback is not None
                # Pushback is spread a little too: clients refused together do not all
                # come back at the same instant.
                pause = random.uniform(0, delay) if pushback is None else pushback * random.uniform(1, 1.5)
                out_of_time = give_up is not None and time.monotonic() + pause > give_up
                if remaining == 0 or out_of_time or not retryable:
                    raise errors.from_rpc_error(error) from None
                # Full jitter: calls that failed together do not retry together.
                time.sleep(pause)
                delay = min(delay * 2, self.max_backoff)
            finally:
                self._attempt.number = outer
        raise AssertionError("unreachable")

    def collect(
        self, handle: str, *, limit: int | None = None, progress: Callable[[int], None] | None = None
    ) -> pa.Table:
        """A handle's rows as one Arrow table. A stream cut midway is started again from
        the beginning and what had arrived is discarded, so no row is ever duplicated.

        The rows come over `Collect` through the coordinator, in one round trip. Without
        a limit (and unless `connect(..., flight=False)`), a result that turns out large
        is fetched over Arrow Flight instead, from the worker that owns it: past
        `FLIGHT_PROBE_BYTES` received, the coordinator is asked where the result is and
        how large, and if its worker keeps it with over `FLIGHT_REST_BYTES` still to
        come, Flight fetches it whole. When that fails for any reason the call is made
        again as `Collect`, which retries, fails over and reports errors. A later collect
        of a handle found kept and over `FLIGHT_PROBE_BYTES` goes to Flight at once.

        The memory whole results arrive in is kept for the next one for a while after the
        last (`polaroid.set_memory_retention`); previews (with a limit) leave the
        allocator alone."""
        rows = self._collect_retaining(handle, limit, progress, payload=False)
        assert isinstance(rows, pa.Table)
        return rows

    def collect_polars(
        self, handle: str, *, limit: int | None = None, progress: Callable[[int], None] | None = None
    ) -> polars.DataFrame:
        """`collect` into a `polars.DataFrame`."""
        import polars

        rows = self._collect_retaining(handle, limit, progress, payload=progress is None)
        if isinstance(rows, pa.Table):
            # No rechunk: the batches are used as they arrived, without another copy.
            result = polars.from_arrow(rows, rechunk=False)
            assert isinstance(result, polars.DataFrame)
            return result
        return polars.read_ipc_stream(io.BytesIO(rows))

    def _collect_retaining(
        self, handle: str, limit: int | None, progress: Callable[[int], None] | None,
        payload: bool,
    ) -> pa.Table | memoryview:
        if limit is not None:
            return self._collect(handle, limit, progress, payload)
        with _memory.RETENTION.receiving():
            return self._collect(handle, limit, progress, payload)

    def _collect(
        self, handle: str, limit: int | None, progress: Callable[[int], None] | None,
        payload: bool = False,
    ) -> pa.Table | memoryview:
        """The rows as a table, or with `payload`, a result of one small message as its
        Arrow IPC stream, undecoded."""
        flight = self._flight if limit is None else None
        # Set once the result has proved large and Flight can serve it from its worker.
        located: list[Any] = []
        if flight is not None and handle in self._large:
            # Known large from an earlier collect (a handle's rows never change): to
            # Flight at once, unless its worker no longer keeps it.
            info = flight.locate(handle)
            located.append(info if info is not None and info.total_bytes >= 0 else None)
            if located[0] is not None:
                table = flight.fetch(handle, progress, located[0])
                if table is not None:
                    return table

        def attempt() -> pa.Table | memoryview | None:
            batches: list[pa.RecordBatch] = []
            schema = None
            received = 0
            # The first message, undecoded while it may be the whole result.
            held: memoryview | None = None

            def decode(arrow: memoryview) -> None:
                nonlocal schema
                reader = pa.ipc.open_stream(pa.py_buffer(arrow))
                schema = reader.schema
                for batch in reader:
                    batches.append(batch)
                    if progress is not None:
                        progress(batch.num_rows)

            call = self._collect_raw(
                pb.CollectRequest(handle=handle, limit=limit),
                timeout=self.timeout,
                metadata=self._metadata,
            )
            try:
                for message in call:
                    arrow = arrow_payload(message)
                    first = received == 0
                    received += len(message)
                    if first and payload and len(arrow) < SMALL_PAYLOAD_BYTES:
                        held = arrow
                        continue
                    if held is not None:
                        decode(held)
                        held = None
                    decode(arrow)
                    if flight is not None and not located and received >= FLIGHT_PROBE_BYTES:
                        info = flight.locate(handle)
                        # Unknown sizes (-1) mean the worker did not keep the result (over
                        # its cache): Flight would compute it again, so the rest comes
                        # over Collect, as does a small rest.
                        arrived = sum(b.nbytes for b in batches)
                        if info is not None and info.total_bytes >= 0:
                            # Next time straight to Flight, which moves a kept result in
                            # about half Collect's time once the switch is not paid for.
                            self._remember_large(handle)
                        if info is not None and info.total_bytes - arrived > FLIGHT_REST_BYTES:
                            located.append(info)
                            call.cancel()
                            if progress is not None:
                                progress(-sum(b.num_rows for b in batches))
                            return None
                        located.append(None)
            except grpc.RpcError:
                # What arrived is discarded; so is its progress.
                if progress is not None:
                    progress(-sum(b.num_rows for b in batches))
                raise
            if held is not None:
                return held
            if schema is None:
                raise errors.InternalError("the server sent no data for the result")
            return pa.Table.from_batches(batches, schema=schema)

        table = self.retrying(attempt)
        if table is None and flight is not None:
            table = flight.fetch(handle, progress, located[0])
        if table is None:
            # Flight failed: Collect again, to the end this time.
            table = self.retrying(attempt)
        assert table is not None
        return table

    #: Handles remembered as large, at most.
    LARGE_HANDLES = 4096

    def _remember_large(self, handle: str) -> None:
        with self._lock:
            self._large[handle] = None
            while len(self._large) > self.LARGE_HANDLES:
                del self._large[next(iter(self._large))]

    def upload(self, table: pa.Table, *, name: str | None = None,
               progress: Callable[[int], None] | None = None) -> str:
        """Streams `table` to the server in chunks (UploadArrow); returns its handle."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=65_536)
        data = sink.getvalue()
        size = self.upload_chunk_bytes

        def chunks() -> Iterator[pb.UploadArrowChunk]:
            for offset in range(0, max(len(data), 1), size):
                piece = data[offset : offset + size].to_pybytes()
                if progress is not None:
                    progress(len(piece))
                yield pb.UploadArrowChunk(
                    data=piece, name=name if offset == 0 else None
                )

        reply = self.retrying(
            lambda: self.stub.UploadArrow(chunks(), timeout=self.timeout, metadata=self._metadata)
        )
        return reply.handle

    # -- handle lifecycle -------------------------------------------------------------

    def track(self, handle: str, owner: Any) -> None:
        """Keeps `handle` alive while `owner` lives; releases it after."""
        with self._lock:
            self._owners[handle] = self._owners.get(handle, 0) + 1
            # Made again before its drop was sent: keep it.
            if handle in self._released:
                self._released.remove(handle)
        finalizer = weakref.finalize(owner, self._release, handle)
        # At interpreter exit the handles just expire with their TTL.
        finalizer.atexit = False

    def _release(self, handle: str) -> None:
        if self._closed.is_set():
            return
        with self._lock:
            left = self._owners.get(handle, 1) - 1
            if left > 0:
                self._owners[handle] = left
                return
            self._owners.pop(handle, None)
            self._released.append(handle)
            full = len(self._released) >= 64
        if full:
            try:
                threading.Thread(target=self.flush_released, daemon=True).start()
            except RuntimeError:
                pass  # Interpreter shutting down: the heartbeat thread is gone too.

    def flush_released(self) -> int:
        """Drops every released handle on the server now; returns how many."""
        with self._lock:
            released = [h for h in self._released if h not in self._owners]
            self._released = []
        for handle in released:
            if self._closed.is_set() and self._channel_closed:
                break
            try:
                self.stub.DropHandle(
                    pb.DropHandleRequest(handle=handle), timeout=10, metadata=self._metadata
                )
            except (grpc.RpcError, ValueError):
                pass  # Best effort: an undropped handle expires with its TTL.
        return len(released)

    def heartbeat(self) -> dict[str, bool]:
        """Extends the TTL of every live handle of this connection; returns which are alive."""
        with self._lock:
            handles = list(self._owners)
        alive: dict[str, bool] = {}
        # Any worker can extend any handle (the records are shared): a few large calls.
        for start in range(0, len(handles), 512):
            batch = handles[start : start + 512]

            def beat(batch: list[str] = batch) -> Any:
                return self.stub.Heartbeat(
                    pb.HeartbeatRequest(handles=batch), timeout=30, metadata=self._metadata
                )

            try:
                reply = self.retrying(beat)
                alive.update(reply.alive)
            except errors.PolaroidError:
                alive.update(dict.fromkeys(batch, False))
        return alive

    def keep_for_job(self, job_id: str, frame: Any) -> None:
        """Keeps `frame` (a job's input) alive until the job ends."""
        with self._lock:
            self._job_inputs[job_id] = frame

    def release_finished_job_inputs(self) -> None:
        from polaroid.v1 import jobs_pb2

        with self._lock:
            waiting = list(self._job_inputs)
        for job_id in waiting:
            try:
                job = self.jobs_stub.GetJob(
                    jobs_pb2.GetJobRequest(job_id=job_id), timeout=10, metadata=self._metadata
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    continue
            else:
                if job.state not in (
                    jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED
                ):
                    continue
            with self._lock:
                self._job_inputs.pop(job_id, None)

    def _keep_alive(self) -> None:
        while not self._closed.wait(self._heartbeat_interval):
            try:
                self.release_finished_job_inputs()
                self.flush_released()
                self.heartbeat()
            except Exception:  # noqa: BLE001 - the keeper must never die
                pass

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Drops released handles, stops the heartbeats and closes the channel."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.flush_released()
        self._channel_closed = True
        self._channel.close()
        if self._flight is not None:
            self._flight.close()
        global _DEFAULT
        with _DEFAULT_LOCK:
            if _DEFAULT is self:
                _DEFAULT = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<polaroid.Connection {self.target}>"

    # Readers and constructors, bound to this connection.
    def read_parquet(self, path: str, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.read_parquet(path, connection=self, **kwargs)

    def read_csv(self, path: str, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.read_csv(path, connection=self, **kwargs)

    def read_ipc(self, path: str, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.read_ipc(path, connection=self, **kwargs)

    def read_json(self, path: str, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.read_json(path, connection=self, **kwargs)

    def read_rest_api(self, url: str, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.read_rest_api(url, connection=self, **kwargs)

    def stream_rest_api(self, url: str, **kwargs: Any) -> Any:
        from polaroid import streams

        return streams.stream_rest_api(url, connection=self, **kwargs)

    def stream_web_socket(self, url: str, **kwargs: Any) -> Any:
        from polaroid import streams

        return streams.stream_web_socket(url, connection=self, **kwargs)

    def stream_message_queue(self, connection_string: str, topic: str, **kwargs: Any) -> Any:
        from polaroid import streams

        return streams.stream_message_queue(connection_string, topic, connection=self, **kwargs)

    def read_stream(self, source: Any, **kwargs: Any) -> Any:
        from polaroid import streams

        return streams.read_stream(source, connection=self, **kwargs)

    def from_polars(self, df: Any, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.from_polars(df, connection=self, **kwargs)

    def from_arrow(self, table: Any, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.from_arrow(table, connection=self, **kwargs)

    def from_pandas(self, df: Any, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.from_pandas(df, connection=self, **kwargs)

    def from_dict(self, data: Any, **kwargs: Any) -> Any:
        from polaroid import frame

        return frame.from_dict(data, connection=self, **kwargs)


def connect(target: str = "127.0.0.1:50051", **kwargs: Any) -> Connection:
    """Connects to Polaroid and makes this the default connection.

    >>> import polaroid as pr
    >>> pr.connect("127.0.0.1:50051")  # doctest: +SKIP
    <polaroid.Connection 127.0.0.1:50051>
    """
    connection = Connection(target, **kwargs)
    global _DEFAULT
    with _DEFAULT_LOCK:
        _DEFAULT = connection
    return connection


def default_connection() -> Connection:
    """The connection `connect` made last; raises if there is none."""
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            raise RuntimeError('not connected: call polaroid.connect("host:port") first')
        return _DEFAULT
