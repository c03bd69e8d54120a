#!/usr/bin/env bash
# The benchmarks whose figures the README quotes. Run from the repository root after `make test`
# (or any command that created .venv). Appends one JSON line per run to bench/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), Python $(.venv/bin/python -c 'import platform; print(platform.python_version())')"
for args in "--events 5000" "--events 5000 --concurrency 32" "--events 4000 --latency-ms 100 --concurrency 64"; do
  # shellcheck disable=SC2086
  result=$(.venv/bin/cwi bench $args)
  echo "$result"
  printf '{"at": "%s", "machine": "%s", "command": "cwi bench %s", "result": %s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$machine" "$args" "$result" >> bench/results.jsonl
done
