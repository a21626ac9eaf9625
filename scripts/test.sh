#!/usr/bin/env bash
# Every test: installs what they need beyond the Rust toolchain (pyarrow, the independent
# Parquet reader; prometheus_client, the independent metrics parser; redis-server, which the
# shared-quota tests start on ports of their own), then runs unit and integration tests
# against the real binary. Idempotent: what is there already is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/requirements.txt
# openssl makes the certificates of the rediss:// test's server.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server openssl >/dev/null
fi
# Property tests draw the same cases on every run (override to explore).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261202}"
# The tests that count every request in each sliding second run on their own afterwards,
# one at a time: a pacer spaces its grants, but a server counts arrivals, and on two cores
# busy with the other tests a job paused for tens of milliseconds between grant and send
# lets 51 arrive in one second of a quota of 50 (seen in CI). Alone, the only load is theirs.
# A new test of that kind belongs in this list, and so does one whose processes wait on
# each other's locks within SQLite's 5 s busy timeout (two jobs on one cache file).
ALONE=(
    combos::two_jobs_started_together_on_one_cache_file_both_finish
    cron::two_jobs_opening_one_old_cache_together_both_use_it_migrated
    combos::check_takes_its_turns_in_the_shared_quota
    combos::jobs_of_mixed_rates_on_one_quota_are_held_to_the_smallest
    gateway::a_stated_limit_already_held_slows_the_job_as_a_plain_429
    rate::rate_equal_to_the_server_limit_never_trips_it
    shared::redis_lost_mid_run_stops_the_run_and_the_rerun_finishes
    shared::two_and_three_jobs_share_one_quota
    shared::a_per_minute_window_holds_across_jobs
    shared::a_limit_one_job_learns_holds_for_all
    shared::when_one_job_goes_the_others_take_up_its_share
    stress::a_fractional_rate_holds_in_every_sliding_second
    stress::the_rate_holds_while_a_slow_token_refresh_runs
)
skips=()
for t in "${ALONE[@]}"; do skips+=(--skip "$t"); done
cargo test --all-targets -- "${skips[@]}"
listed=$(cargo test -q --test it -- --list --exact "${ALONE[@]}" | grep -c ': test$' || true)
if [ "$listed" != "${#ALONE[@]}" ]; then
    echo "scripts/test.sh: ALONE names ${#ALONE[@]} tests, but only $listed exist: fix the list" >&2
    exit 1
fi
cargo test --test it -- --test-threads 1 --exact "${ALONE[@]}"
