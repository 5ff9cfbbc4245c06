#!/usr/bin/env python3
"""Backends: balancing, retries, health checks (active and passive), backups,
disable/enable."""
import socket
import time

from ferrytest import (web_config, connect, free_port, recv_all, recv_exact, runner, start_backend,
                       start_ferry, start_stuck_listener, wait_for)


def who(port):
    """Connects through ferry and returns the label the backend sent first."""
    s = connect(port)
    label = recv_exact(s, 2)
    s.close()
    return label


def labelled(n):
    return [start_backend("label", label=b"s%d" % i) for i in range(1, n + 1)]


def test_roundrobin_weighted():
    s1, s2 = labelled(2)
    port = free_port()
    start_ferry(web_config(port, f"""
server a 127.0.0.1:{s1.port} weight=3
server b 127.0.0.1:{s2.port} weight=1
""", global_lines="workers = 1"))
    got = [who(port) for _ in range(40)]
    assert got.count(b"s1") == 30, got
    assert got.count(b"s2") == 10, got


def test_retry_on_refused_server():
    dead = free_port()  # nothing listens here
    (alive,) = labelled(1)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server dead 127.0.0.1:{dead}
server alive 127.0.0.1:{alive.port}
retries = 2
""", global_lines="workers = 1"))
    for _ in range(6):
        assert who(port) == b"s1"
    dead_stats = f.server("app", "dead")
    assert dead_stats["connect_errors"] >= 1
    # Passive health: health_fall (3) failures in a row mark it down.
    assert dead_stats["state"] == "down", dead_stats
    assert f.server("app", "alive")["total"] == 6


def connect_timeouts(f, server):
    return [e for e in f.events("connect_failed")
            if e.get("server") == server and e.get("error") == "connect timeout"]


def test_connect_timeout_then_the_next_server():
    """A server whose connects hang: each attempt on it ends at
    connect_timeout (logged, counted against it) and the next server serves.
    Without another server to try, the connection ends connect_failed."""
    stuck = start_stuck_listener()
    (alive,) = labelled(1)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server stuck 127.0.0.1:{stuck}
server alive 127.0.0.1:{alive.port}
connect_timeout = 300ms
retries = 1
""", global_lines="workers = 1"))
    for _ in range(4):
        assert who(port) == b"s1"  # within the client's 10 s: never hangs
    assert f.server("app", "stuck")["connect_errors"] >= 1
    wait_for(lambda: connect_timeouts(f, "app/stuck"), what="connect timeout logged")
    assert f.server("app", "alive")["total"] == 4
    f.stop()

    port = free_port()
    f = start_ferry(web_config(port, f"server stuck 127.0.0.1:{stuck}\nconnect_timeout = 300ms\n"
                               "retries = 1"))
    s = connect(port)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f.access_log(), what="access log")
    e = f.access_log()[0]
    assert e["end"] == "connect_failed", e
    wait_for(lambda: connect_timeouts(f, "app/stuck"), what="connect timeout logged")


def test_all_refused_is_connect_failed():
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{free_port()}
server b 127.0.0.1:{free_port()}
retries = 1
"""))
    s = connect(port)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f.access_log(), what="access log")
    e = f.access_log()[0]
    assert e["end"] == "connect_failed" and e["server"] == "-", e


def test_active_health_down_and_up():
    s1, s2 = labelled(2)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{s1.port}
server b 127.0.0.1:{s2.port}
health_check = tcp
health_interval = 100ms
health_timeout = 100ms
health_rise = 2
health_fall = 2
"""))
    bport = s2.port
    s2.close()
    wait_for(lambda: f.server("app", "b")["state"] == "down", timeout=5, what="b down")
    wait_for(lambda: "msg=server_down" in f.logtext(), what="server_down logged")
    for _ in range(5):
        assert who(port) == b"s1"
    start_backend("label", label=b"s2", port=bport)
    wait_for(lambda: f.server("app", "b")["state"] == "up", timeout=5, what="b up again")
    got = {who(port) for _ in range(6)}
    assert got == {b"s1", b"s2"}


def test_backup_only_when_primaries_down():
    s1, s2 = labelled(2)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server main 127.0.0.1:{s1.port}
server spare 127.0.0.1:{s2.port} backup
health_check = tcp
health_interval = 100ms
health_fall = 1
health_rise = 1
"""))
    assert {who(port) for _ in range(5)} == {b"s1"}
    s1.close()
    wait_for(lambda: f.server("app", "main")["state"] == "down", timeout=5, what="main down")
    assert {who(port) for _ in range(5)} == {b"s2"}


def test_disable_and_enable_server():
    s1, s2 = labelled(2)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{s1.port}
server b 127.0.0.1:{s2.port}
"""))
    assert f.ctl("disable", "app/b").strip() == "ok"
    assert f.server("app", "b")["state"] == "disabled"
    assert {who(port) for _ in range(6)} == {b"s1"}
    assert f.ctl("enable", "app/b").strip() == "ok"
    assert f.server("app", "b")["state"] == "up"
    assert {who(port) for _ in range(6)} == {b"s1", b"s2"}


def test_leastconn_prefers_idle_server():
    s1, s2 = labelled(2)
    port = free_port()
    start_ferry(web_config(port, f"""
balance = leastconn
server a 127.0.0.1:{s1.port}
server b 127.0.0.1:{s2.port}
""", global_lines="workers = 1"))
    held = [connect(port) for _ in range(3)]
    labels = [recv_exact(s, 2) for s in held]
    # With three open, the split is 2/1; closing all of one server's makes it preferred.
    busy = max(set(labels), key=labels.count)
    for s, l in zip(held, labels):
        if l == busy:
            s.close()
    time.sleep(0.2)
    nxt = who(port)
    assert nxt == busy, (labels, nxt)
    for s in held:
        s.close()


def test_source_balancing_is_sticky():
    s1, s2, s3 = labelled(3)
    port = free_port()
    start_ferry(web_config(port, f"""
balance = source
server a 127.0.0.1:{s1.port}
server b 127.0.0.1:{s2.port}
server c 127.0.0.1:{s3.port}
"""))
    first = who(port)
    assert all(who(port) == first for _ in range(10))


def test_host_name_server_resolved():
    # The backend listens on the address "localhost" resolves to first, which
    # is the one ferryd's resolver (getaddrinfo, same order) picks.
    family, _, _, _, sa = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0]
    b = start_backend("label", label=b"s1", host=sa[0])
    port = free_port()
    start_ferry(web_config(port, f"""
server a localhost:{b.port}
"""))
    assert who(port) == b"s1"


if __name__ == "__main__":
    runner.run(globals())
