"""Judging a chaos run: what the ERP holds and received against the plan, and the workers' logs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.chaos.plan import sequence_of
from tests.chaos.run import Outcome

UNRETRIEVED = "Task exception was never retrieved"


def report(outcome: Outcome) -> dict[str, Any]:
    """Every number the run is judged by (the test asserts them; bench/chaos.py prints them)."""
    lost, stale, double_creates, resurrected = [], [], [], []
    for key, (last_seq, name) in outcome.plan.final.items():
        entity, cw_id = key.split("/", 1)
        record = outcome.erp.record(entity, cw_id)
        if name is None:
            if record is not None and not record.deleted:
                lost.append(f"{key}: still in the ERP as {record.data.get('name')!r}, deleted in CW")
        elif record is None or record.deleted or record.data.get("name") != name:
            held = None if record is None else ("deleted" if record.deleted else record.data.get("name"))
            lost.append(f"{key}: ERP holds {held!r}, CW's newest is {name!r}")
        received = outcome.erp.history.get(key, [])
        sequences = [last_seq if r.name is None else sequence_of(r.name) for r in received]
        if sequences != sorted(sequences) or len(set(sequences)) != len(sequences):
            stale.append(f"{key}: received {[(r.action, r.name) for r in received]}")
        if sum(1 for r in received if r.action == "created") > 1:
            double_creates.append(key)
        deletes = [i for i, r in enumerate(received) if r.action == "deleted"]
        if deletes and deletes[0] < len(received) - 1:
            resurrected.append(key)
    unretrieved = sum(log.read_text(errors="replace").count(UNRETRIEVED) for log in outcome.logs)
    writes = sum(len(v) for v in outcome.erp.history.values())
    return {
        "events": len(outcome.plan.events),
        "records": len(outcome.plan.final),
        "kills": outcome.kills,
        "seconds": round(outcome.seconds, 1),
        "erp_requests": outcome.erp.requests,
        "erp_faults": dict(outcome.erp.faults),
        "erp_writes": writes,
        "journal": outcome.journal,
        "dead_letters": dict(Counter(d["reason"] for d in outcome.dead_letters)),
        "lost": lost,
        "stale_writes": stale,
        "double_creates": double_creates,
        "resurrected": resurrected,
        "unretrieved_task_exceptions": unretrieved,
    }


def assert_clean(numbers: dict[str, Any], outcome: Outcome) -> None:
    problems = {
        k: numbers[k] for k in ("lost", "stale_writes", "double_creates", "resurrected") if numbers[k]
    }
    assert not problems, problems
    assert numbers["unretrieved_task_exceptions"] == 0, "a task died: see the worker logs"
    # Every event ends journalled or superseded; none was given up. The faults never outlast the
    # retries (20 % each time, 2 in-process attempts, 5 delayed retries), and a message would have
    # to be killed in flight 10 times to be MaxDeliveryCountExceeded.
    assert outcome.dead_letters == [], outcome.dead_letters
