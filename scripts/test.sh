#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing (Debian
# packages, the Node and Python test tools into project-local directories),
# then runs `cargo fmt --check`, `cargo clippy -D warnings`, every test and
# each cargo-fuzz target for a bounded time (fuzz/run.sh).
#
# PostgreSQL: tests use the server named by TEST_DATABASE_URL when it is set
# (each test gets a fresh database there); otherwise they start their own
# throwaway cluster with initdb on a random loopback port. slapd: the tests
# start their own on a random loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -x /usr/sbin/slapd ] || command -v slapd >/dev/null 2>&1 || missing+=(slapd)
command -v ldapadd >/dev/null 2>&1 || missing+=(ldap-utils)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# The console's end-to-end test (tests/api/ui_browser.rs) drives Debian's chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  log=$(mktemp)
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2; echo "apt-get install of ${missing[*]} failed" >&2; exit 1
  fi
  rm -f "$log"
fi

if [ -f tools/package.json ]; then
  echo "==> installing Node test tools into tools/node_modules"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
fi
if [ -f tools/requirements.txt ]; then
  echo "==> installing Python test tools into .venv"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
fi

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked --all-targets -- --color never
echo "==> fuzz targets (FUZZ_SECONDS each, default 30; skipped without a nightly toolchain)"
./fuzz/run.sh "${FUZZ_SECONDS:-30}"
echo "==> all checks passed"
