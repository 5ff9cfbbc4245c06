#!/usr/bin/env python3
"""DNS: server names and `discover` kept current from a real DNS server.

A real dnsmasq runs on a free loopback port with a hosts file (A records,
TTL 1 s) and SRV records; the test edits them and reloads dnsmasq (SIGHUP
re-reads the hosts file; SRV records need a restart on the same port) while
ferryd keeps serving. Backends listen on 127.0.0.2 .. 127.0.0.5 so that DNS
answers can point at distinct addresses."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile

from ferrytest import (cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, wait_for, web_config)

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def dns_query(port, name, qtype=1, timeout=0.5):
    """One UDP query to 127.0.0.1:port; the reply's rcode and answer count, or None."""
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            r, _ = s.recvfrom(4096)
        except OSError:
            return None
    return r[3] & 0xF, struct.unpack(">H", r[6:8])[0]


class Dnsmasq:
    """dnsmasq on 127.0.0.1:port answering for *.test from a hosts file and SRV lines."""

    def __init__(self, hosts="", srv=(), port=None, extra=()):
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="ferry-dns-")
        self.port = port or free_port()
        self.hosts = os.path.join(self.dir, "hosts")
        self.set_hosts(hosts)
        self.srv = list(srv)
        self.proc = None
        self.start()

    def set_hosts(self, text):
        with open(self.hosts + ".tmp", "w") as f:
            f.write(text)
        os.chmod(self.hosts + ".tmp", 0o644)
        os.replace(self.hosts + ".tmp", self.hosts)

    def start(self):
        args = [DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
                f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}", "--local=/test/",
                "--local-ttl=1", f"--pid-file={self.dir}/pid"]
        if os.getuid() == 0:
            args.append("--user=root")
        args += [f"--srv-host={s}" for s in self.srv] + self.extra
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or dns_query(self.port, "probe.test"),
                 timeout=10, what="dnsmasq answering")
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq exited: " + open(os.path.join(self.dir, "log")).read())

    def reload(self, hosts):
        self.set_hosts(hosts)
        self.proc.send_signal(signal.SIGHUP)

    def restart(self, srv=None):
        self.stop()
        if srv is not None:
            self.srv = list(srv)
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


def start_dnsmasq(*a, **kw):
    d = Dnsmasq(*a, **kw)
    cleanup(d.stop)
    return d


def labelled(host, label, port=None):
    return start_backend("label", label=label, host=host, port=port)


def who(port):
    """The label of the backend a new connection through ferry reaches, or None."""
    try:
        s = connect(port, timeout=5)
        s.settimeout(5)
        b = recv_exact(s, 2)
        s.close()
        return b
    except (OSError, AssertionError):
        return None


def dns_globals(dns):
    return f"workers = 2\nresolvers = 127.0.0.1:{dns.port}\ndns_min_ttl = 1s\n"


def test_a_record_moves_between_backends():
    bport = free_port()
    a = labelled("127.0.0.2", b"aa", bport)
    b = labelled("127.0.0.3", b"bb", bport)
    dns = start_dnsmasq("127.0.0.2 db.test\n")
    port = free_port()
    f = start_ferry(web_config(port, f"server db db.test:{bport}\n",
                               global_lines=dns_globals(dns)))
    assert [who(port) for _ in range(4)] == [b"aa"] * 4
    dns.reload("127.0.0.3 db.test\n")
    wait_for(lambda: who(port) == b"bb", timeout=15, what="traffic following the A record")
    assert [who(port) for _ in range(4)] == [b"bb"] * 4
    s = f.server("app", "db")
    assert s["state"] == "up" and s["total"] >= 8, s
    assert "server_address" in f.logtext() and "address=127.0.0.3:" in f.logtext()
    assert a.accepted >= 4 and b.accepted >= 4


def test_name_missing_at_start_appears_later():
    bport = free_port()
    labelled("127.0.0.4", b"cc", bport)
    other = labelled("127.0.0.1", b"ok")
    dns = start_dnsmasq("")
    port = free_port()
    f = start_ferry(web_config(port, f"""
server later later.test:{bport}
server fixed 127.0.0.1:{other.port} backup
""", global_lines=dns_globals(dns)))
    # ferryd started (ferryd(8)): the server waits unresolved, taking no traffic.
    assert f.server("app", "later")["state"] == "unresolved"
    assert f.proc.poll() is None
    text = f.ctl("stats")
    assert "unresolved" in text, text
    assert who(port) == b"ok"  # the backup serves meanwhile
    assert "dns_lookup_failed" in f.logtext()
    dns.reload("127.0.0.4 later.test\n")
    wait_for(lambda: f.server("app", "later")["state"] == "up", timeout=15,
             what="the name resolving")
    wait_for(lambda: who(port) == b"cc", timeout=5, what="traffic to the resolved server")


def test_dns_down_keeps_last_good_address():
    bport = free_port()
    labelled("127.0.0.2", b"aa", bport)
    dns = start_dnsmasq("127.0.0.2 keep.test\n")
    port = free_port()
    f = start_ferry(web_config(port, f"server k keep.test:{bport}\n",
                               global_lines=dns_globals(dns)))
    assert who(port) == b"aa"
    dns.stop()
    # The TTL (1 s) ends, lookups time out: the last good address stays.
    wait_for(lambda: "dns_lookup_failed" in f.logtext(), timeout=20, what="a failed lookup")
    assert "kept=last_address" in f.logtext()
    assert [who(port) for _ in range(3)] == [b"aa"] * 3
    assert f.server("app", "k")["state"] == "up"
    # A reload while DNS is down keeps it too (carried over, looked up again).
    f.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in f.logtext() or "reloaded" in f.logtext(),
             timeout=10, what="reload")
    assert who(port) == b"aa"


def servers(f, backend="app"):
    for b in f.stats()["backends"]:
        if b["name"] == backend:
            return {s["name"]: s for s in b["servers"]}
    raise AssertionError(f"no backend {backend}")


def test_discover_a_records_as_servers():
    bport = free_port()
    for i in (2, 3, 4):
        labelled(f"127.0.0.{i}", b"s%d" % i, bport)
    hosts3 = "".join(f"127.0.0.{i} svc.test\n" for i in (2, 3, 4))
    dns = start_dnsmasq(hosts3)
    port = free_port()
    f = start_ferry(web_config(port, f"discover = dns svc.test:{bport}\n",
                               global_lines=dns_globals(dns).replace("workers = 2", "workers = 1")))
    names = {f"127.0.0.{i}:{bport}" for i in (2, 3, 4)}
    wait_for(lambda: set(servers(f)) == names, timeout=10, what="three discovered servers")
    got = [who(port) for _ in range(30)]
    assert sorted(set(got)) == [b"s2", b"s3", b"s4"] and got.count(b"s4") == 10, got
    # Hold a connection on 127.0.0.4, then remove its record: the server
    # takes no new connections, the held one runs on.
    held = None
    for _ in range(6):
        c = connect(port)
        if recv_exact(c, 2) == b"s4":
            held = c
            break
        c.close()
    assert held is not None
    total4 = servers(f)[f"127.0.0.4:{bport}"]["total"]
    dns.reload("127.0.0.2 svc.test\n127.0.0.3 svc.test\n")
    wait_for(lambda: f"127.0.0.4:{bport}" not in servers(f), timeout=15,
             what="the removed record's server leaving")
    got = [who(port) for _ in range(20)]
    assert b"s4" not in got and got.count(b"s2") == 10, got
    held.sendall(b"still here")
    assert recv_exact(held, 10) == b"still here"
    held.close()
    assert "server_departed" in f.logtext()
    # Gone from discovery, it is gone for commands too (ferryctl(8) COMMANDS).
    gone = f"app/127.0.0.4:{bport}"
    for cmd in (f"disable server {gone}\n", f"set server {gone} weight 3\n"):
        assert f.command(cmd.encode()) == f"error: no such server {gone}\n", cmd
    assert "server_state_set" not in f.logtext() and "server_weight_set" not in f.logtext()
    # It comes back under the same name, with its counters.
    dns.reload(hosts3)
    wait_for(lambda: f"127.0.0.4:{bport}" in servers(f), timeout=15, what="the record returning")
    assert servers(f)[f"127.0.0.4:{bport}"]["total"] >= total4
    wait_for(lambda: who(port) == b"s4", timeout=5, what="traffic to the returned server")
    # DNS down: the last good set stays.
    dns.stop()
    wait_for(lambda: "kept=last_set" in f.logtext(), timeout=20, what="a failed discover lookup")
    assert set(servers(f)) == names
    assert sorted(set(who(port) for _ in range(9))) == [b"s2", b"s3", b"s4"]
    # A reload while DNS is down carries the discovered servers over.
    f.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in f.logtext(), timeout=10, what="reload")
    assert set(servers(f)) == names
    assert sorted(set(who(port) for _ in range(9))) == [b"s2", b"s3", b"s4"]


def test_discover_srv_weights_and_backup():
    pa, pb, pc = free_port(), free_port(), free_port()
    labelled("127.0.0.2", b"w1", pa)
    labelled("127.0.0.2", b"w3", pb)  # same address, another port: another server
    labelled("127.0.0.4", b"bk", pc)
    srv = [f"_app._tcp.srv.test,a.test,{pa},10,1", f"_app._tcp.srv.test,a.test,{pb},10,3",
           f"_app._tcp.srv.test,c.test,{pc},20,5"]
    dns = start_dnsmasq("127.0.0.2 a.test\n127.0.0.4 c.test\n", srv=srv)
    port = free_port()
    f = start_ferry(web_config(port, "discover = srv _app._tcp.srv.test\n",
                               global_lines=dns_globals(dns).replace("workers = 2", "workers = 1")))
    names = {f"127.0.0.2:{pa}", f"127.0.0.2:{pb}", f"127.0.0.4:{pc}"}
    wait_for(lambda: set(servers(f)) == names, timeout=10, what="three SRV servers")
    got = [who(port) for _ in range(40)]
    assert got.count(b"w1") == 10 and got.count(b"w3") == 30, got  # weights 1:3, no backup
    # The priority-20 record is a backup: it serves once the others are out.
    f.ctl("disable", f"app/127.0.0.2:{pa}")
    f.ctl("disable", f"app/127.0.0.2:{pb}")
    assert [who(port) for _ in range(3)] == [b"bk"] * 3
    f.ctl("enable", f"app/127.0.0.2:{pa}")
    f.ctl("enable", f"app/127.0.0.2:{pb}")
    # A record removed (dnsmasq restarted on the same port with two of them).
    dns.restart(srv=srv[1:])
    wait_for(lambda: set(servers(f)) == names - {f"127.0.0.2:{pa}"}, timeout=15,
             what="the removed SRV record's server leaving")
    assert [who(port) for _ in range(4)] == [b"w3"] * 4


def test_reload_changes_resolvers_with_lookups_in_flight():
    """resolvers changed by a reload while lookups are running (names that
    the first server forwards to a black hole, so they stay in flight for
    seconds) take effect for certain: every later lookup goes to the new
    server, seen as traffic following its answer and as the old server
    getting no more queries."""
    bport = free_port()
    labelled("127.0.0.2", b"aa", bport)
    labelled("127.0.0.3", b"bb", bport)
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes queries, never answers
    hole.bind(("127.0.0.1", 0))
    cleanup(hole.close)
    old = start_dnsmasq("127.0.0.2 db.test\n", extra=[
        f"--server=/slow.test/127.0.0.1#{hole.getsockname()[1]}", "--log-queries"])
    new = start_dnsmasq("127.0.0.3 db.test\n")
    port = free_port()
    slow = "".join(f"server slow{i} n{i}.slow.test:{bport} backup\n" for i in range(8))
    f = start_ferry(web_config(port, f"server db db.test:{bport}\n" + slow,
                               global_lines=dns_globals(old)))
    assert who(port) == b"aa"
    wait_for(lambda: open(os.path.join(old.dir, "log")).read().count("slow.test") >= 8,
             timeout=10, what="lookups in flight to the black hole")
    f.write_config(web_config(port, f"server db db.test:{bport}\n" + slow,
                              global_lines=dns_globals(new)))
    assert f.ctl("reload").startswith("ok")
    wait_for(lambda: who(port) == b"bb", timeout=15, what="answers of the new resolver")
    assert [who(port) for _ in range(4)] == [b"bb"] * 4
    # c-ares gives up on what it sent before the reload within 2 s (1 s per
    # try, 2 tries); after that the old server hears nothing more.
    import time
    time.sleep(2.5)
    before = open(os.path.join(old.dir, "log")).read().count("query[")
    time.sleep(3)
    after = open(os.path.join(old.dir, "log")).read().count("query[")
    assert after == before, f"{after - before} queries to the old resolver after the reload"
    assert "dns_resolvers_rejected" not in f.logtext()


def test_discover_over_256_records_keeps_lowest_addresses():
    """An answer of 300 A records keeps 256 of them: the lowest addresses,
    whatever order the records arrive in (dnsmasq answers in its hosts
    file's order, here highest first, then shuffled), so the set does not
    churn between refreshes; how many were dropped is logged."""
    import random
    bport = free_port()
    addrs = [f"127.1.{i // 200}.{i % 200 + 1}" for i in range(300)]
    key = lambda a: tuple(int(x) for x in a.split("."))
    dns = start_dnsmasq("".join(f"{a} big.test\n" for a in sorted(addrs, key=key, reverse=True)))
    port = free_port()
    f = start_ferry(web_config(port, f"discover = dns big.test:{bport}\n",
                               global_lines=dns_globals(dns).replace("workers = 2", "workers = 1")))
    want = {f"{a}:{bport}" for a in sorted(addrs, key=key)[:256]}
    wait_for(lambda: len(servers(f)) == 256, timeout=15, what="256 discovered servers")
    assert set(servers(f)) == want, sorted(set(servers(f)) ^ want)[:8]
    wait_for(lambda: "dropped=44" in f.logtext(), timeout=5, what="the dropped records logged")
    shuffled = list(addrs)
    random.Random(7).shuffle(shuffled)
    dns.reload("".join(f"{a} big.test\n" for a in shuffled))
    import time
    time.sleep(3)  # several refreshes (TTL 1 s)
    assert set(servers(f)) == want
    assert "server_departed" not in f.logtext()


def test_departed_servers_leave_the_metrics():
    """Discovered names that churn (each answer a new set of addresses)
    leave the exposition once departed, and the ones that stay keep their
    series; the backend never lists more than the answer."""
    bport = free_port()
    dns = start_dnsmasq("127.2.0.1 churn.test\n")
    port = free_port()
    f = start_ferry(web_config(port, f"discover = dns churn.test:{bport}\nconnect_timeout = 100ms\n"
                               "retries = 0\n",
                               global_lines=dns_globals(dns).replace("workers = 2", "workers = 1")))
    wait_for(lambda: set(servers(f)) == {f"127.2.0.1:{bport}"}, timeout=10, what="first set")
    for rnd in range(1, 5):
        hosts = "".join(f"127.2.{rnd}.{i} churn.test\n" for i in range(1, 21))
        dns.reload(hosts + "127.2.0.1 churn.test\n")
        want = {f"127.2.{rnd}.{i}:{bport}" for i in range(1, 21)} | {f"127.2.0.1:{bport}"}
        wait_for(lambda: set(servers(f)) == want, timeout=15, what=f"set {rnd}")
        text = f.ctl("metrics")
        lines = [l for l in text.splitlines() if 'server="127.2.' in l]
        named = {l.split('server="', 1)[1].split('"', 1)[0] for l in lines}
        assert named == want, sorted(named ^ want)[:6]


def test_check_mode_does_not_resolve():
    dns_port = free_port()  # nothing answers here
    port = free_port()
    d = tempfile.mkdtemp(prefix="ferry-dns-t-")
    path = os.path.join(d, "ferry.ini")
    with open(path, "w") as fh:
        fh.write(web_config(port, "server x nowhere.test:80\n",
                            global_lines=f"resolvers = 127.0.0.1:{dns_port}").replace(
                                "@SOCK@", os.path.join(d, "s")))
    from ferrytest import FERRYD
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=30)
    assert r.returncode == 0, r
    assert b"configuration is valid" in r.stdout


if __name__ == "__main__":
    if not os.path.exists(DNSMASQ):
        print("SKIP: dnsmasq not installed (scripts/deps.sh test installs dnsmasq-base)")
        sys.exit(77)
    runner.run(globals())
