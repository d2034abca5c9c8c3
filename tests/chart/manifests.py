"""Reading rendered manifests: shared by scripts/chart-check.sh (Helm 3 against Helm 4)
and the boot test."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "polaroid"


def render(helm: str, values: list[pathlib.Path], *, kube_version: str = "1.33.0",
           release: str = "polaroid", namespace: str = "data", extra: list[str] | None = None) -> list[dict]:
    """`helm template` of the chart, as a list of objects."""
    command = [helm, "template", release, str(CHART), "--namespace", namespace,
               "--kube-version", kube_version]
    for path in values:
        command += ["-f", str(path)]
    out = subprocess.run([*command, *(extra or [])], check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def normalized(objects: list[dict]) -> list[dict]:
    """The objects in a stable order, with what each render makes anew (generated
    secrets, and the Redis password inside the URL) masked."""
    out = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            obj = {**obj, "data": {key: "<generated>" for key in obj.get("data", {})}}
        out.append(obj)
    return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))


def main() -> int:
    """chart-check.sh: compare.py HELM3_OUT HELM4_OUT exits 1 when the renders differ."""
    first, second = (normalized([d for d in yaml.safe_load_all(open(p)) if d]) for p in sys.argv[1:3])
    if first == second:
        return 0
    import difflib
    a = yaml.safe_dump_all(first, sort_keys=True).splitlines()
    b = yaml.safe_dump_all(second, sort_keys=True).splitlines()
    print("\n".join(difflib.unified_diff(a, b, "helm3", "helm4", lineterm="")))
    return 1


if __name__ == "__main__":
    sys.exit(main())
