"""fd registrations from worker threads while the loop thread accepts: fd numbers get reused.

A worker that runs `remove_reader(fd); sock.close()` and the loop thread that accepts a new
connection (which the kernel may give the same fd number) race. Every connection must still be
served, and a registration for a reused number must reach the kernel.
"""
import socket
import threading

import pytest

import runtime

CONNECTIONS = 400
CLIENT_THREADS = 8


@pytest.mark.parametrize("scheduler", ["hash", "steal"])
def test_short_connections_on_many_colors_are_all_served(scheduler):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    served = []
    loop = runtime.Loop(workers=3, scheduler=scheduler)

    def on_accept():
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            loop.add_reader(conn, on_data, conn, color=("conn", conn.fileno()))

    def on_data(conn):
        try:
            data = conn.recv(100)
        except BlockingIOError:
            return
        if data:
            conn.sendall(data[::-1])
        loop.remove_reader(conn)
        conn.close()
        served.append(data)

    loop.add_reader(listener, on_accept)
    answers, failures = [], []

    def client(k):
        for i in range(k, CONNECTIONS, CLIENT_THREADS):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    msg = f"hello {i}".encode()
                    s.sendall(msg)
                    answers.append(s.recv(100) == msg[::-1])
            except OSError as exc:
                failures.append((i, exc))

    clients = [threading.Thread(target=client, args=(k,)) for k in range(CLIENT_THREADS)]
    for t in clients:
        t.start()
    waiter = threading.Thread(target=lambda: ([t.join() for t in clients], loop.stop()))
    waiter.start()
    loop.run()
    waiter.join()
    loop.remove_reader(listener)
    loop.close()
    listener.close()
    assert failures == []
    assert answers == [True] * CONNECTIONS


def test_registration_for_a_reused_fd_number_reaches_the_kernel():
    """The program closed an fd without removing its reader; a new socket gets the same number."""
    got, done = [], threading.Event()
    with runtime.Loop(workers=1) as loop:
        a, b = socket.socketpair()
        number = a.fileno()
        loop.add_reader(a, lambda: None)
        a.close()                       # the kernel drops it from epoll; our table still has it
        c, d = socket.socketpair()
        if c.fileno() != number:
            c, d = d, c
        assert c.fileno() == number     # the lowest free number is reused

        def on_c():
            got.append(c.recv(10))
            loop.remove_reader(c)
            done.set()
        loop.add_reader(c, on_c)
        d.send(b"new")
        threading.Thread(target=lambda: (done.wait(5), loop.stop())).start()
        loop.run()
    assert got == [b"new"]
    for s in (b, c, d):
        s.close()


def test_a_worker_polls_the_fds_of_its_colors_while_the_loop_thread_is_busy():
    """An fd is polled by the home worker of its callback's color, not only by the loop thread:
    while the loop thread is stuck in a long callback of color 0, worker 1 still notices that
    its connection is readable and runs the reader (with one poller, this waits for color 0)."""
    loop = runtime.Loop(workers=2)
    a, b = socket.socketpair()
    a.setblocking(False)
    got, seen_on = threading.Event(), []

    def on_readable():                       # color 1: hash(1) % 2 == 1, worker 1's color
        seen_on.append((a.recv(16), threading.current_thread().name))
        loop.remove_reader(a)
        got.set()

    def long_callback_of_color_0():
        b.send(b"ping")
        seen_on.append(("noticed while busy", got.wait(5)))
        loop.stop()

    loop.add_reader(a, on_readable, color=1)
    loop.call_soon(long_callback_of_color_0)
    try:
        loop.run()
    finally:
        loop.close()
        a.close()
        b.close()
    assert seen_on == [(b"ping", "colorloop-worker-1"), ("noticed while busy", True)]


def test_every_fd_is_polled_by_the_loop_thread_when_all_colors_are_the_default():
    """The unchanged program: color 0 everywhere, so the worker threads' pollers stay empty."""
    loop = runtime.Loop(workers=3)
    pairs = [socket.socketpair() for _ in range(4)]
    runs = []

    def reader(sock):
        runs.append((sock.recv(8), threading.current_thread() is threading.main_thread()))
        loop.remove_reader(sock)
        if len(runs) == len(pairs):
            loop.stop()

    for a, b in pairs:
        a.setblocking(False)
        loop.add_reader(a, reader, a)
        b.send(b"x")
    assert [len(p.selector.get_map()) for p in loop._pollers] == [1 + len(pairs), 1, 1]
    try:
        loop.run()
    finally:
        loop.close()
        for a, b in pairs:
            a.close()
            b.close()
    assert runs == [(b"x", True)] * len(pairs)
