"""bench/rtt.py: the relay that stands in for a namespace's distance forwards both ways intact and in
order, holds each round trip at least the time it adds, and leaves a connection string alone at 0."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.rtt import delayed


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server on the loopback that sends back whatever it reads."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    thread.join(timeout=5)


def _read(conn: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = conn.recv(65536)
        assert chunk, "the relay closed the connection early"
        got += chunk
    return got


def test_the_relay_forwards_in_order_and_adds_its_round_trip(echo_port: int) -> None:
    original = f"Endpoint=sb://127.0.0.1:{echo_port};SharedAccessKeyName=k;SharedAccessKey=v"
    with delayed(original, rtt_ms=40) as relayed:
        assert relayed.endswith(";SharedAccessKeyName=k;SharedAccessKey=v") and relayed != original
        port = int(relayed.split(":")[2].split(";")[0])
        with socket.create_connection(("127.0.0.1", port)) as conn:
            messages = [bytes([i]) * (1000 * i + 1) for i in range(1, 6)]
            started = time.monotonic()
            conn.sendall(messages[0])
            assert _read(conn, len(messages[0])) == messages[0]
            assert time.monotonic() - started >= 0.04, "half the round trip each way"
            for message in messages[1:]:
                conn.sendall(message)
            assert _read(conn, sum(map(len, messages[1:]))) == b"".join(messages[1:])


def test_no_added_round_trip_leaves_the_connection_string_alone() -> None:
    with delayed("Endpoint=sb://peer:5672;x=y", rtt_ms=0) as same:
        assert same == "Endpoint=sb://peer:5672;x=y"


def test_a_connection_string_without_an_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="no Endpoint"), delayed("SharedAccessKey=v", rtt_ms=5):
        pass
