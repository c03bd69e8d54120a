#!/usr/bin/env bash
# The benchmarks whose figures the README quotes. Run from the repository root after `make test`
# (or any command that created .venv). Appends one JSON line per run to bench/results.jsonl.
# `bench/run.sh local`, `bench/run.sh azure` or `bench/run.sh reconcile` runs one set only (default: all).
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
# Azure Service Bus through the real SDK, against the AMQP test peer that bench/azure.py starts: each
# configuration beside the bare SDK loops of bench/sb_bare.py (same peer, same work) in the same
# sitting; prints cwi / best bare loop, and for 100 ms latency the share of Little's bound.
if [[ "$which" == all || "$which" == azure ]]; then
  for config in "--events 3000 --concurrency 16" \
                "--events 3000 --latency-ms 100 --concurrency 64" \
                "--sessions --events 3000 --concurrency 16 --clients 32" \
                "--sessions --events 3000 --latency-ms 100 --concurrency 64 --clients 128"; do
    # shellcheck disable=SC2086
    cwi=$(record "bench/azure.py $config" .venv/bin/python bench/azure.py $config | tail -1)
    best=0
    for mode in between per-task; do
      # shellcheck disable=SC2086
      bare=$(record "bench/sb_bare.py --mode $mode $config" .venv/bin/python bench/sb_bare.py --mode $mode $config | tail -1)
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
