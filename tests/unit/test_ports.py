"""Free ports below the ephemeral range, and a scrape that meets no HTTP server."""

from __future__ import annotations

import socket
import threading

import pytest

from streamrec import ports, prometheus


def test_free_ports_lie_below_the_ephemeral_range_and_can_be_bound():
    lo, hi = ports.ephemeral_range()
    assert 0 < lo <= hi
    for span in (1, 10):
        port = ports.free_port(span=span)
        assert port + span <= lo  # a poll of it can never be handed it as a source port
        for p in range(port, port + span):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))


def test_a_taken_port_is_not_offered(monkeypatch):
    """With one candidate below the range, and that one taken, the OS picks instead."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        port = taken.getsockname()[1]
        monkeypatch.setattr(ports, "_LOWEST", port)
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (port + 2, 60999))
        # the only candidate below the range is the taken port: the OS's pick comes instead
        got = ports.free_port()
        assert got != port
        with socket.socket() as s:
            s.bind(("127.0.0.1", got))


def test_a_span_must_hold_a_port():
    with pytest.raises(ValueError, match="span"):
        ports.free_port(span=0)


def test_scraping_a_server_that_does_not_speak_http_is_a_connection_error():
    """What a self-connected poll looks like: the request comes back as the 'status line'."""
    server = socket.socket()
    server.bind(("127.0.0.1", ports.free_port()))
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(4096))

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        with pytest.raises(OSError, match="no HTTP answer"):
            prometheus.scrape(f"127.0.0.1:{server.getsockname()[1]}", timeout=5)
    finally:
        t.join(5)
        server.close()
