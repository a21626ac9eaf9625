#!/usr/bin/env bash
# Every test: installs what they need beyond the Rust toolchain (pyarrow, the independent
# Parquet reader; prometheus_client, the independent metrics parser; redis-server, which the
# shared-quota tests start on ports of their own), then runs unit and integration tests
# against the real binary. Idempotent: what is there already is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/requirements.txt
if ! command -v redis-server >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
# Property tests draw the same cases on every run (override to explore).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261202}"
cargo test --all-targets
