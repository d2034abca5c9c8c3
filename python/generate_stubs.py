"""Regenerates the gRPC stubs shipped in `polaroid/v1` from `crates/proto` (needs
grpcio-tools). `tests/test_stubs.py` fails when the shipped ones are not current."""

from __future__ import annotations

import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parent / "crates" / "proto" / "proto"
TARGET = HERE / "polaroid" / "v1"


def generate(out: pathlib.Path) -> dict[str, bytes]:
    """Generates every stub into `out`; returns them by file name."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
    )
    if code != 0:
        raise RuntimeError("protoc failed")
    generated = out / "polaroid" / "v1"
    return {p.name: p.read_bytes() for p in sorted(generated.iterdir()) if p.is_file()}


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        stubs = generate(pathlib.Path(out))
    TARGET.mkdir(parents=True, exist_ok=True)
    for old in TARGET.glob("*_pb2*"):
        old.unlink()
    for name, content in stubs.items():
        (TARGET / name).write_bytes(content)
    (TARGET / "__init__.py").write_text('"""Generated polaroid.v1 messages and stubs (see generate_stubs.py)."""\n')
    print(f"wrote {len(stubs)} files to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
