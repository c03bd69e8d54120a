"""Reads the JSON lines of one sitting (``bench/run.sh peers``) and prints the contenders side by side:
the median of each (contender, scenario), its range, its share of the bare loop and of Little's bound."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any


def main() -> None:
    runs: dict[tuple[str, int, float], list[dict[str, Any]]] = defaultdict(list)
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            name = r.get("contender") or f"cwi ({r.get('database', 'sqlite')}, {r.get('processes', 1)} proc)"
            runs[(name, r["concurrency"], r["latency_ms"])].append(r)
    bare = {
        (c, lat): statistics.median(x["events_per_s"] for x in rs)
        for (n, c, lat), rs in runs.items()
        if n == "bare"
    }
    print(
        "| contender | latency ms | in flight | events/s (median, range) | of bare | of Little's bound "
        "| CPU ms/event | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (name, conc, lat), rs in sorted(runs.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        rates = [x["events_per_s"] for x in rs]
        med = statistics.median(rates)
        of_bare = f"{med / bare[(conc, lat)]:.2f}" if (conc, lat) in bare else ""
        bound = f"{med / (conc * 1000 / lat):.2f}" if lat > 0 else ""
        cpu = statistics.median(x.get("cpu_ms_per_event", 0.0) for x in rs)
        rss = max(x.get("rss_mb", 0.0) for x in rs)
        spread = f"{med:,.0f} ({min(rates):,.0f}–{max(rates):,.0f})"
        print(f"| {name} | {lat:g} | {conc} | {spread} | {of_bare} | {bound} | {cpu:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
