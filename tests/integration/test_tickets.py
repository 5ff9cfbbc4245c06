#!/usr/bin/env python3
"""Session-ticket keys (ferry.ini(5), tls_ticket_keys): two ferryd sharing a
ticket-key file resume each other's TLS 1.2 and TLS 1.3 sessions (Python's
ssl as the client), and do not with different files; rotation by rewriting
the file (the first key encrypts, all decrypt); a bad file is an error at
its line; without a file, tickets survive a reload of the same process."""
import atexit
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile

from ferrytest import (FERRYD, free_port, recv_exact, runner, start_backend, start_ferry,
                       wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = tempfile.mkdtemp(prefix="ferry-tickets-")
atexit.register(shutil.rmtree, CERTS, True)
subprocess.run(["sh", os.path.join(HERE, "..", "fixtures", "gen-certs.sh"), CERTS], check=True,
               timeout=120)
VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def key_file(name, *keys):
    path = os.path.join(CERTS, name)
    with open(path + ".tmp", "w") as fh:
        fh.write("# ticket keys, newest first\n")
        for k in keys:
            fh.write(base64.b64encode(k).decode() + "\n")
    os.replace(path + ".tmp", path)
    return path


def ferry(keys, port=None):
    port = port or free_port()
    b = start_backend("echo")
    line = f"tls_ticket_keys = {keys}" if keys else ""
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener web]
bind = 127.0.0.1:{port}
tls = on
tls_cert = {CERTS}/a-ec.pem
{line}
backend = app
[backend app]
server s 127.0.0.1:{b.port}
""")
    f.port = port
    return f


def make_ctx(version):
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


# Python's ssl resumes a session only with the context that made it.
CTX = {v: make_ctx(v) for v in VERSIONS}


def ctx_for(version):
    return CTX[version]


def connect(f, ctx, session=None):
    """A handshake and an echo; returns (resumed, session for the next one)."""
    raw = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="a.test", session=session) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"  # TLS 1.3 tickets arrive with it
        return s.session_reused, s.session


def test_shared_file_resumes_across_instances():
    keys = key_file("shared", os.urandom(80), os.urandom(80))
    a, b = ferry(keys), ferry(keys)
    c = ferry(key_file("other", os.urandom(80)))
    for v in VERSIONS:
        ctx = ctx_for(v)
        reused, sess = connect(a, ctx)
        assert not reused
        assert sess is not None and sess.has_ticket, v
        assert connect(a, ctx, sess)[0], f"{v}: no resumption on the same instance"
        assert connect(b, ctx, sess)[0], f"{v}: no resumption on the other instance"
        # An instance with other keys does a full handshake instead.
        reused, _ = connect(c, ctx, sess)
        assert not reused, f"{v}: resumed with another key file"
        # And the other way round: b's tickets resume on a.
        _, sess_b = connect(b, ctx)
        assert connect(a, ctx, sess_b)[0], v


def test_rotation_by_rewriting_the_file():
    old, new = os.urandom(80), os.urandom(80)
    keys = key_file("rotate", old)
    f = ferry(keys)
    sessions = {}
    for v in VERSIONS:
        sessions[v] = connect(f, ctx_for(v))[1]
    # The new key first: old tickets still decrypt.
    key_file("rotate", new, old)
    f.signal(signal.SIGHUP)
    wait_for(lambda: f.ctl("info", json_out=True)["reloads"] == 1, what="reload")
    for v in VERSIONS:
        assert connect(f, ctx_for(v), sessions[v])[0], f"{v}: old ticket after rotation"
    # The old key gone: old tickets do not resume any more, new ones do.
    key_file("rotate", new)
    f.signal(signal.SIGHUP)
    wait_for(lambda: f.ctl("info", json_out=True)["reloads"] == 2, what="reload")
    for v in VERSIONS:
        reused, sess = connect(f, ctx_for(v), sessions[v])
        assert not reused, f"{v}: resumed with a removed key"
        assert connect(f, ctx_for(v), sess)[0], v


def test_without_a_file_tickets_survive_a_reload():
    f = ferry(None)
    for v in VERSIONS:
        sess = connect(f, ctx_for(v))[1]
        n = f.ctl("info", json_out=True)["reloads"]
        f.signal(signal.SIGHUP)
        wait_for(lambda: f.ctl("info", json_out=True)["reloads"] == n + 1, what="reload")
        assert connect(f, ctx_for(v), sess)[0], v


def check(keys_text):
    d = tempfile.mkdtemp(prefix="ferry-tickets-t-")
    try:
        with open(os.path.join(d, "keys"), "w") as fh:
            fh.write(keys_text)
        path = os.path.join(d, "ferry.ini")
        with open(path, "w") as fh:
            fh.write(f"""[global]
control_socket =
[listener web]
bind = 127.0.0.1:1
tls = on
tls_cert = {CERTS}/a-ec.pem
tls_ticket_keys = keys
backend = app
[backend app]
server s 127.0.0.1:2
""")
        r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60)
        return r.returncode, (r.stdout + r.stderr).decode(), d
    finally:
        shutil.rmtree(d, True)


def openssl_rand(*args):
    r = subprocess.run(["openssl", "rand", *args], capture_output=True, check=True, timeout=30)
    return r.stdout.decode()


def openssl_one_line():
    """`openssl rand 80 | openssl base64 -A` (rand itself has no -A)."""
    r = subprocess.run("openssl rand 80 | openssl base64 -A", shell=True, capture_output=True,
                       check=True, timeout=30)
    return r.stdout.decode()


def test_openssl_rand_recipes():
    """The key file as `openssl rand` writes it: `-base64 80` wraps a key at
    64 columns (two lines), `openssl rand 80 | openssl base64 -A` writes it
    whole (no newline at all). Both load, wrapped keys may follow each other with or without a
    blank line, and a wrapped key is the same key as its one-line form: an
    instance reading one resumes the sessions of an instance reading the
    other."""
    wrapped = openssl_rand("-base64", "80")
    assert [len(l) for l in wrapped.splitlines()] == [64, 44], wrapped
    whole = openssl_one_line()
    assert len(whole) == 108 and "\n" not in whole, whole
    for text in (wrapped, whole, wrapped + openssl_rand("-base64", "80"),
                 "# newest first\n" + wrapped + "\n" + openssl_rand("-base64", "80") + "\n" + whole):
        rc, out, _ = check(text)
        assert rc == 0, (text, out)
    a = ferry(key_file_text("wrapped", wrapped + openssl_rand("-base64", "80")))
    b = ferry(key_file_text("one-line", wrapped.replace("\n", "") + "\n"))
    for v in VERSIONS:
        ctx = ctx_for(v)
        _, sess = connect(a, ctx)
        assert connect(b, ctx, sess)[0], f"{v}: the one-line form is another key"
        _, sess = connect(b, ctx)
        assert connect(a, ctx, sess)[0], v
    # Half a wrapped key is an error at the line where the key began.
    first = wrapped.splitlines()[0]
    for text, where in [(f"{whole}\n{first}\n", "line 2: not a base64 80-byte key"),
                        (f"{first}\n\n{wrapped}", "line 1: not a base64 80-byte key"),
                        (f"{first}\n{whole}\n", "line 1: not a base64 80-byte key")]:
        rc, out, _ = check(text)
        assert rc == 1 and where in out, (text, out)


def key_file_text(name, text):
    path = os.path.join(CERTS, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_bad_file_is_an_error_at_its_line():
    good = base64.b64encode(os.urandom(80)).decode()
    rc, out, _ = check(f"{good}\n\n{good}\n")
    assert rc == 0, out
    for text, where in [
        (f"{good}\nnot base64 at all\n", "line 2: not a base64 80-byte key"),
        (f"{good}\n{base64.b64encode(os.urandom(48)).decode()}\n", "line 2: not a base64 80-byte key"),
        (f"# only a comment\n", "no key in the file"),
        (f"{good[:-2]}!=\n", "line 1: not a base64 80-byte key"),
        ("x" * 5000 + "\n", "line 1: too long"),
    ]:
        rc, out, d = check(text)
        assert rc == 1, out
        assert re.search(r"ferry\.ini:7: cannot use tls_ticket_keys /\S+/keys: " + re.escape(where),
                         out), (where, out)
    # A reload with a broken file keeps the running keys.
    keys = key_file("reload-bad", os.urandom(80))
    f = ferry(keys)
    ctx = ctx_for(ssl.TLSVersion.TLSv1_3)
    sess = connect(f, ctx)[1]
    with open(keys, "w") as fh:
        fh.write("broken\n")
    f.signal(signal.SIGHUP)
    wait_for(lambda: f.ctl("info", json_out=True)["reloads_failed"] == 1, what="failed reload")
    assert connect(f, ctx, sess)[0]


if __name__ == "__main__":
    runner.run(globals())
