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
