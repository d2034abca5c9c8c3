"""The stubs shipped in polaroid/v1 are the ones crates/proto generates now."""

import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parents[1]


def test_shipped_stubs_are_current():
    sys.path.insert(0, str(HERE))
    try:
        from generate_stubs import TARGET, generate
    finally:
        sys.path.remove(str(HERE))
    with tempfile.TemporaryDirectory() as out:
        fresh = generate(pathlib.Path(out))
    shipped = {p.name: p.read_bytes() for p in TARGET.iterdir() if p.name != "__init__.py" and p.is_file()}
    stale = sorted(name for name in fresh.keys() | shipped.keys() if fresh.get(name) != shipped.get(name))
    assert not stale, f"run `python python/generate_stubs.py`: {stale} differ from crates/proto"
