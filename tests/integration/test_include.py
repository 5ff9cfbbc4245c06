#!/usr/bin/env python3
"""include = GLOB (ferry.ini(5)): conf.d files read after the main file, by
-t, at start and at every reload, with errors naming the included file and
its line; through the real ferryd and ferryctl."""
import os
import shutil
import subprocess
import tempfile

from ferrytest import (FERRYD, cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry)


def tmpdir():
    d = tempfile.mkdtemp(prefix="ferry-inc-")
    cleanup(lambda: shutil.rmtree(d, True))
    return d


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def check(path):
    """ferryd -t: (status, the "valid" line, the error lines). The errors are
    taken from both streams: only their text and order are checked here."""
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60, cwd="/")
    lines = (r.stdout.decode() + r.stderr.decode()).strip().splitlines()
    valid = [l for l in lines if l.endswith(": configuration is valid")]
    return r.returncode, "".join(valid), [l for l in lines if l not in valid]


def listener(name, port, backend):
    return f"[listener {name}]\nbind = 127.0.0.1:{port}\nbackend = {backend}\n"


def backend(name, port):
    return f"[backend {name}]\nserver s 127.0.0.1:{port}\n"


def test_check_reads_included_files_in_sorted_order():
    d = tmpdir()
    main = os.path.join(d, "ferry.ini")
    p1, p2 = free_port(), free_port()
    write(main, "[global]\ncontrol_socket =\ninclude = conf.d/*.ini\n" + listener("a", p1, "b2"))
    # b2 is defined in a file sorted after the listener that names it: the
    # references are checked once every file is read.
    write(os.path.join(d, "conf.d", "20-b.ini"), backend("b2", 9))
    write(os.path.join(d, "conf.d", "10-a.ini"), listener("c", p2, "b2"))
    write(os.path.join(d, "conf.d", "notes.txt"), "this is not ini and not matched\n")
    rc, out, err = check(main)
    assert rc == 0 and out.strip() == f"{main}: configuration is valid", (rc, out, err)


def test_errors_name_the_included_file_and_line_in_reading_order():
    d = tmpdir()
    main = os.path.join(d, "ferry.ini")
    p1 = free_port()
    write(main, "[global]\ncontrol_socket =\ninclude = conf.d/*.ini\n"
          + listener("a", p1, "b") + "bogus_main = 1\n" + backend("b", 9))
    inc_a = os.path.join(d, "conf.d", "a.ini")
    inc_b = os.path.join(d, "conf.d", "b.ini")
    write(inc_a, "\n" + listener("x", p1, "nope") + "tls = maybe\n")
    # The keys of the refused [global] are skipped, as under any bad header.
    write(inc_b, "[global]\nworkers = 2\n[backend b]\nserver s 127.0.0.1:9\n")
    rc, out, err = check(main)
    assert rc == 1, (rc, out, err)
    assert err == [
        f"{main}:7: unknown key \"bogus_main\" in [listener a]",
        f"{inc_a}:3: bind 127.0.0.1:{p1} conflicts with bind 127.0.0.1:{p1} at {main}:5",
        f"{inc_a}:4: unknown backend \"nope\"",
        f"{inc_a}:5: invalid value \"maybe\" for tls: expected on, off, yes, no, true or false",
        f"{inc_b}:1: [global] belongs in the main configuration file, not in an included one",
        f"{inc_b}:3: duplicate section [backend b] (first at {main}:8)",
    ], err


def test_a_named_file_must_exist_an_empty_glob_is_fine():
    d = tmpdir()
    main = os.path.join(d, "ferry.ini")
    p1 = free_port()
    body = listener("a", p1, "b") + backend("b", 9)
    write(main, "[global]\ncontrol_socket =\ninclude = empty.d/*.ini\n" + body)
    os.makedirs(os.path.join(d, "empty.d"))
    rc, out, err = check(main)
    assert rc == 0, (rc, out, err)
    write(main, "[global]\ncontrol_socket =\ninclude = empty.d/*.ini\ninclude = extra.ini\n"
          + body)
    rc, out, err = check(main)
    assert rc == 1 and err == [f"{main}:4: include {d}/extra.ini: No such file or directory"], err
    # Named by two lines (a file and a glob that matches it): read once, so
    # its sections are not duplicates of themselves.
    write(os.path.join(d, "extra.ini"), backend("e", 9))
    write(main, "[global]\ncontrol_socket =\ninclude = extra.ini\ninclude = e*.ini\n" + body)
    rc, out, err = check(main)
    assert rc == 0, (rc, out, err)


def test_tls_and_bind_errors_of_an_included_file_name_it():
    import socket
    d = tmpdir()
    main = os.path.join(d, "ferry.ini")
    inc = os.path.join(d, "conf.d", "tls.ini")
    p1 = free_port()
    write(main, "[global]\ncontrol_socket =\ninclude = conf.d/*.ini\n" + backend("b", 9))
    write(inc, f"[listener t]\nbind = 127.0.0.1:{p1}\nbackend = b\ntls = on\n"
          f"tls_cert = {d}/missing.pem\n")
    rc, out, err = check(main)
    assert rc == 1 and err == [f"{inc}:5: cannot read tls_cert {d}/missing.pem: No such file "
                               "or directory"], err
    # With a syntax error as well, every pass still names the included file.
    write(inc, f"[listener t]\nbind = 127.0.0.1:{p1}\nbackend = b\ntls = on\n"
          f"tls_cert = {d}/missing.pem\nbogus = 1\n")
    rc, out, err = check(main)
    assert rc == 1 and err == [
        f"{inc}:5: cannot read tls_cert {d}/missing.pem: No such file or directory",
        f"{inc}:6: unknown key \"bogus\" in [listener t]"], err
    # A bind that fails at start names the included line.
    write(inc, listener("t", p1, "b"))
    busy = socket.socket()
    busy.bind(("127.0.0.1", p1))
    busy.listen(1)
    try:
        r = subprocess.run([FERRYD, "-c", main], capture_output=True, timeout=60, cwd="/")
    finally:
        busy.close()
    assert r.returncode == 2, r
    assert f"{inc}:2: cannot bind 127.0.0.1:{p1}: Address already in use" in r.stderr.decode(), r


def echo_once(port, payload):
    s = connect(port)
    s.sendall(payload)
    got = recv_exact(s, len(payload))
    s.close()
    return got


def test_reload_reads_the_included_files_again():
    app1, app2 = start_backend("echo"), start_backend("echo")
    p1, p2 = free_port(), free_port()
    confd = tmpdir()
    write(os.path.join(confd, "a.ini"), listener("a", p1, "one") + backend("one", app1.port))
    f = start_ferry(f"[global]\ncontrol_socket = @SOCK@\ninclude = {confd}/*.ini\n")
    assert echo_once(p1, b"first") == b"first"

    # A new file in conf.d: the reload binds its listener.
    write(os.path.join(confd, "b.ini"), listener("b", p2, "two") + backend("two", app2.port))
    out = f.ctl("reload")
    assert out.strip() == "ok", out
    assert echo_once(p2, b"second") == b"second"

    # A broken included file: the reload fails naming it, nothing changes.
    bad = os.path.join(confd, "c.ini")
    write(bad, "[backend three]\nserver s 127.0.0.1:notaport\n")
    r = subprocess.run([os.environ["FERRYCTL"], "-s", f.sock_path, "reload"],
                       capture_output=True, timeout=30)
    text = r.stdout.decode()
    assert r.returncode == 1 and f"error: {bad}:2: invalid server address" in text, text
    assert echo_once(p1, b"still") == b"still" and echo_once(p2, b"here") == b"here"
    names = {l["name"] for l in f.stats()["listeners"]}
    assert names == {"a", "b"}, names

    # Gone from conf.d: its listener closes at the next reload.
    os.unlink(bad)
    os.unlink(os.path.join(confd, "b.ini"))
    assert f.ctl("reload").strip() == "ok"
    assert {l["name"] for l in f.stats()["listeners"]} == {"a"}


if __name__ == "__main__":
    runner.run(globals())
