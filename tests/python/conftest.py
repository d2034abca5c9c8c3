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


@pytest.fixture(scope="session")
def worker_address(data_root):
    binary = polaroid_binary()
    assert binary.exists(), f"{binary} not built; run cargo build first"
    process = subprocess.Popen(
        [str(binary), "worker", "--bind", "127.0.0.1:0", "--data-root", str(data_root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    assert "listening on" in line, f"worker did not start: {line!r}"
    address = line.strip().rsplit(" ", 1)[-1]
    yield address
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture()
def stub(pb, worker_address):
    import grpc

    # Default channel options, as an existing client has: 4 MiB max receive.
    channel = grpc.insecure_channel(worker_address)
    grpc.channel_ready_future(channel).result(timeout=30)
    yield pb.grpc.DataFrameServiceStub(channel)
    channel.close()
