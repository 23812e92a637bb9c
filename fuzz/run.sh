#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each (default 30 s;
# `fuzz/run.sh 300` or FUZZ_SECONDS=300 for longer). Needs a nightly
# toolchain and cargo-fuzz; without either it says so and exits 0, so that
# CI does not fail on machines without them. A crash fails the run and
# leaves the input under fuzz/artifacts/<target>/.
set -euo pipefail
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."
seconds="${1:-${FUZZ_SECONDS:-30}}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked >/dev/null 2>&1; then
        echo "fuzz: skipped: cargo-fuzz is not installed and could not be (cargo install cargo-fuzz --locked)"
        exit 0
    fi
fi
# Sanitizer builds share nothing with the normal ones: keep them apart.
target_dir="${FUZZ_TARGET_DIR:-$fuzz_dir/target}"
for target in $(cargo +nightly fuzz list); do
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384)
    if [[ -f "$fuzz_dir/dicts/$target.dict" ]]; then
        args+=(-dict="$fuzz_dir/dicts/$target.dict")
    fi
    echo "fuzz: $target for ${seconds}s"
    cargo +nightly fuzz run --target-dir "$target_dir" "$target" -- "${args[@]}"
done
