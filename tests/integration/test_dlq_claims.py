"""Operator claims on dead letters (rows of the inbox table) on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import Engine

from worker.operators import claims
from worker.operators.claims import Taken


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claim_is_held_resumed_and_closed(engine: Engine) -> None:
    ann, ben = claims.owner_token() + ":a", claims.owner_token() + ":b"
    with engine.begin() as conn:
        assert claims.take(conn, "t-1", owner=ann, lease_s=60).taken is Taken.NEW
        assert claims.take(conn, "t-1", owner=ben, lease_s=60).taken is Taken.BUSY  # ann is alive
        assert claims.take(conn, "t-1", owner=ben, lease_s=0).taken is Taken.RESUMED  # her lease is over
        assert claims.take(conn, "t-1", owner=ann, lease_s=60).taken is Taken.BUSY  # now ben holds it
        claims.fail(conn, "t-1", owner=ben)
        assert (
            claims.take(conn, "t-1", owner=ann, lease_s=60).taken is Taken.RESUMED
        )  # failed: resume at once
        claims.finish(conn, "t-1", owner=ann, outcome="replayed")
        done = claims.take(conn, "t-1", owner=ben, lease_s=0)
        assert (done.taken, done.outcome) == (Taken.DONE, "replayed")


def test_a_claim_of_a_process_that_died_on_this_host_is_taken_over_at_once(engine: Engine) -> None:
    dead = claims.owner_token(_dead_pid()) + ":x"
    with engine.begin() as conn:
        assert claims.take(conn, "t-2", owner=dead, lease_s=3600).taken is Taken.NEW
        assert claims.take(conn, "t-2", owner="someone-else", lease_s=3600).taken is Taken.RESUMED


def test_a_long_transport_id_gets_a_hashed_key() -> None:
    assert claims.claim_key("t-1") == "dlq:t-1"
    assert len(claims.claim_key("x" * 200)) <= 128
