#!/usr/bin/env bash
# LDAP poll benchmark (issue #5); what it measures: examples/ldap_bench.rs.
#   scripts/bench-ldap.sh                      # SQLite only: 50 000 users, 5 000 groups, 3 runs
#   BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres scripts/bench-ldap.sh
#   scripts/bench-ldap.sh --users 10000 --groups 1000 --runs 1
#   scripts/bench-ldap.sh --membership member_of   # memberOf written into the LDIF, polled in that mode
# With BENCH_POSTGRES each run creates its own database on that server and
# drops it afterwards. Needs slapd and ldap-utils (apt-get install -y slapd ldap-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [ -n "${BENCH_POSTGRES:-}" ]; then args+=(--postgres "$BENCH_POSTGRES"); fi
cargo build --release --quiet --example ldap_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/ldap_bench" "${args[@]}"
