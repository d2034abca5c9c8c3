"""Tokens from the SDK and from pyarrow.flight against a standalone that requires them:
each works with a token and fails cleanly (UNAUTHENTICATED) without one; tenants do not
see each other's handles; callers without a token may be mapped to one named tenant."""

from __future__ import annotations

import pathlib
import subprocess
import tempfile
from collections.abc import Iterator

import polars as pl
import pytest

import polaroid as pr
from conftest import Process, polaroid_binary


def create_token(tokens_file: pathlib.Path, tenant: str) -> str:
    """`polaroid token create`, as an operator runs it."""
    output = subprocess.run(
        [str(polaroid_binary()), "token", "create", "--tenant", tenant,
         "--append-to", str(tokens_file)],
        check=True, capture_output=True, text=True,
    ).stdout
    return next(line.removeprefix("token: ") for line in output.splitlines() if line.startswith("token: "))


class Secured:
    """A standalone with tokens for two tenants; callers without a token are refused, or
    act as `anonymous_tenant` when one is given."""

    def __init__(self, root: pathlib.Path, anonymous_tenant: str = "") -> None:
        self.tokens_file = root / "tokens"
        self.tokens_file.write_text("")
        self.a = create_token(self.tokens_file, "tenant-a")
        self.b = create_token(self.tokens_file, "tenant-b")
        (root / "state").mkdir()
        self.server = Process(
            "standalone", "--state-dir", str(root / "state"), "--data-root", str(root),
            env={
                "POLAROID_AUTH_TOKENS_FILE": str(self.tokens_file),
                "POLAROID_AUTH_ANONYMOUS_TENANT": anonymous_tenant,
            },
        )
        self.server.wait_ready()


def running(anonymous_tenant: str = "") -> Iterator[Secured]:
    with tempfile.TemporaryDirectory(prefix="polaroid-auth-") as root:
        server = Secured(pathlib.Path(root), anonymous_tenant)
        try:
            yield server
        finally:
            server.server.stop()


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    yield from running()


@pytest.fixture(scope="module")
def with_guests() -> Iterator[Secured]:
    yield from running(anonymous_tenant="guests")


def test_the_sdk_works_with_a_token_and_tenants_stay_apart(secured: Secured) -> None:
    rows = pl.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]})
    with pr.Connection(secured.server.address, token=secured.a) as a, \
            pr.Connection(secured.server.address, token=secured.b) as b:
        frame = pr.from_polars(rows, connection=a)
        assert frame.filter(pr.col("id") > 1).collect().equals(rows.filter(pl.col("id") > 1))
        # Tenant B names A's handle: as unknown as one that never existed.
        with pytest.raises(pr.NotFoundError):
            pr.DataFrame(frame.handle, b).collect()


def test_without_a_token_the_sdk_is_refused_with_a_reason(secured: Secured) -> None:
    with pr.Connection(secured.server.address, retries=0) as anonymous:
        with pytest.raises(pr.UnauthenticatedError, match="Bearer"):
            pr.from_dict({"id": [1]}, connection=anonymous)


def test_without_a_token_the_caller_is_the_anonymous_tenant_only(with_guests: Secured) -> None:
    secured = with_guests
    rows = pl.DataFrame({"id": [1, 2]})
    with pr.Connection(secured.server.address, token=secured.a) as a, \
            pr.Connection(secured.server.address) as anonymous:
        theirs = pr.from_polars(rows, connection=a)
        # Mapped to "guests" by the operator's setting: it works, in its own tenant.
        ours = pr.from_polars(rows, connection=anonymous)
        assert ours.collect().equals(rows)
        with pytest.raises(pr.NotFoundError):
            pr.DataFrame(theirs.handle, anonymous).collect()
        # A wrong token is not demoted to the anonymous tenant: it is refused.
        with pr.Connection(secured.server.address, token="pol_" + "0" * 64, retries=0) as wrong:
            with pytest.raises(pr.UnauthenticatedError, match="unknown or was revoked"):
                pr.from_polars(rows, connection=wrong)


def test_pyarrow_flight_with_and_without_a_token(secured: Secured) -> None:
    flight = pytest.importorskip("pyarrow.flight")
    rows = pl.DataFrame({"id": list(range(100))})
    with pr.Connection(secured.server.address, token=secured.a) as a:
        # Kept alive while fetched: a frame let go is dropped on the server.
        frame = pr.from_polars(rows, connection=a)
        fetch_over_flight(flight, secured, frame.handle, rows)


def fetch_over_flight(flight, secured: Secured, handle: str, rows: pl.DataFrame) -> None:  # noqa: ANN001
    with_token = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {secured.a}".encode())])
    coordinator = flight.FlightClient(f"grpc://{secured.server.address}")
    info = coordinator.get_flight_info(flight.FlightDescriptor.for_path(handle), with_token)
    endpoint = info.endpoints[0]
    location = endpoint.locations[0] if endpoint.locations else f"grpc://{secured.server.address}"
    worker = flight.FlightClient(location)
    # Straight from the worker that owns the rows, with the same token.
    table = worker.do_get(endpoint.ticket, with_token).read_all()
    assert pl.from_arrow(table).equals(rows)
    with pytest.raises(flight.FlightUnauthenticatedError):
        worker.do_get(endpoint.ticket).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        coordinator.get_flight_info(flight.FlightDescriptor.for_path(handle))
    coordinator.close()
    worker.close()


def test_the_sdk_fetches_large_results_from_workers_with_its_token(secured: Secured, monkeypatch) -> None:  # noqa: ANN001
    import polaroid.connection

    # Far below the SDK's default, so that a few MiB already move to Flight.
    monkeypatch.setattr(polaroid.connection, "FLIGHT_REST_BYTES", 1024 * 1024)
    rows = (polaroid.connection.FLIGHT_PROBE_BYTES + 4 * 1024 * 1024) // 16
    local = pl.DataFrame({"id": pl.int_range(0, rows, eager=True)})
    expected = local.with_columns(y=pl.col("id") + 1)
    with pr.Connection(secured.server.address, token=secured.a) as conn:
        large = pr.from_polars(local, connection=conn).with_columns(y=pr.col("id") + 1)
        assert large.collect().equals(expected)
        fetcher = conn._flight
        assert fetcher is not None
        # The worker's Flight endpoint took the token: probed, kept, not marked unreachable.
        workers = [uri for uri in fetcher._clients if uri != fetcher._target]
        assert workers, "the result came over Flight from its worker"
        assert not fetcher._unreachable
