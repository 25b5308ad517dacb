"""Accepting: pause (do not spin) when out of descriptors, and open each connection on its own color."""
import errno
import logging
import socket

import pytest

from apps.webserver.cache import FileCache
from apps.webserver.colors import OFF, ON
from apps.webserver import server as server_module
from apps.webserver.server import Server


class RecordingLoop:
    """The loop calls Server makes while accepting, recorded instead of run."""

    def __init__(self):
        self.readers, self.timers, self.soon = {}, [], []

    def add_reader(self, fd, fn, *args, color=0):
        self.readers[fd] = fn

    def remove_reader(self, fd):
        return self.readers.pop(fd, None) is not None

    def call_later(self, delay, fn, *args, color=0):
        self.timers.append((delay, fn, args))

    def call_soon(self, fn, *args, color=0):
        self.soon.append((fn, args, color))


class FailingListener:
    def __init__(self, error):
        self.error, self.calls = error, 0

    def fileno(self):
        return 99

    def accept(self):
        self.calls += 1
        raise OSError(self.error, "simulated")


def make_server(docroot, listener, colors=OFF):
    loop = RecordingLoop()
    server = Server(loop, FileCache(str(docroot)), colors=colors)
    server.listener = listener
    server.start()
    return server, loop


def test_out_of_descriptors_pauses_accepting_and_resumes_after_a_while(docroot, caplog):
    listener = FailingListener(errno.EMFILE)
    server, loop = make_server(docroot, listener)
    with caplog.at_level(logging.WARNING, logger="apps.webserver"):
        loop.readers[99]()                       # the listener is readable: a client waits
    assert listener.calls == 1                   # one try, not a batch of failures
    assert 99 not in loop.readers                # no longer watched: the loop cannot spin on it
    assert [d for d, _, _ in loop.timers] == [server_module.ACCEPT_PAUSE_S]
    assert len([r for r in caplog.records if "accept" in r.getMessage()]) == 1
    assert server.totals["accept_pauses"] == 1
    _, resume, args = loop.timers.pop()
    resume(*args)
    assert loop.readers[99] == server._on_accept          # watched again, and tried again
    with caplog.at_level(logging.WARNING, logger="apps.webserver"):
        loop.readers[99]()                       # still out of descriptors: pause again, quietly
    assert listener.calls == 2 and 99 not in loop.readers and len(loop.timers) == 1
    assert len([r for r in caplog.records if "accept" in r.getMessage()]) == 1
    _, resume, args = loop.timers.pop()
    resume(*args)
    listener.error = errno.EAGAIN
    loop.readers[99]()
    assert listener.calls == 3 and 99 in loop.readers and not loop.timers


def test_a_connection_aborted_before_accept_is_skipped_without_pausing(docroot):
    listener = FailingListener(errno.ECONNABORTED)
    server, loop = make_server(docroot, listener)
    loop.readers[99]()
    assert 99 in loop.readers and not loop.timers
    assert listener.calls == server_module.ACCEPT_BATCH


@pytest.fixture
def listener_with_a_client():
    """A real listening socket with one client connected and waiting to be accepted."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    client = socket.create_connection(listener.getsockname())
    yield listener
    client.close()
    listener.close()


def test_a_connection_is_made_on_its_own_color_and_counted_at_once(docroot, listener_with_a_client):
    """Its objects then belong to the thread that serves it (on 3.13t, reference counts of objects
    made by another thread are updated atomically, which cost the colored server 3-11% on 2 CPUs),
    while the accept color still counts it against --max-connections from the moment of accept."""
    listener = listener_with_a_client
    server, loop = make_server(docroot, listener, colors=ON)
    loop.readers[listener.fileno()]()
    [(open_it, args, color)] = loop.soon
    conn_id = args[1]
    assert color == ON.connection(conn_id) and server.open == {conn_id: None}
    loop.soon.clear()
    open_it(*args)                               # what the connection's color runs
    [(opened, (_, conn), color)] = loop.soon
    assert color == ON.accept() and conn.id == conn_id and conn.color == ON.connection(conn_id)
    opened(conn_id, conn)                        # back on the accept color: now on record
    assert server.open == {conn_id: conn}
    assert server.final_counts()["connections"] == 1
    conn.sock.close()


def test_a_connection_gone_before_its_color_ran_frees_its_place(docroot, listener_with_a_client):
    listener = listener_with_a_client
    server, loop = make_server(docroot, listener, colors=ON)
    loop.readers[listener.fileno()]()
    [(open_it, args, _)] = loop.soon
    loop.soon.clear()
    args[0].close()                              # the socket is gone before its color runs
    open_it(*args)                               # no traceback, nothing left registered
    [(opened, opened_args, color)] = loop.soon
    assert color == ON.accept()
    opened(*opened_args)
    assert server.open == {} and not [fd for fd in loop.readers if fd != listener.fileno()]


class FlappingListener:
    """Out of descriptors, except that every other try gets one a closed connection freed."""

    def __init__(self):
        self.calls = 0

    def fileno(self):
        return 99

    def accept(self):
        self.calls += 1
        if self.calls % 3 == 2:                  # fail, succeed once, then nothing waiting
            return socket.socket(), ("127.0.0.1", 1)
        if self.calls % 3 == 0:
            raise BlockingIOError
        raise OSError(errno.EMFILE, "simulated")


def test_a_shortage_that_keeps_coming_back_is_reported_once_per_interval(docroot, caplog, monkeypatch):
    """Under a lasting shortage with connections closing, each accept that got a freed descriptor
    ended one shortage and the next began another: two warnings every 0.25 s."""
    clock = [1000.0]
    monkeypatch.setattr(server_module.time, "monotonic", lambda: clock[0])
    listener = FlappingListener()
    server, loop = make_server(docroot, listener)
    server.max_connections = 0                   # refuse what is accepted: no Connection made
    with caplog.at_level(logging.WARNING, logger="apps.webserver"):
        for _ in range(20):                      # 20 shortages over 5 s
            loop.readers[99]()                   # fails: pauses
            _, resume, args = loop.timers.pop()
            clock[0] += server_module.ACCEPT_PAUSE_S
            resume(*args)
            loop.readers[99]()                   # gets one, then nothing is waiting
        assert server.totals["accept_pauses"] == 20
        lines = [r.getMessage() for r in caplog.records]
        assert len([m for m in lines if m.startswith("accept failed")]) == 1, lines
        assert len([m for m in lines if m.startswith("accepting again")]) == 1, lines
        clock[0] += server_module.SHORTAGE_REPORT_S
        loop.readers[99]()                       # a shortage after the interval: reported again
    assert "(19 more shortages since the last report)" in caplog.records[-1].getMessage()
