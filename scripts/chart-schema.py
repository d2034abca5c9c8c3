#!/usr/bin/env python3
"""Writes the `coordinator.config` and `worker.config` parts of
charts/polaroid/values.schema.json from the binaries' settings structs
(crates/coordinator/src/config.rs, crates/worker/src/config.rs): one property per TOML
key, typed as serde reads it, so `helm install` refuses a key the binary would refuse at
start. Keys the chart sets itself are listed as such (the render then fails saying so).
`--check` exits 1 when the schema is stale (scripts/chart-check.sh runs it); the boot
test (tests/chart) shows the binary accepts every key listed.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "charts" / "polaroid" / "values.schema.json"
STRUCTS = {
    "coordinator": (ROOT / "crates/coordinator/src/config.rs", "CoordinatorConfig"),
    "worker": (ROOT / "crates/worker/src/config.rs", "WorkerConfig"),
}
# Set by the chart (templates/_helpers.tpl, polaroid.validate, keeps the same lists).
RESERVED = {
    "coordinator": ["bind_address", "http_address", "redis_url", "redis_prefix", "auth", "tls", "quotas"],
    "worker": ["bind_address", "http_address", "coordinator_url", "advertise_address", "worker_id",
               "handle_store", "state_dir", "store_url", "data_roots", "redis_url", "redis_prefix",
               "auth", "tls", "quotas"],
}
# Test hooks, not for operators.
LEFT_OUT = {"debug_panic_on_operation"}
TYPES = {
    "f64": {"type": "number"},
    "bool": {"type": "boolean"},
    "String": {"type": "string"},
    "PathBuf": {"type": "string"},
    "Vec<String>": {"type": "array", "items": {"type": "string"}},
    "Vec<PathBuf>": {"type": "array", "items": {"type": "string"}},
    "RoutingPolicy": {"type": "string", "enum": ["affinity", "round_robin"]},
}
for unsigned in ("usize", "u64", "u32", "u16"):
    TYPES[unsigned] = {"type": "integer", "minimum": 0}


def fields(path: pathlib.Path, struct: str) -> list[tuple[str, str, str]]:
    """(name, type, doc) of each serialized field of `struct`."""
    text = path.read_text()
    body = text[text.index(f"pub struct {struct} {{"):]
    body = body[:body.index("\n}\n")]
    out, doc, skip = [], [], False
    for line in body.splitlines()[1:]:
        line = line.strip()
        if line.startswith("///"):
            doc.append(line[3:].strip())
        elif line.startswith("#[serde(skip"):
            skip = True
        elif match := re.match(r"pub (\w+): (.+),$", line):
            if not skip:
                out.append((match.group(1), match.group(2), " ".join(doc)))
            doc, skip = [], False
    return out


def config_schema(component: str) -> dict:
    path, struct = STRUCTS[component]
    properties = {}
    for name, rust_type, doc in fields(path, struct):
        if name in LEFT_OUT:
            continue
        if name in RESERVED[component]:
            properties[name] = {"description": "set by the chart: remove it (the render fails saying so)"}
            continue
        short = rust_type.rsplit("::", 1)[-1]
        if short not in TYPES:
            raise SystemExit(f"{path}: {struct}.{name} has type {rust_type}, which scripts/chart-schema.py does not map")
        properties[name] = {**TYPES[short], **({"description": doc} if doc else {})}
    return {
        "type": "object",
        "description": f"settings of `polaroid {component}` (docs/configuration.md), written to its TOML "
                       f"file; generated from {struct} by scripts/chart-schema.py",
        "additionalProperties": False,
        "properties": properties,
    }


def main() -> int:
    schema = json.loads(SCHEMA.read_text())
    for component in STRUCTS:
        schema["properties"][component]["properties"]["config"] = config_schema(component)
    fresh = json.dumps(schema, indent=2) + "\n"
    if "--check" in sys.argv:
        if fresh != SCHEMA.read_text():
            print("charts/polaroid/values.schema.json is stale: run scripts/chart-schema.py")
            return 1
        return 0
    SCHEMA.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
