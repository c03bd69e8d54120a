#!/usr/bin/env bash
# The benchmarks whose figures the README quotes. Run from the repository root after `make test`
# (or any command that created .venv). Appends one JSON line per run to bench/results.jsonl.
# `bench/run.sh local`, `bench/run.sh azure` or `bench/run.sh reconcile` runs one set only (default: all).
# `bench/run.sh peers` (not part of all: it needs the `peers` extra and RabbitMQ) runs cwi bench, the bare
# loop (bench/bare.py) and taskiq and dramatiq on RabbitMQ (bench/peers/) interleaved, ROUNDS times
# (default 3), in three scenarios, and prints them side by side. `bench/run.sh scale` runs cwi bench
# on PostgreSQL (CWI_BENCH_POSTGRES, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
# with 1, 2 and 4 worker processes beside SQLite's one.
set -euo pipefail
cd "$(dirname "$0")/.."
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), Python $(.venv/bin/python -c 'import platform; print(platform.python_version())')"
which="${1:-all}"

record() {  # record <command shown in results.jsonl> <command to run...>
  local shown="$1"
  shift
  local result
  result=$("$@")
  echo "$result"
  printf '{"at": "%s", "machine": "%s", "command": "%s", "result": %s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$machine" "$shown" "$result" >> bench/results.jsonl
}

if [[ "$which" == all || "$which" == local ]]; then
  for args in "--events 5000" "--events 5000 --concurrency 32" "--events 4000 --latency-ms 100 --concurrency 64"; do
    # shellcheck disable=SC2086
    record "cwi bench $args" .venv/bin/cwi bench $args
  done
fi
# Azure Service Bus through the real SDK, against the AMQP test peer that bench/azure.py starts.
if [[ "$which" == all || "$which" == azure ]]; then
  for args in "--events 2000" "--events 4000 --concurrency 64" "--sessions --events 2000 --concurrency 64"; do
    # shellcheck disable=SC2086
    record "bench/azure.py $args" .venv/bin/python bench/azure.py $args
  done
fi
# Reconciliation of 10,000 customers per side, against the sandbox and against the Tripletex fake.
if [[ "$which" == all || "$which" == reconcile ]]; then
  for args in "--records 10000 --drift 100" "--records 10000 --drift 100 --erp tripletex"; do
    # shellcheck disable=SC2086
    record "bench/reconcile.py $args" .venv/bin/python bench/reconcile.py $args
  done
fi

# The peers side by side, in one sitting: A = latency 0, 16 in flight; B = 100 ms, 64; C = 100 ms, 256.
if [[ "$which" == peers ]]; then
  .venv/bin/python -c 'import taskiq_aio_pika, dramatiq' 2>/dev/null || .venv/bin/python -m pip install -q -e '.[peers]'
  rounds="${ROUNDS:-3}"
  sitting=$(mktemp)
  echo "load before: $(uptime)" >&2
  for round in $(seq "$rounds"); do
    for scenario in "--events ${EVENTS_A:-5000} --concurrency 16 --latency-ms 0" \
                    "--events ${EVENTS_B:-3000} --concurrency 64 --latency-ms 100" \
                    "--events ${EVENTS_C:-6000} --concurrency 256 --latency-ms 100"; do
      # shellcheck disable=SC2086
      {
        record "cwi bench $scenario" .venv/bin/cwi bench $scenario
        record "bench/bare.py $scenario" .venv/bin/python bench/bare.py $scenario
        record "bench/peers/taskiq_bench.py $scenario" .venv/bin/python bench/peers/taskiq_bench.py $scenario
        record "bench/peers/dramatiq_bench.py $scenario" .venv/bin/python bench/peers/dramatiq_bench.py $scenario
      } | tee -a "$sitting" >&2
    done
    echo "round $round done: $(uptime)" >&2
  done
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $machine, load after: $(uptime | sed 's/.*load average: //')"
  .venv/bin/python bench/peers/table.py < "$sitting"
  rm -f "$sitting"
fi
# Scale out on PostgreSQL: 1, 2 and 4 worker processes on one database, beside SQLite's one process.
if [[ "$which" == scale ]]; then
  pg="${CWI_BENCH_POSTGRES:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}"
  echo "load before: $(uptime)" >&2
  for scenario in "--events ${EVENTS_A:-5000} --concurrency 16" "--events ${EVENTS_B:-3000} --concurrency 64 --latency-ms 100"; do
    # shellcheck disable=SC2086
    record "cwi bench $scenario" .venv/bin/cwi bench $scenario
    for n in 1 2 4; do
      # shellcheck disable=SC2086
      record "cwi bench $scenario --database-url POSTGRES --processes $n" .venv/bin/cwi bench $scenario --database-url "$pg" --processes "$n"
    done
  done
  echo "load after: $(uptime)" >&2
fi
