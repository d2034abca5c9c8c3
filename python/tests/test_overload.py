"""A busy server against the SDK: a standalone whose coordinator serves two calls at once
answers the rest RESOURCE_EXHAUSTED with gRPC's retry pushback, and the SDK waits as
asked and tries again, so every call of a burst succeeds; without retries the refusal
surfaces as ResourceExhaustedError."""

from __future__ import annotations

import concurrent.futures
import http.server
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

import polaroid as pr
from conftest import Process


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers one JSON row after 300 ms."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        time.sleep(0.3)
        body = b'[{"a": 1}]'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rows"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def busy() -> Iterator[Process]:
    with tempfile.TemporaryDirectory(prefix="polaroid-sdk-busy-") as state:
        server = Process(
            "standalone", "--state-dir", state,
            env={"POLAROID_COORDINATOR_MAX_CONCURRENT_CALLS": "2"},
        )
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def burst(conn: pr.Connection, url: str, calls: int) -> list[object]:
    """`calls` REST reads at once; each result, or the exception it raised."""
    def read(i: int) -> object:
        try:
            return conn.read_rest_api(f"{url}?call={i}").collect().height
        except pr.PolaroidError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(calls) as pool:
        return list(pool.map(read, range(calls)))


def test_a_burst_past_the_servers_limit_succeeds_by_waiting_as_asked(busy: Process, slow_url: str) -> None:
    with pr.connect(busy.address, retries=40, timeout=60) as conn:
        assert burst(conn, slow_url, 8) == [1] * 8


def test_without_retries_the_refusal_names_the_limit(busy: Process, slow_url: str) -> None:
    with pr.connect(busy.address, retries=0) as conn:
        outcomes = burst(conn, slow_url, 8)
    refused = [o for o in outcomes if isinstance(o, pr.ResourceExhaustedError)]
    assert refused, outcomes
    assert all(o == 1 or isinstance(o, pr.ResourceExhaustedError) for o in outcomes), outcomes
    assert "limit of 2 calls at once" in refused[0].message
