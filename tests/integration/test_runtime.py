#!/usr/bin/env python3
"""The runtime API against real traffic: weights, drain, maint, listeners
disabled and enabled, and the state file across restarts."""
import os
import socket
import time

from ferrytest import (connect, free_port, recv_all, recv_exact, runner, start_backend,
                       start_ferry, wait_for)


def two_servers(extra_global=""):
    a = start_backend("label", label=b"A")
    b = start_backend("label", label=b"B")
    port = free_port()
    config = f"""
[global]
control_socket = @SOCK@
drain_timeout = 2s
{extra_global}
[listener web]
bind = 127.0.0.1:{port}
backend = app

[backend app]
server a 127.0.0.1:{a.port}
server b 127.0.0.1:{b.port}
"""
    return a, b, port, config


def label_of(port):
    s = connect(port)
    try:
        return recv_exact(s, 1)
    finally:
        s.close()


def server(f, name):
    return f.server("app", name)


def test_weights_1_to_3_over_400_connections():
    a, b, port, config = two_servers()
    f = start_ferry(config)
    assert f.ctl("set", "app/a", "weight", "1").strip() == "ok"
    assert f.ctl("set", "app/b", "weight", "3").strip() == "ok"
    assert server(f, "a")["weight"] == 1 and server(f, "b")["weight"] == 3
    counts = {b"A": 0, b"B": 0}
    for _ in range(400):
        counts[label_of(port)] += 1
    # Smooth weighted round robin per worker: each worker is exact to one pick.
    workers = f.ctl("info", json_out=True)["workers"]
    assert abs(counts[b"A"] - 100) <= workers and abs(counts[b"B"] - 300) <= workers, counts
    # Weight 0 takes the server out of balancing; a reload restores the
    # configured weights (no state_file).
    f.ctl("set", "app/a", "weight", "0")
    assert {label_of(port) for _ in range(20)} == {b"B"}
    assert f.ctl("reload").startswith("ok")
    assert server(f, "a")["weight"] == 1 and server(f, "b")["weight"] == 1
    assert {label_of(port) for _ in range(20)} == {b"A", b"B"}
    r = f.ctl("set", "app/a", "weight", "300", check=False)
    assert r == "", r  # a usage error: nothing on stdout
    assert "error: no such server" in f.command(b"set server app/zz weight 2\n")


def held(port):
    """A connection through ferryd that has reached its server (label read)."""
    s = connect(port)
    return s, recv_exact(s, 1)


def test_maint_cuts_and_drain_keeps():
    a, b, port, config = two_servers()
    f = start_ferry(config)
    on_a, on_b = [], []
    for _ in range(40):  # workers balance on their own: take two of each
        s, lab = held(port)
        mine = on_a if lab == b"A" else on_b
        if len(mine) < 2:
            mine.append(s)
        else:
            s.close()
        if len(on_a) == 2 and len(on_b) == 2:
            break
    assert len(on_a) == 2 and len(on_b) == 2
    # drain: no new connections for a, its own go on.
    assert f.ctl("set", "app/a", "state", "drain").strip() == "ok"
    assert server(f, "a")["state"] == "disabled"
    assert {label_of(port) for _ in range(10)} == {b"B"}
    for s in on_a:
        s.sendall(b"still")
        assert recv_exact(s, 5) == b"still"
    # maint: a's connections are cut (end=maint), b's are not.
    assert f.ctl("set", "app/a", "state", "maint").strip() == "ok"
    assert server(f, "a")["state"] == "maint"
    for s in on_a:
        s.settimeout(10)
        try:
            assert recv_all(s) == b""
        except ConnectionResetError:
            pass
        s.close()
    wait_for(lambda: sum(1 for e in f.access_log() if e.get("end") == "maint") == 2,
             what="two end=maint lines")
    assert all(e["server"] == "app/a" for e in f.access_log() if e.get("end") == "maint")
    for s in on_b:
        s.sendall(b"fine")
        assert recv_exact(s, 4) == b"fine"
        s.close()
    assert {label_of(port) for _ in range(10)} == {b"B"}
    # ready: back in rotation; enable also undoes maint.
    assert f.ctl("set", "app/a", "state", "ready").strip() == "ok"
    assert server(f, "a")["state"] == "up"
    assert {label_of(port) for _ in range(10)} == {b"A", b"B"}
    f.ctl("set", "app/a", "state", "maint")
    f.ctl("enable", "app/a")
    assert server(f, "a")["state"] == "up"
    # Every server in maint: nothing to connect to (end=no_server).
    f.ctl("set", "app/b", "state", "maint")
    f.ctl("set", "app/a", "state", "maint")
    s = connect(port)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f.access_log()[-1].get("end") == "no_server", what="no_server")


def test_disabled_listener_holds_clients_in_the_queue():
    a, b, port, config = two_servers()
    f = start_ferry(config)
    assert f.ctl("disable-listener", "web").strip() == "ok"
    assert f.listener("web")["accepting"] is False
    waiting = []
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)  # not refused
        s.sendall(b"x%d" % i)
        waiting.append(s)
    time.sleep(0.5)
    for s in waiting:
        s.settimeout(0.2)
        try:
            data = s.recv(10)
            raise AssertionError(f"a disabled listener served a client: {data!r}")
        except socket.timeout:
            pass
    assert f.listener("web")["total"] == 0
    assert f.ctl("enable-listener", "web").strip() == "ok"
    assert f.listener("web")["accepting"] is True
    for i, s in enumerate(waiting):
        s.settimeout(10)
        lab = recv_exact(s, 1)
        assert lab in (b"A", b"B")
        assert recv_exact(s, 2) == b"x%d" % i
        s.close()
    wait_for(lambda: f.listener("web")["total"] == 5, what="five served")
    assert f.listener("web")["rejected"] == 0
    assert "error: no such listener nope" in f.command(b"disable listener nope\n")


def test_state_file_across_restart():
    a, b, port, config = two_servers("state_file = run/ferry.state")
    f = start_ferry(config, pre_start=lambda d: os.mkdir(os.path.join(d, "run")))
    path = os.path.join(f.dir, "run", "ferry.state")  # relative to the config's directory
    f.ctl("set", "app/a", "state", "maint")
    f.ctl("set", "app/b", "weight", "5")

    def saved():
        try:
            with open(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return ""
    wait_for(lambda: "server app/a maint -" in saved() and "server app/b ready 5" in saved(),
             what="state file written")
    assert not os.path.exists(path + ".tmp")
    # Kept across a reload too (state_file keeps weights).
    assert f.ctl("reload").startswith("ok")
    assert server(f, "b")["weight"] == 5
    assert f.stop() == 0
    f2 = start_ferry(config.replace("state_file = run/ferry.state", f"state_file = {path}"))
    assert f2.server("app", "a")["state"] == "maint", f2.stats()
    assert f2.server("app", "b")["weight"] == 5
    assert {label_of(port) for _ in range(10)} == {b"B"}
    f2.ctl("enable", "app/a")
    wait_for(lambda: "app/a" not in saved(), what="state file updated")
    assert "server app/b ready 5" in saved()


def test_corrupt_state_file_is_ignored():
    a, b, port, config = two_servers("state_file = ferry.state")

    def corrupt(d):
        with open(os.path.join(d, "ferry.state"), "w") as fh:
            fh.write("server app/a maint -\nserver app/b sideways 3\n\x00garbage\n")
    f = start_ferry(config, pre_start=corrupt)
    assert "msg=state_file_ignored" in f.logtext(), f.logtext()
    assert f.server("app", "a")["state"] == "up" and f.server("app", "b")["weight"] == 1
    assert {label_of(port) for _ in range(10)} == {b"A", b"B"}
    # A file that is not a file at all is no obstacle either.
    _, _, _, config2 = two_servers("state_file = state-dir")
    f2 = start_ferry(config2, pre_start=lambda d: os.mkdir(os.path.join(d, "state-dir")))
    assert "msg=state_file_ignored" in f2.logtext()


def test_state_file_without_final_newline():
    """The last line needs no newline (it was rejected whole as a NUL byte)."""
    a, b, port, config = two_servers("state_file = ferry.state")

    def state(d):
        with open(os.path.join(d, "ferry.state"), "w") as fh:
            fh.write("# kept\nserver app/zz drain 3\nlistener gone disabled\n"
                     "added app/b 127.0.0.1:1 weight=9\nserver app/b ready 4\n"
                     "server app/a maint -")
    f = start_ferry(config, pre_start=state)
    assert "state_file_ignored" not in f.logtext(), f.logtext()
    assert server(f, "a")["state"] == "maint" and server(f, "b")["weight"] == 4
    # Entries for what the configuration does not have are dropped; b is the
    # configuration's own server: its address stays the configured one.
    assert server(f, "b")["address"] != "127.0.0.1:1"
    f.ctl("set", "app/b", "weight", "5")
    with open(os.path.join(f.dir, "ferry.state")) as fh:
        text = fh.read()
    assert "zz" not in text and "gone" not in text and "added" not in text, text


def test_state_file_keeps_added_servers_and_disabled_listeners():
    """Servers added at runtime (with their options and state), weights and
    disabled listeners last across a reload and a restart; the file is
    written through a temporary file of a unique name, nothing left over."""
    a, b, port, config = two_servers("state_file = ferry.state")
    f = start_ferry(config)
    c = start_backend("label", label=b"C")
    path = os.path.join(f.dir, "ferry.state")
    assert f.ctl("add", "app", "c", f"127.0.0.1:{c.port}", "weight=2", "backup",
                 "max_connections=7").strip() == "ok"
    assert f.ctl("set", "app/c", "state", "drain").strip() == "ok"
    assert f.ctl("disable-listener", "web").strip() == "ok"
    with open(path) as fh:  # written before the answer
        text = fh.read()
    assert f"added app/c 127.0.0.1:{c.port} weight=2 backup max_connections=7" in text, text
    assert "server app/c drain -" in text and "listener web disabled" in text, text
    assert [n for n in os.listdir(f.dir) if n.startswith("ferry.state")] == ["ferry.state"]
    assert f.ctl("reload").startswith("ok")
    sc = server(f, "c")
    assert (sc["weight"], sc["backup"], sc["max_connections"], sc["state"]) == \
        (2, True, 7, "disabled"), sc
    assert f.listener("web")["accepting"] is False
    assert f.stop() == 0
    f2 = start_ferry(config.replace("state_file = ferry.state", f"state_file = {path}"))
    sc = f2.server("app", "c")
    assert (sc["weight"], sc["backup"], sc["max_connections"], sc["state"]) == \
        (2, True, 7, "disabled"), sc
    assert sc["address"] == f"127.0.0.1:{c.port}"
    assert f2.listener("web")["accepting"] is False
    f2.ctl("enable-listener", "web")
    f2.ctl("enable", "app/c")
    # The configuration now defines c itself: its settings win.
    f2.write_config(config.replace("state_file = ferry.state", f"state_file = {path}")
                    + f"server c 127.0.0.1:{c.port} weight=9\n")
    assert f2.ctl("reload").startswith("ok")
    sc = f2.server("app", "c")
    assert (sc["weight"], sc["backup"], sc["max_connections"]) == (9, False, 0), sc


def test_state_file_keeps_addresses_set_at_runtime():
    """`set server addr` lasts across a reload and a restart while the
    configuration still gives the server the address it had; once the
    configuration changes it, the configuration's wins."""
    a, b, port, config = two_servers("state_file = ferry.state")
    f = start_ferry(config)
    c = start_backend("label", label=b"C")
    path = os.path.join(f.dir, "ferry.state")
    assert f.ctl("set", "app/a", "addr", f"127.0.0.1:{c.port}").strip() == "ok"
    with open(path) as fh:
        text = fh.read()
    assert f"server app/a ready - addr=127.0.0.1:{c.port} cfg=127.0.0.1:{a.port}" in text, text
    assert f.ctl("reload").startswith("ok")
    assert server(f, "a")["address"] == f"127.0.0.1:{c.port}"
    assert {label_of(port) for _ in range(20)} == {b"B", b"C"}
    assert f.stop() == 0
    config2 = config.replace("state_file = ferry.state", f"state_file = {path}")
    f2 = start_ferry(config2)
    assert f2.server("app", "a")["address"] == f"127.0.0.1:{c.port}"
    # The configuration moves a: its address wins, the runtime one is gone.
    d = start_backend("label", label=b"D")
    f2.write_config(config2.replace(f"server a 127.0.0.1:{a.port}", f"server a 127.0.0.1:{d.port}"))
    assert f2.ctl("reload").startswith("ok")
    assert f2.server("app", "a")["address"] == f"127.0.0.1:{d.port}"
    f2.ctl("set", "app/b", "weight", "2")  # rewrites the file
    with open(path) as fh:
        assert "addr=" not in fh.read()


def test_state_file_write_failure_is_a_warning():
    """A change that cannot be written stands, answered ok + warning."""
    a, b, port, config = two_servers("state_file = st/ferry.state")
    f = start_ferry(config, pre_start=lambda d: os.mkdir(os.path.join(d, "st")))
    os.rmdir(os.path.join(f.dir, "st"))
    out = f.ctl("set", "app/a", "weight", "3")
    lines = out.splitlines()
    assert lines[0] == "ok" and len(lines) == 2, out
    assert lines[1].startswith("warning: state_file ") and "st/ferry.state" in lines[1], out
    assert server(f, "a")["weight"] == 3


if __name__ == "__main__":
    runner.run(globals())
