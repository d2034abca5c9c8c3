#!/usr/bin/env bash
# Fuzzes Polaroid's decoders (fuzz/README.md). Two ways to build the targets:
#
#   scripts/fuzz.sh [target...]          CI's run (scripts/test.sh): builds the targets in the
#                                        main build's target dir, instrumenting Polaroid's own
#                                        crates only (fuzz/rustc-sancov), then runs each for
#                                        POLAROID_FUZZ_SECONDS (30) from a temporary copy of
#                                        its committed corpus. Any crash, timeout or memory
#                                        blow-up fails the run and names the input.
#   scripts/fuzz.sh --campaign [target...]
#                                        A longer campaign with every crate instrumented
#                                        (Polars and polars-arrow included), through
#                                        cargo-fuzz (installed if missing), in
#                                        POLAROID_FUZZ_CAMPAIGN_DIR; new inputs collect in
#                                        a working corpus there, never in the checkout.
#
# Both work on the stable toolchain: with `--sanitizer none` cargo-fuzz passes no unstable
# flag, and the coverage flags (-Cpasses=sancov-module, -Cllvm-args=...) are stable.
set -uo pipefail
cd "$(dirname "$0")/.."

all_targets=(expr_decode expr_tree plan_decode arrow_ipc_upload coordinator_frames handle_parse)
seconds="${POLAROID_FUZZ_SECONDS:-30}"
campaign=false
if [ "${1:-}" = "--campaign" ]; then
  campaign=true
  shift
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

# libFuzzer's limits: an input that takes longer than `timeout` seconds, or a process over
# `rss_limit_mb`, is a failure like a crash (a request must not hold a worker that long, nor
# its memory grow that far).
libfuzzer_flags=(-rss_limit_mb=2048 -timeout=20 -print_final_stats=1)

if $campaign; then
  campaign_dir="${POLAROID_FUZZ_CAMPAIGN_DIR:-$HOME/.cache/polaroid-fuzz-target}"
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz || exit 1
  fi
  for target in "${targets[@]}"; do
    mkdir -p "$campaign_dir/corpus/$target" "$campaign_dir/artifacts/$target" "fuzz/corpus/$target"
    # The first corpus directory is the one libFuzzer adds to; the committed one is read.
    (cd fuzz && CARGO_TARGET_DIR="$campaign_dir" cargo fuzz run --dev --sanitizer none \
      "$target" "$campaign_dir/corpus/$target" "corpus/$target" -- \
      -artifact_prefix="$campaign_dir/artifacts/$target/" -max_total_time="$seconds" \
      "${libfuzzer_flags[@]}") || exit 1
  done
  exit 0
fi

# CI's build, in the main build's target dir: only Polaroid's crates (their `fuzzing`
# feature keeps them apart from the main build's copies), libFuzzer and the targets are
# compiled; every other crate is the main build's. Measured on this project's two-core
# machine (fuzz/README.md): 1.5 min with the main build in place, where `cargo fuzz
# build`, which instruments Polars too, compiled for over half an hour. A target dir of
# its own, seeded with hard links to the main one's files, kept every file the main build
# later replaced (8.8 GB of them within a day here), so the fuzz build shares the main one.
# The fuzz workspace's lock file must pin what the main one pins (fuzz/README.md), or
# this build compiles a second Polars: over half an hour instead of about one minute.
locked() { awk '/^name = /{name=$3} /^version = /{print name, $3}' "$1" | sort -u; }
drifted=$(comm -23 <(locked fuzz/Cargo.lock) <(locked Cargo.lock) |
  grep -vE '^"(polaroid-fuzz|libfuzzer-sys|arbitrary|derive_arbitrary)" ')
if [ -n "$drifted" ]; then
  echo "fuzz/Cargo.lock pins versions Cargo.lock does not:"
  echo "$drifted"
  echo "run: cp Cargo.lock fuzz/Cargo.lock && (cd fuzz && cargo metadata --format-version 1 >/dev/null)"
  exit 1
fi

export CARGO_TARGET_DIR="${POLAROID_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/polaroid-target}}"
build_log="$(mktemp)"
started=$(date +%s)
RUSTC_WRAPPER="$PWD/fuzz/rustc-sancov" cargo build --manifest-path fuzz/Cargo.toml --bins \
  2>&1 | tee "$build_log" | grep -E '^(error|warning: unused)' -A5
build_status=${PIPESTATUS[0]}
if [ "$build_status" -ne 0 ]; then
  tail -n 40 "$build_log"
  exit 1
fi
# Dependencies compiled here but not by the main build mean fuzz/Cargo.toml no longer
# gives them the main build's features: the build still works, only slower.
extra=$(grep -E '^\s+Compiling ' "$build_log" | grep -vE 'polaroid|libfuzzer-sys|arbitrary' | wc -l)
echo "fuzz build: $(( $(date +%s) - started )) s, $extra dependencies compiled besides Polaroid's crates and libFuzzer"
rm -f "$build_log"

# Runs one target and writes what it found to its report: the summary line, and on a
# failure the input and how to reproduce it.
run_target() {
  local target=$1
  local binary="$CARGO_TARGET_DIR/debug/$target"
  local artifacts="$CARGO_TARGET_DIR/fuzz-artifacts/$target"
  local log="$artifacts/last-run.log" report="$artifacts/last-run.report"
  mkdir -p "$artifacts"
  rm -f "$report"
  # A copy of the corpus: what the fuzzer finds during CI does not land in the checkout.
  local corpus
  corpus="$(mktemp -d)"
  cp -R "fuzz/corpus/$target/." "$corpus/" 2>/dev/null || true
  "$binary" "$corpus" -max_total_time="$seconds" -artifact_prefix="$artifacts/" \
    "${libfuzzer_flags[@]}" >"$log" 2>&1
  local status=$?
  rm -rf "$corpus"
  local runs speed coverage
  runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -aoE '[0-9]+$')
  speed=$(grep -aoE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -aoE '[0-9]+$')
  coverage=$(grep -aoE 'cov: [0-9]+' "$log" | tail -n 1)
  {
    echo "$target: ${runs:-?} runs, ${speed:-?} exec/s, ${coverage:-no coverage line}, exit $status"
    if [ "$status" -ne 0 ]; then
      grep -aE 'ERROR: libFuzzer|panicked|escaped|overflowed|memory allocation|SUMMARY' "$log" | head -n 20
      local found
      found=$(grep -aoE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/Test unit written to //')
      echo "FUZZ FAILURE in $target; the whole log: $log"
      if [ -n "$found" ]; then
        echo "  input: $found ($(wc -c <"$found") bytes, base64 below)"
        base64 -w0 "$found" | head -c 4096
        echo
        echo "  reproduce: $binary $found"
        echo "  or, with every crate instrumented: (cd fuzz && cargo +stable fuzz run --dev --sanitizer none $target $found)"
        echo "  then minimize it (-minimize_crash=1), fix the cause, add a test, and commit the input as fuzz/corpus/$target/crash-<what>"
      fi
    fi
  } >"$report"
  return "$status"
}

# Targets run side by side, one per CPU (POLAROID_FUZZ_JOBS): with CI's two cores, six
# targets of 30 s take 90 s.
jobs="${POLAROID_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait
failed=0
for target in "${targets[@]}"; do
  report="$CARGO_TARGET_DIR/fuzz-artifacts/$target/last-run.report"
  if [ ! -s "$report" ]; then
    echo "FUZZ FAILURE in $target: its run left no report"
    failed=1
    continue
  fi
  cat "$report"
  grep -q '^FUZZ FAILURE' "$report" && failed=1
done
exit "$failed"
