"""The Service Bus test peer's choice of the next session to hand an accept: the session of the oldest
active, unlocked message among the sessions nobody holds. Its fast path (by session) against the walk
over every message it replaced, over random mixes of sessions, holders, locks and states."""

from __future__ import annotations

import uuid

import proton
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.servicebus_peer.entities import EntityOptions, MessageLock, MessageState, Queue, StoredMessage

SESSIONS = ["a", "b", "c", "d"]
A = MessageState.ACTIVE

# Mostly active and unlocked messages, few sessions held: the cases where the order matters.
message_plans = st.lists(
    st.tuples(
        st.sampled_from(SESSIONS),
        st.sampled_from([A, A, A, MessageState.DEFERRED, MessageState.SCHEDULED]),
        st.sampled_from([False, False, True]),  # locked
    ),
    max_size=30,
)


def _queue(plans: list[tuple[str, MessageState, bool]], held: set[str], *, shuffled: bool) -> Queue:
    q = Queue("q", EntityOptions(requires_session=True))
    numbers = list(range(1, len(plans) + 1))
    if shuffled:  # as a dead-letter queue receives: older sequence numbers after newer ones
        numbers.reverse()
    for number, (session, state, locked) in zip(numbers, plans, strict=True):
        stored = StoredMessage(number, proton.Message(body=b"{}", group_id=session), enqueued_time=0.0)
        stored.state = state
        q.add(stored)
        if locked:
            stored.lock = MessageLock(uuid.uuid4(), locked_until=60.0, owner=object())
            q.locks[stored.lock.token] = stored
    for session in held:
        assert q.lock_session(session, owner=object(), now=0.0) is not None
    return q


@settings(max_examples=400)
@given(message_plans, st.sets(st.sampled_from(SESSIONS), max_size=2), st.booleans())
@example([("a", A, False), ("b", A, False), ("a", A, False)], set(), True)  # a's oldest came last
@example([("a", A, True), ("b", A, False), ("a", A, False)], set(), False)  # a's head is locked
def test_the_next_session_is_that_of_the_oldest_available_message(
    plans: list[tuple[str, MessageState, bool]], held: set[str], shuffled: bool
) -> None:
    q = _queue(plans, held, shuffled=shuffled)
    expected = None
    for stored in sorted(q.messages.values(), key=lambda m: m.sequence_number):
        if stored.state is MessageState.ACTIVE and stored.lock is None and stored.session_id not in held:
            expected = stored.session_id
            break
    assert q.next_available_session() == expected


def test_a_released_session_is_available_again() -> None:
    q = _queue([("a", MessageState.ACTIVE, False), ("b", MessageState.ACTIVE, False)], {"a"}, shuffled=False)
    assert q.next_available_session() == "b"
    q.unlock_session("a")
    assert q.next_available_session() == "a"
