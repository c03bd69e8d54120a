"""One scheduler process for test_reconcile_schedule's two-process test.

Usage: ``_scheduler_proc.py <db_url> <out_file>``. Touches ``<out_file>.ready`` once its database is
open, waits for ``<out_file>.go``, then ticks a few times; each job "runs" for a while and writes one
JSON line with the client, the job and when it started and ended (``time.time()``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from worker.bootstrap import open_app
from worker.reconcile.schedule import Job, Scheduler
from worker.settings import Settings

JOB_S = 0.6
TICKS = 4


async def main(db_url: str, out: Path) -> None:
    async with open_app(Settings(database_url=db_url)) as app:
        out.with_suffix(".ready").touch()
        while not out.with_suffix(".go").exists():
            await asyncio.sleep(0.01)

        async def run_job(job: Job) -> str:
            started = time.time()
            await asyncio.sleep(JOB_S)
            line = {
                "client": job.client_id,
                "job": job.name,
                "start": started,
                "end": time.time(),
                "pid": os.getpid(),
            }
            with out.open("a") as file:
                file.write(json.dumps(line) + "\n")
            return "ran"

        scheduler = Scheduler(app, run_job=run_job)
        for _ in range(TICKS):
            await scheduler.tick()
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
