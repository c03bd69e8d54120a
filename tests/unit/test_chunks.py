"""Long IN lists in chunks (config_db.chunks): every value once, in order, none beyond the size."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from config_db.chunks import IN_CHUNK, in_chunks


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=7))
def test_every_value_once_in_order_in_chunks_no_longer_than_the_size(values: list[int], size: int) -> None:
    chunks = list(in_chunks(values, size))
    assert [v for chunk in chunks for v in chunk] == values
    assert all(1 <= len(chunk) <= size for chunk in chunks)
    assert all(len(chunk) == size for chunk in chunks[:-1])


def test_the_default_size_keeps_a_statement_far_below_sql_servers_2100_parameters() -> None:
    assert [len(c) for c in in_chunks(range(1001))] == [IN_CHUNK, IN_CHUNK, 1] and IN_CHUNK <= 500
