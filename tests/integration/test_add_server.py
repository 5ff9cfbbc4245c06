#!/usr/bin/env python3
"""Runtime `add server` / `del server` (ferryctl(8) COMMANDS, ferryctl(8)): an added server serves at
once and is gone after a reload; `del` is refused while the server is enabled
or holds a connection."""
import signal

from ferrytest import (connect, free_port, recv_exact, runner, start_backend, start_ferry,
                       wait_for, web_config)


def who(port):
    s = connect(port)
    b = recv_exact(s, 2)
    s.close()
    return b


def names(f):
    return [s["name"] for b in f.stats()["backends"] if b["name"] == "app" for s in b["servers"]]


def test_add_serves_at_once_and_reload_forgets_it():
    a = start_backend("label", label=b"aa")
    b = start_backend("label", label=b"bb")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{a.port}\n",
                               global_lines="workers = 2"))
    assert f.ctl("add", "app", "extra", f"127.0.0.1:{b.port}", "weight=3").strip() == "ok"
    assert names(f) == ["a", "extra"]
    got = [who(port) for _ in range(40)]
    assert got.count(b"bb") >= 20 and got.count(b"aa") >= 5, got  # weights 1:3, per worker
    # The same name again is refused; so is a bad address, naming the mistake.
    r = f.command(b"add server app extra 127.0.0.1:1\n")
    assert r.startswith("error:") and "exists" in r, r
    r = f.command(b"add server app x localhost\n")  # a host name needs its port
    assert r.startswith("error:") and "address" in r, r
    r = f.command(b"add server nope x 127.0.0.1:80\n")
    assert r.startswith("error:") and "no such backend" in r, r
    out = f.ctl("--json", "add", "app", "y", f"127.0.0.1:{b.port}", "backup", check=False)
    assert '"ok": true' in out, out
    # A reload builds the configured servers only.
    f.signal(signal.SIGHUP)
    wait_for(lambda: names(f) == ["a"], timeout=10, what="added servers gone after a reload")
    assert [who(port) for _ in range(4)] == [b"aa"] * 4


def series_of(f, server):
    """The /metrics lines (show metrics) that name server `server`."""
    return [l for l in f.ctl("metrics").splitlines() if f'server="{server}"' in l]


def test_deleted_servers_leave_the_metrics():
    """Every series of a deleted server leaves the exposition (up, counters,
    weight, state, connect histogram), also after added and deleted names
    churn across reloads; the servers that stay keep theirs."""
    a = start_backend("label", label=b"aa")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{a.port}\n",
                               global_lines="workers = 2"))
    for rnd in range(3):
        for i in range(10):
            name = f"x{rnd}-{i}"
            assert f.ctl("add", "app", name, f"127.0.0.1:{a.port}").strip() == "ok"
            assert series_of(f, name), name
            who(port)
            assert f.ctl("disable", f"app/{name}").strip() == "ok"
            assert f.ctl("del", f"app/{name}").strip() == "ok"
            assert series_of(f, name) == [], (name, series_of(f, name))
        f.signal(signal.SIGHUP)
        wait_for(lambda: f.ctl("info", json_out=True)["reloads"] == rnd + 1, what="reload")
    text = f.ctl("metrics")
    assert 'server="x' not in text, [l for l in text.splitlines() if 'server="x' in l][:5]
    assert 'ferry_server_up{backend="app",server="a"} 1' in text, text
    assert len(series_of(f, "a")) > 10


def test_del_only_when_disabled_and_idle():
    a = start_backend("label", label=b"aa")
    b = start_backend("label", label=b"bb")
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{a.port}
server b 127.0.0.1:{b.port}
""", global_lines="workers = 1"))
    r = f.command(b"del server app/b\n")
    assert r.startswith("error:") and "disable" in r, r
    held = None
    for _ in range(4):
        c = connect(port)
        if recv_exact(c, 2) == b"bb":
            held = c
            break
        c.close()
    assert held is not None
    f.ctl("disable", "app/b")
    r = f.command(b"del server app/b\n")
    assert r.startswith("error:") and "active" in r, r  # its connection still runs
    held.sendall(b"hi")
    assert recv_exact(held, 2) == b"hi"
    held.close()
    wait_for(lambda: f.server("app", "b")["active"] == 0, timeout=10, what="connection ended")
    assert f.ctl("del", "app/b").strip() == "ok"
    assert names(f) == ["a"]
    assert [who(port) for _ in range(4)] == [b"aa"] * 4
    r = f.command(b"del server app/b\n")
    assert r.startswith("error:") and "no such server" in r, r


if __name__ == "__main__":
    runner.run(globals())
