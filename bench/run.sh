#!/usr/bin/env bash
# The benchmarks whose figures the README quotes. Run from the repository root after `make test`
# (or any command that created .venv). Appends one JSON line per run to bench/results.jsonl.
# `bench/run.sh local`, `bench/run.sh azure` or `bench/run.sh reconcile` runs one set only (default: all).
# `bench/run.sh peers` (not part of all: it needs the `peers` extra and RabbitMQ) runs cwi bench, the bare
# loop (bench/bare.py) and taskiq and dramatiq on RabbitMQ (bench/peers/) interleaved, ROUNDS times
# (default 3), in three scenarios, and prints them side by side. `bench/run.sh scale` runs cwi bench
# on PostgreSQL (CWI_BENCH_POSTGRES, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
# with 1, 2 and 4 worker processes beside SQLite's one, then bench/azure.py with 1, 2 and 4 over one
# Service Bus entity (a queue, and sessions over 128 and 32 clients) sharing such a database.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
case "$which" in
  all | local | azure | reconcile | peers | scale) ;;
  *) echo "bench/run.sh: no set named '$which' (one of: all, local, azure, reconcile, peers, scale)" >&2; exit 2 ;;
esac
if [[ ! -x .venv/bin/cwi ]]; then
  echo "bench/run.sh: no .venv here: run 'make test' (or 'make demo') first" >&2
  exit 2
fi
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), Python $(.venv/bin/python -c 'import platform; print(platform.python_version())')"

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
  # The last: the worker as `cwi run` in a process of its own (metrics served), for the peak RSS
  # operators see; the others run the pipeline in the bench's process.
  for args in "--events 5000" "--events 5000 --concurrency 32" "--events 4000 --latency-ms 100 --concurrency 64" \
              "--events 6000 --latency-ms 100 --concurrency 256 --cli"; do
    # shellcheck disable=SC2086
    record "cwi bench $args" .venv/bin/cwi bench $args
  done
fi
# Azure Service Bus through the real SDK, against the AMQP test peer that bench/azure.py starts: each
# configuration beside the bare SDK loops of bench/sb_bare.py (same peer, same work) in the same
# sitting; prints cwi / best bare loop, and for 100 ms latency the share of Little's bound. The queue
# also with CWI_SERVICEBUS_RECEIVERS=4 (--receivers 4), against the same one-receiver bare loops.
if [[ "$which" == all || "$which" == azure ]]; then
  for config in "--events 3000 --concurrency 16" \
                "--receivers 4 --events 3000 --concurrency 16" \
                "--events 3000 --latency-ms 100 --concurrency 64" \
                "--receivers 4 --events 3000 --latency-ms 100 --concurrency 64" \
                "--sessions --events 3000 --concurrency 16 --clients 32" \
                "--sessions --events 3000 --latency-ms 100 --concurrency 64 --clients 128"; do
    # shellcheck disable=SC2086
    cwi=$(record "bench/azure.py $config" .venv/bin/python bench/azure.py $config | tail -1)
    best=0
    bare_config=${config#--receivers 4 }  # the bare loops have one receiver
    modes="between per-task"
    [[ "$config" == --sessions* ]] || modes="$modes between-pipelined"  # cwi's way of completing
    for mode in $modes; do
      # shellcheck disable=SC2086
      bare=$(record "bench/sb_bare.py --mode $mode $bare_config" .venv/bin/python bench/sb_bare.py --mode $mode $bare_config | tail -1)
      best=$(.venv/bin/python -c 'import json,sys; print(max(float(sys.argv[1]), json.loads(sys.argv[2])["events_per_s"]))' "$best" "$bare")
    done
    .venv/bin/python - "$config" "$cwi" "$best" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys
config, cwi, best, load = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
line = f"azure {config}: cwi {cwi['events_per_s']}/s, best bare loop {best}/s, ratio {cwi['events_per_s'] / best:.2f}"
if cwi["latency_ms"] > 0:
    bound = cwi["concurrency"] / (cwi["latency_ms"] / 1000)
    line += f", {cwi['events_per_s'] / bound:.0%} of Little's bound ({bound:.0f}/s)"
print(f"{line}; rss {cwi['rss_mb']} MB; load {load}")
PY
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
# Scale out on PostgreSQL: 1, 2 and 4 worker processes on one database, beside SQLite's one process;
# then 1, 2 and 4 over one Service Bus entity (the test peer), sharing such a database.
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
  # The same over one Service Bus entity (the test peer): a queue, then sessions over 128 and 32 clients.
  for entity in "" "--sessions --clients 128" "--sessions --clients 32"; do
    for n in 1 2 4; do
      # shellcheck disable=SC2086
      record "bench/azure.py $entity --events 3000 --concurrency 16 --database-url POSTGRES --processes $n" \
        .venv/bin/python bench/azure.py $entity --events 3000 --concurrency 16 --database-url "$pg" --processes "$n"
    done
  done
  echo "load after: $(uptime)" >&2
fi
