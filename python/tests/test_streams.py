"""Network sources through the SDK against `polaroid standalone`: REST answers read with
the contract's request (schema, pagination, formats), and `stream_rest_api` as an
iterator of Polars DataFrames, polling a server whose answer changes, stopped by closing
the iterator."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import polaroid as pr

SOURCE_COLUMNS = ["_received_at", "_source_position"]


@pytest.fixture(scope="module")
def conn(standalone):
    with pr.connect(standalone.address) as connection:
        yield connection


class Peer:
    """A REST server on loopback: `/feed` answers the records in `feed` now (and counts
    its requests); `/pages?page=N` two records a page for pages 1 to 3."""

    def __init__(self) -> None:
        self.feed: list[dict] = []
        self.requests = 0
        self.lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - the http.server API
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path not in ("/feed", "/pages"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with peer.lock:
                    if url.path == "/feed":
                        peer.requests += 1
                        records = list(peer.feed)
                    else:
                        page = int(query.get("page", ["1"])[0])
                        records = [{"id": i, "name": f"n{i}"} for i in (2 * page - 1, 2 * page)] if page <= 3 else []
                body = json.dumps(records).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peer() -> Iterator[Peer]:
    running = Peer()
    yield running
    running.close()


def pages(*ids: int) -> pl.DataFrame:
    return pl.DataFrame([{"id": i, "name": f"n{i}"} for i in ids])


def test_read_rest_api_with_the_contracts_request(conn, peer):
    paged = pr.read_rest_api(
        f"{peer.url}/pages", pagination={"page_number": {"page_param": "page", "page_size": 2}},
        schema={"name": "String", "id": "Int32"}, rate_limit=50,
    )
    assert_frame_equal(paged.collect(), pages(1, 2, 3, 4, 5, 6).select("name", pl.col("id").cast(pl.Int32)))
    # A rate below one request a second, and a format name.
    one = pr.read_rest_api(f"{peer.url}/pages?page=2", rate_limit=0.5, format="json")
    assert_frame_equal(one.collect(), pages(3, 4))
    with pytest.raises(ValueError, match="unknown format"):
        pr.read_rest_api(f"{peer.url}/pages", format="xml")
    with pytest.raises(pr.InvalidArgumentError, match="schema_json"):
        pr.read_rest_api(f"{peer.url}/pages", schema="{not json")


def test_stream_rest_api_yields_every_page(conn, peer):
    frames = list(pr.stream_rest_api(f"{peer.url}/pages", pagination={"page_number": {}}))
    assert len(frames) == 3
    for frame in frames:
        assert frame.columns[-2:] == SOURCE_COLUMNS
        assert frame.schema["_received_at"] == pl.Datetime("us", "UTC")
    whole = pl.concat(frames).drop(SOURCE_COLUMNS)
    assert_frame_equal(whole, pages(1, 2, 3, 4, 5, 6))
    assert pl.concat(frames)["_source_position"].to_list() == ["0:0:0", "0:0:1", "0:1:0", "0:1:1", "0:2:0", "0:2:1"]


def test_stream_rest_api_polls_until_closed(conn, peer):
    peer.feed.extend([{"id": 1, "name": "n1"}, {"id": 2, "name": "n2"}])
    stream = pr.stream_rest_api(f"{peer.url}/feed", poll_interval=0.03)
    assert_frame_equal(next(stream).drop(SOURCE_COLUMNS), pages(1, 2))
    with peer.lock:
        peer.feed.append({"id": 3, "name": "n3"})
    assert_frame_equal(next(stream).drop(SOURCE_COLUMNS), pages(3))
    stream.close()
    # The server stops polling once the iterator is closed.
    deadline = time.monotonic() + 10
    while True:
        before = peer.requests
        time.sleep(0.3)
        if peer.requests == before:
            break
        assert time.monotonic() < deadline, "still polled after the iterator was closed"


def test_stream_errors_are_exceptions(conn, peer):
    with pytest.raises(pr.InvalidArgumentError, match="max_pages"):
        next(pr.stream_rest_api(f"{peer.url}/feed", poll_interval=0.05, max_pages=0))
    with pytest.raises(pr.NotFoundError, match="HTTP 404"):
        list(pr.stream_rest_api(f"{peer.url}/nothing-here"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis-server on a free loopback port (the one the Rust tests use)."""
    import os
    import socket
    import subprocess
    import tempfile

    binary = os.environ.get("POLAROID_REDIS_SERVER", "/usr/bin/redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="polaroid-sdk-redis-") as state:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", state, "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


def redis_command(url: str, *args: str) -> bytes:
    """One command in RESP over a socket of its own; the raw reply."""
    import socket

    host, port = urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port
    request = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(request)
        return connection.recv(65536)


def test_stream_message_queue_reads_a_redis_stream(conn, redis_url):
    redis_command(redis_url, "XADD", "events", "*", "data", json.dumps({"kind": "a", "n": 1}))
    redis_command(redis_url, "XADD", "events", "*", "data", json.dumps({"kind": "b", "n": 2}))
    stream = pr.stream_message_queue(
        redis_url, "events", format="json", start_id="0", schema={"kind": "String", "n": "Int32"},
    )
    frames = []
    while sum(f.height for f in frames) < 2:
        frames.append(next(stream))
    stream.close()
    whole = pl.concat(frames)
    assert whole.columns == ["kind", "n", *SOURCE_COLUMNS]
    assert_frame_equal(whole.drop(SOURCE_COLUMNS), pl.DataFrame({"kind": ["a", "b"], "n": [1, 2]}, schema={"kind": pl.String, "n": pl.Int32}))
    # A Redis URL for a Kafka stream: refused before any connection.
    with pytest.raises(pr.InvalidArgumentError, match="scheme `redis` is not kafka"):
        next(pr.stream_message_queue(redis_url, "events", type="kafka"))


def test_stream_web_socket_reads_frames(conn):
    import asyncio

    websockets = pytest.importorskip("websockets.asyncio.server")
    started = threading.Event()
    port: list[int] = []

    async def handler(ws):
        for i in (1, 2, 3):
            await ws.send(json.dumps({"id": i}))
        await ws.close()

    async def serve():
        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            started.set()
            await asyncio.sleep(30)

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    assert started.wait(10)
    frames = list(pr.stream_web_socket(f"ws://127.0.0.1:{port[0]}/", schema={"id": "Int64"}, buffer_size=2))
    assert all(f.height <= 2 for f in frames)
    assert_frame_equal(pl.concat(frames).drop(SOURCE_COLUMNS), pl.DataFrame({"id": [1, 2, 3]}))


def test_read_stream_keeps_a_bounded_window_as_a_frame(conn, peer, redis_url, capsys):
    paged = pr.sources.rest_api(f"{peer.url}/pages", pagination={"page_number": {}})
    # The source's end: every page.
    whole = pr.read_stream(paged, duration=30)
    assert isinstance(whole, pr.DataFrame)
    assert whole.columns[-2:] == SOURCE_COLUMNS
    assert_frame_equal(whole.collect().drop(SOURCE_COLUMNS), pages(1, 2, 3, 4, 5, 6))
    # A row bound cuts the page that passes it, with a progress bar meanwhile.
    three = pr.read_stream(paged, max_rows=3, progress=True)
    assert_frame_equal(three.collect().drop(SOURCE_COLUMNS), pages(1, 2, 3))
    assert "capture" in capsys.readouterr().err
    # An idle gap on a queue that holds two entries, from a connection's method.
    for n in (1, 2):
        redis_command(redis_url, "XADD", "ticks", "*", "n", str(n))
    queue = pr.sources.message_queue(redis_url, "ticks", start_id="0", schema={"n": "Int64"})
    ticks = conn.read_stream(queue, idle=0.5, name="ticks")
    assert ticks.collect()["n"].to_list() == [1, 2]
    # Bounds: one is needed, and the server holds them to its caps.
    with pytest.raises(ValueError, match="needs a bound"):
        pr.read_stream(paged)
    with pytest.raises(TypeError, match="polaroid.sources"):
        pr.read_stream(f"{peer.url}/pages", max_rows=1)
    with pytest.raises(pr.InvalidArgumentError, match="stream_max_rows"):
        pr.read_stream(paged, max_rows=10**12)
    # A source that fails makes no frame: its error.
    with pytest.raises(pr.NotFoundError, match="HTTP 404"):
        pr.read_stream(pr.sources.rest_api(f"{peer.url}/nothing-here"), max_rows=5)


_GRPC_PEER_PROTO = """
syntax = "proto3";
package sdkpeer.v1;
message Ask { int32 count = 1; }
message Item { int64 id = 1; string name = 2; repeated int32 tags = 3; }
service Items { rpc List(Ask) returns (stream Item); }
"""


def test_stream_grpc_reads_replies(conn, tmp_path):
    import importlib
    import sys
    from concurrent import futures

    grpc_server = pytest.importorskip("grpc")
    protoc = pytest.importorskip("grpc_tools.protoc")
    reflection = pytest.importorskip("grpc_reflection.v1alpha.reflection")
    import importlib.resources

    (tmp_path / "sdkpeer.proto").write_text(_GRPC_PEER_PROTO)
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    assert protoc.main(["protoc", f"-I{tmp_path}", f"-I{include}", f"--python_out={tmp_path}",
                        f"--grpc_python_out={tmp_path}", "sdkpeer.proto"]) == 0
    sys.path.insert(0, str(tmp_path))
    try:
        messages = importlib.import_module("sdkpeer_pb2")
        services = importlib.import_module("sdkpeer_pb2_grpc")
    finally:
        sys.path.remove(str(tmp_path))

    class Items(services.ItemsServicer):
        def List(self, request, context):  # noqa: N802 - the generated API
            for i in range(request.count):
                yield messages.Item(id=i, name=f"n{i}", tags=list(range(i)))

    server = grpc_server.server(futures.ThreadPoolExecutor(max_workers=2))
    services.add_ItemsServicer_to_server(Items(), server)
    reflection.enable_server_reflection(("sdkpeer.v1.Items", reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        frames = list(pr.stream_grpc(f"http://127.0.0.1:{port}", "sdkpeer.v1.Items", "List",
                                     messages.Ask(count=3), batch_rows=2))
        assert all(f.height <= 2 for f in frames)
        whole = pl.concat(frames)
        assert whole.columns == ["id", "name", "tags", *SOURCE_COLUMNS]
        assert_frame_equal(
            whole.drop(SOURCE_COLUMNS),
            pl.DataFrame({"id": [0, 1, 2], "name": ["n0", "n1", "n2"], "tags": [[], [0], [0, 1]]},
                         schema={"id": pl.Int64, "name": pl.String, "tags": pl.List(pl.Int32)}),
        )
        with pytest.raises(pr.InvalidArgumentError, match=r"request_proto \(4\)"):
            next(pr.stream_grpc(f"http://127.0.0.1:{port}", "sdkpeer.v1.Items", "List", b"\x0a\x05a"))
    finally:
        server.stop(None)
