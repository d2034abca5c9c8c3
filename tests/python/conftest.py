"""Fixtures for the existing-client tests: stubs generated from crates/proto, and a real
`polaroid worker` process on an ephemeral loopback port."""

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "crates" / "proto" / "proto"


def polaroid_binary() -> pathlib.Path:
    explicit = os.environ.get("POLAROID_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "polaroid"


@pytest.fixture(scope="session")
def pb():
    """The polaroid.v1 messages and stubs, generated now from the .proto files."""
    from grpc_tools import protoc

    out = pathlib.Path(tempfile.mkdtemp(prefix="polaroid-stubs-"))
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    assert code == 0, "protoc failed"
    for package in (out / "polaroid", out / "polaroid" / "v1"):
        (package / "__init__.py").touch()
    sys.path.insert(0, str(out))
    from polaroid.v1 import dataframe_pb2, dataframe_pb2_grpc, expr_pb2

    class Stubs:
        df = dataframe_pb2
        grpc = dataframe_pb2_grpc
        expr = expr_pb2

    return Stubs


@pytest.fixture(scope="session")
def data_root():
    with tempfile.TemporaryDirectory(prefix="polaroid-data-") as root:
        yield pathlib.Path(root)


def wait_ready(http_address: str, timeout: float = 30.0) -> None:
    """Waits until the process answers /readyz with 200 (a coordinator: workers joined)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{http_address}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, f"{http_address} not ready within {timeout} s"
        time.sleep(0.05)


# Existing clients must work unchanged against a lone worker and against the coordinator
# of `polaroid standalone` (which forwards every call to its workers).
@pytest.fixture(scope="session", params=["worker", "standalone"])
def worker_address(request, data_root):
    binary = polaroid_binary()
    assert binary.exists(), f"{binary} not built; run cargo build first"
    command = [str(binary), request.param, "--bind", "127.0.0.1:0", "--http-address", "127.0.0.1:0"]
    command += ["--data-root", str(data_root)]
    state = tempfile.TemporaryDirectory(prefix="polaroid-state-")
    if request.param == "standalone":
        command += ["--state-dir", state.name]
    # The REST tests' server is on loopback, which a lone worker's REST sources reach
    # only when its operator allows it (standalone on loopback allows it by itself).
    env = {**os.environ, "POLAROID_REST_ALLOW_PRIVATE_NETWORKS": "true"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    assert "listening on" in line, f"{request.param} did not start: {line!r}"
    address = line.strip().rsplit(" ", 1)[-1]
    http_address = process.stdout.readline().strip().rsplit(" ", 1)[-1]
    wait_ready(http_address)
    yield address
    process.terminate()
    process.wait(timeout=30)
    state.cleanup()


@pytest.fixture()
def stub(pb, worker_address):
    import grpc

    # Default channel options, as an existing client has: 4 MiB max receive.
    channel = grpc.insecure_channel(worker_address)
    grpc.channel_ready_future(channel).result(timeout=30)
    yield pb.grpc.DataFrameServiceStub(channel)
    channel.close()
