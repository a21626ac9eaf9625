#!/usr/bin/env bash
# Every test: installs what they need beyond the Rust toolchain (pyarrow, the independent
# Parquet reader), then runs unit and integration tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/requirements.txt
cargo test --all-targets
