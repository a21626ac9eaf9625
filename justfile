# Tasks for people and CI. `just` is optional: each recipe is one plain command.

# Every test (installs pyarrow, the independent Parquet reader, first).
test:
    bash scripts/test.sh

# The benchmark table of the README (about 15 minutes; BENCH_QUICK=1 for a short run).
bench:
    python3 scripts/bench.py

# The main job on the bundled sample, against the built-in simulator.
demo:
    cargo run --release -- demo

# Install the release binary as /usr/local/bin/callinfo (the path of the README's cron examples).
install:
    cargo install --locked --path . --root /usr/local
