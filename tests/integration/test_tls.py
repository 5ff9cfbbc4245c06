#!/usr/bin/env python3
"""TLS end to end: termination (certificates per SNI, versions, ALPN, client
certificates, handshake timeout, many clients, reload), origination with
verification, TLS health checks, and SNI routing without termination
(passthrough), with real clients (Python's ssl, openssl s_client) and real
TLS servers (Python's ssl), on 127.0.0.1."""
import atexit
import concurrent.futures
import hashlib
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import warnings

from ferrytest import (FERRYD, closed_by_peer, connect, free_port, mute, recv_exact, runner,
                       start_backend, start_ferry, start_stuck_listener, wait_for)

MiB = 1 << 20
warnings.filterwarnings("ignore", category=DeprecationWarning)  # ssl.TLSVersion.TLSv1_1
HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "fixtures", "gen-certs.sh")
CERTS = tempfile.mkdtemp(prefix="ferry-tls-certs-")
atexit.register(shutil.rmtree, CERTS, True)
subprocess.run(["sh", GEN, CERTS], check=True, timeout=120)


def cert(name):
    return os.path.join(CERTS, name)


def der(name):
    """DER of the first certificate in a PEM file (the leaf)."""
    with open(cert(name)) as fh:
        pem = fh.read()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(pem[:pem.index(end) + len(end)] + "\n")


# ---- clients ----

def client_ctx(verify=False, ca="ca.pem", alpn=None, minv=None, maxv=None, ciphers=None,
               certfile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cert(ca))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    if certfile:
        ctx.load_cert_chain(cert(certfile))
    return ctx


def tls_connect(port, sni=None, ctx=None, timeout=15.0):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return (ctx or client_ctx()).wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def peer_der(s):
    return s.getpeercert(binary_form=True)


def roundtrip(s, data=b"ping"):
    s.sendall(data)
    return recv_exact(s, len(data))


def refused(fn):
    """True when fn() (a handshake and maybe a first exchange) fails with a TLS
    error or the connection is closed on it."""
    try:
        r = fn()
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        if isinstance(e, socket.timeout):
            raise AssertionError("timed out instead of being refused")
        return True
    return r == b""


def s_client(port, *args, timeout=20):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


# ---- TLS servers (backends) ----

def server_ctx(certname, names=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert(certname))
    if names is not None:
        def sni_cb(_sslobj, name, _ctx):
            names.append(name)
        ctx.sni_callback = sni_cb
    return ctx


def echo(s, _b):
    while True:
        b = s.recv(1 << 16)
        if not b:
            return
        s.sendall(b)


def label_echo(label):
    def run(s, b):
        s.sendall(label)
        echo(s, b)
    return run


def len_sink(s, _b):
    """Reads an 8-byte length then that many bytes; replies 'N SHA256'."""
    n = struct.unpack("!Q", recv_exact(s, 8))[0]
    h = hashlib.sha256()
    got = 0
    while got < n:
        b = s.recv(min(1 << 16, n - got))
        if not b:
            break
        h.update(b)
        got += len(b)
    s.sendall(f"{got} {h.hexdigest()}\n".encode())
    echo(s, _b)  # then wait for the client's EOF


def len_source(data):
    def run(s, b):
        s.sendall(struct.pack("!Q", len(data)))
        s.sendall(data)
        echo(s, b)
    return run


def tls_mode(ctx, inner):
    def run(c, b):
        c.settimeout(60)
        s = ctx.wrap_socket(c, server_side=True)
        try:
            with b.lock:
                b.handshakes = getattr(b, "handshakes", 0) + 1
            inner(s, b)
        finally:
            s.close()
    return run


def start_tls_backend(certname, inner=echo, names=None, port=None):
    return start_backend(tls_mode(server_ctx(certname, names), inner), port=port)


def send_len_prefixed(s, data):
    s.sendall(struct.pack("!Q", len(data)))
    view = memoryview(data)
    while view:
        s.sendall(view[:1 << 20])
        view = view[1 << 20:]


def read_len_prefixed(s):
    n = struct.unpack("!Q", recv_exact(s, 8))[0]
    h = hashlib.sha256()
    got = 0
    while got < n:
        b = s.recv(min(1 << 20, n - got))
        if not b:
            raise AssertionError(f"EOF after {got} of {n} bytes")
        h.update(b)
        got += len(b)
    return got, h.hexdigest()


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(256)
        if not b:
            break
        buf += b
    return buf.decode()


# ---- a client over memory BIOs: the wire bytes are ours to cut ----

class BioClient:
    def __init__(self, ctx, sni):
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=sni)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.hello = self.out.read()

    def finish(self, sock, send_last=True):
        """Completes the handshake over sock (the hello was sent already).
        With send_last false the client's last flight stays in self.out, to
        be sent with what follows."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    sock.sendall(pending)
                b = sock.recv(1 << 16)
                if not b:
                    raise AssertionError("EOF during the handshake")
                self.inc.write(b)
        if send_last:
            pending = self.out.read()
            if pending:
                sock.sendall(pending)

    def roundtrip(self, sock, data):
        self.obj.write(data)
        sock.sendall(self.out.read())
        got = b""
        while len(got) < len(data):
            try:
                got += self.obj.read(len(data) - len(got))
            except ssl.SSLWantReadError:
                b = sock.recv(1 << 16)
                if not b:
                    raise AssertionError("EOF before the echo")
                self.inc.write(b)
            pending = self.out.read()
            if pending:
                sock.sendall(pending)
        return got

    def peer_der(self):
        return self.obj.getpeercert(binary_form=True)


def refragment(hello, size):
    """The ClientHello record(s) cut again into records of at most size bytes."""
    body = b""
    rest = hello
    while rest:
        assert rest[0] == 0x16, rest[:5]
        n = struct.unpack("!H", rest[3:5])[0]
        body += rest[5:5 + n]
        version = rest[1:3]
        rest = rest[5 + n:]
    out = b""
    for i in range(0, len(body), size):
        chunk = body[i:i + size]
        out += b"\x16" + version + struct.pack("!H", len(chunk)) + chunk
    return out


def send_slowly(sock, data, chunk, pause=0.002):
    for i in range(0, len(data), chunk):
        sock.sendall(data[i:i + chunk])
        time.sleep(pause)


# ---- configurations ----

GLOBAL = """
[global]
workers = 2
control_socket = @SOCK@
log_level = info
"""


def term_listener(name, port, certs, backend="app", extra=""):
    lines = "\n".join(f"tls_cert = {cert(c)}" for c in certs)
    return f"""
[listener {name}]
bind = 127.0.0.1:{port}
backend = {backend}
tls = on
{lines}
{extra}
"""


def backend(name, servers, extra=""):
    lines = "\n".join(f"server {n} 127.0.0.1:{p}" for n, p in servers)
    return f"""
[backend {name}]
{lines}
{extra}
"""


def access_ends(f, listener):
    return [e["end"] for e in f.access_log() if e.get("listener") == listener]


# ---- termination: certificates ----

def test_certificate_per_sni():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(GLOBAL + term_listener("web", port, ["a-ec.pem", "a-rsa.pem", "b-ec.pem",
                                                         "w-ec.pem"])
                    + backend("app", [("e", b.port)]))
    # Verified against the CA by name: b.test's chain goes through the
    # intermediate the file carries.
    for sni, want in (("a.test", "a-ec.pem"), ("b.test", "b-ec.pem"), ("x.w.test", "w-ec.pem")):
        s = tls_connect(port, sni, client_ctx(verify=True))
        assert peer_der(s) == der(want), sni
        assert roundtrip(s, sni.encode()) == sni.encode()
        s.close()
    # The default (first) certificate: unknown name, a name two labels under
    # the wildcard, case differences aside, and no SNI at all.
    for sni, want in (("unknown.test", "a-ec.pem"), ("y.x.w.test", "a-ec.pem"),
                      ("B.TEST", "b-ec.pem"), (None, "a-ec.pem")):
        s = tls_connect(port, sni)
        assert peer_der(s) == der(want), sni
        s.close()
    st = f.listener("web")
    assert st["tls"] is True and st["handshake_errors"] == 0 and st["rejected"] == 0, st


def test_ecdsa_or_rsa_for_one_name():
    b = start_backend("echo")
    port = free_port()
    start_ferry(GLOBAL + term_listener("web", port, ["a-rsa.pem", "b-ec.pem", "a-ec.pem"])
                + backend("app", [("e", b.port)]))
    v12 = dict(minv=ssl.TLSVersion.TLSv1_2, maxv=ssl.TLSVersion.TLSv1_2)
    s = tls_connect(port, "a.test", client_ctx(ciphers="ECDHE-RSA-AES128-GCM-SHA256", **v12))
    assert peer_der(s) == der("a-rsa.pem")
    s.close()
    s = tls_connect(port, "a.test", client_ctx(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", **v12))
    assert peer_der(s) == der("a-ec.pem")
    s.close()
    # TLS 1.3: chosen by the signature algorithms the client offers.
    rc, out = s_client(port, "-servername", "a.test", "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256",
                       "-CAfile", cert("ca.pem"), "-verify_return_error", "-verify_hostname",
                       "a.test")
    assert rc == 0 and "Server public key is 2048 bit" in out, out
    assert "Verify return code: 0 (ok)" in out, out
    rc, out = s_client(port, "-servername", "a.test", "-tls1_3", "-sigalgs",
                       "ecdsa_secp256r1_sha256", "-CAfile", cert("ca.pem"), "-verify_return_error")
    assert rc == 0 and "Server public key is 256 bit" in out, out


# ---- termination: versions and ALPN ----

def test_protocol_versions():
    b = start_backend("echo")
    p12, p13 = free_port(), free_port()
    f = start_ferry(GLOBAL + term_listener("v12", p12, ["a-ec.pem"])
                    + term_listener("v13", p13, ["a-ec.pem"], extra="tls_min_version = 1.3")
                    + backend("app", [("e", b.port)]))
    # TLS 1.1, offered by a client that allows it: ferryd says no.
    old = client_ctx(minv=ssl.TLSVersion.TLSv1_1, maxv=ssl.TLSVersion.TLSv1_1,
                     ciphers="DEFAULT@SECLEVEL=0")
    try:
        tls_connect(p12, "a.test", old).close()
        raise AssertionError("TLS 1.1 accepted")
    except ssl.SSLError as e:
        assert "PROTOCOL_VERSION" in str(e).upper() or "VERSION" in str(e).upper(), e
    rc, out = s_client(p12, "-servername", "a.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0 and "protocol version" in out, out
    wait_for(lambda: f.listener("v12")["handshake_errors"] == 2, what="two handshake errors")
    wait_for(lambda: "unsupported protocol" in f.logtext(), what="the reason logged")
    # 1.2 and 1.3 on the default listener.
    for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        s = tls_connect(p12, "a.test", client_ctx(minv=v, maxv=v))
        assert s.version() == name
        assert roundtrip(s) == b"ping"
        s.close()
    # tls_min_version = 1.3: 1.2 refused, 1.3 served.
    assert refused(lambda: tls_connect(p13, "a.test", client_ctx(maxv=ssl.TLSVersion.TLSv1_2)))
    s = tls_connect(p13, "a.test")
    assert s.version() == "TLSv1.3" and roundtrip(s) == b"ping"
    s.close()
    rc, out = s_client(p13, "-servername", "a.test", "-tls1_2")
    assert rc != 0, out
    wait_for(lambda: f.listener("v13")["handshake_errors"] == 2, what="1.2 refused twice")
    assert f.listener("v13")["rejected"] == 2
    assert f.listener("v12")["rejected"] == 2


def test_alpn_server_preference():
    b = start_backend("echo")
    port = free_port()
    start_ferry(GLOBAL + term_listener("web", port, ["a-ec.pem"], extra="tls_alpn = h2,http/1.1")
                + backend("app", [("e", b.port)]))
    for offer, want in ((["http/1.1", "h2"], "h2"), (["h2", "http/1.1"], "h2"),
                        (["spdy/3", "http/1.1"], "http/1.1"), (["spdy/3", "h3"], None),
                        (None, None)):
        s = tls_connect(port, "a.test", client_ctx(alpn=offer))
        assert s.selected_alpn_protocol() == want, (offer, s.selected_alpn_protocol())
        assert roundtrip(s) == b"ping"
        s.close()


# ---- termination: client certificates ----

def test_client_certificates():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(GLOBAL + term_listener("mtls", port, ["a-ec.pem"],
                                           extra=f"tls_client_ca = {cert('ca.pem')}")
                    + backend("app", [("e", b.port)]))
    s = tls_connect(port, "a.test", client_ctx(certfile="client.pem"))
    assert roundtrip(s, b"trusted") == b"trusted"
    s.close()

    def attempt(ctx):
        def run():
            s = tls_connect(port, "a.test", ctx)
            try:
                # TLS 1.3: the client's handshake ends before the server has
                # checked its certificate; the refusal arrives as an alert.
                s.sendall(b"x")
                return s.recv(1)
            finally:
                s.close()
        return run

    assert refused(attempt(client_ctx()))
    assert refused(attempt(client_ctx(certfile="client-untrusted.pem")))
    assert refused(attempt(client_ctx(maxv=ssl.TLSVersion.TLSv1_2)))
    assert refused(attempt(client_ctx(maxv=ssl.TLSVersion.TLSv1_2,
                                      certfile="client-untrusted.pem")))
    wait_for(lambda: len(access_ends(f, "mtls")) == 5, what="five access-log lines")
    ends = access_ends(f, "mtls")
    assert ends.count("handshake_failed") == 4 and ends.count("closed") == 1, ends
    st = f.listener("mtls")
    assert st["handshake_errors"] == 4 and st["rejected"] == 4 and st["total"] == 5, st
    assert b.accepted == 1
    for e in f.access_log():
        if e["end"] == "handshake_failed":
            assert e["server"] == "-" and e["bytes_in"] == "0", e
    text = f.logtext()
    assert "peer did not return a certificate" in text or "certificate required" in text, text
    assert "certificate verify failed" in text or "unknown ca" in text, text


# ---- termination: half-close and sessions ----

def test_half_close_through_termination():
    def late_reply(c, _b):
        got = b""
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            got += d
        time.sleep(0.2)
        c.sendall(b"after-eof:" + got)
        c.shutdown(socket.SHUT_WR)

    def early_close(c, _b):
        c.sendall(b"bye")
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            got += d
        with _b.lock:
            _b.heard = got

    b1 = start_backend(late_reply)
    b2 = start_backend(early_close)
    p1, p2 = free_port(), free_port()
    f = start_ferry(GLOBAL + term_listener("late", p1, ["a-ec.pem"], backend="b1")
                    + term_listener("early", p2, ["a-ec.pem"], backend="b2")
                    + backend("b1", [("s", b1.port)]) + backend("b2", [("s", b2.port)]))
    # The client sends close_notify after its data: the server sees EOF and
    # still answers; the client reads the answer, then ferryd's close_notify.
    # The client's Finished, its data and its close_notify go in one TCP
    # write: ferryd must find the data OpenSSL read along with the handshake.
    c = BioClient(client_ctx(minv=ssl.TLSVersion.TLSv1_3), "a.test")
    s = connect(p1)
    s.sendall(c.hello)
    c.finish(s, send_last=False)
    c.obj.write(b"hello")
    try:
        c.obj.unwrap()
    except ssl.SSLWantReadError:
        pass
    s.sendall(c.out.read())
    got = b""
    while True:
        try:
            got += c.obj.read(1 << 16)
        except ssl.SSLWantReadError:
            d = s.recv(1 << 16)
            if not d:
                break
            c.inc.write(d)
        except ssl.SSLZeroReturnError:
            break
    assert got == b"after-eof:hello", got
    s.close()
    # The server shuts its side first: the client reads EOF (close_notify)
    # and still sends; the server hears it.
    s = tls_connect(p2, "a.test")
    assert recv_exact(s, 3) == b"bye"
    assert s.recv(10) == b""
    s.sendall(b"still here")
    s.close()
    wait_for(lambda: getattr(b2, "heard", None) is not None, what="server heard the client")
    assert b2.heard == b"still here", b2.heard
    wait_for(lambda: len(f.access_log()) == 2, what="two access-log lines")
    assert [e["end"] for e in f.access_log()] == ["closed", "closed"], f.access_log()


def test_session_resumption_stays_on_its_listener():
    b = start_backend("echo")
    p1, p2 = free_port(), free_port()
    start_ferry(GLOBAL + term_listener("one", p1, ["a-ec.pem"])
                + term_listener("two", p2, ["a-ec.pem"])
                + backend("app", [("e", b.port)]))
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(maxv=v)
        s = tls_connect(p1, "a.test", ctx)
        assert roundtrip(s) == b"ping"  # TLS 1.3 tickets come after the handshake
        sess = s.session
        s.close()
        assert sess is not None and sess.has_ticket, v
        raw = socket.create_connection(("127.0.0.1", p1), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="a.test", session=sess)
        assert s.session_reused, v
        assert roundtrip(s) == b"ping"
        s.close()
        raw = socket.create_connection(("127.0.0.1", p2), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="a.test", session=sess)
        assert not s.session_reused, v
        assert roundtrip(s) == b"ping"
        s.close()


# ---- origination ----

def test_origination_verifies_the_server():
    names = []
    origin = start_tls_backend("a-ec.pem", echo, names)
    ports = {k: free_port() for k in ("ok", "ip", "noverify", "badname", "noca")}
    ca = f"tls_ca = {cert('ca.pem')}"
    conf = GLOBAL
    for k, extra in (("ok", f"tls = on\n{ca}\ntls_sni = a.test"),
                     ("ip", f"tls = on\n{ca}"),
                     ("noverify", "tls = on\ntls_verify = off"),
                     ("badname", f"tls = on\n{ca}\ntls_sni = wrong.test"),
                     ("noca", "tls = on\ntls_sni = a.test")):
        conf += f"\n[listener {k}]\nbind = 127.0.0.1:{ports[k]}\nbackend = {k}\n"
        conf += backend(k, [("o", origin.port)], extra + "\nretries = 0")
    f = start_ferry(conf)

    for k in ("ok", "ip", "noverify"):
        s = connect(ports[k])
        s.sendall(k.encode())
        assert recv_exact(s, len(k)) == k.encode(), k
        s.close()
    # SNI as configured; none for an address (RFC 6066).
    wait_for(lambda: len(names) == 3, what="three origin handshakes")
    assert names[0] == "a.test" and names[1] is None, names

    for k, why in (("badname", "hostname mismatch"),
                   ("noca", "unable to get local issuer certificate")):
        s = connect(ports[k])
        s.sendall(b"hello")
        assert closed_by_peer(s), k
        s.close()
        wait_for(lambda: f.server(k, "o")["connect_errors"] == 1, what=f"{k}: connect error")
        wait_for(lambda: access_ends(f, k) == ["connect_failed"], what=f"{k}: access log")
        lines = [l for l in f.logtext().splitlines() if "msg=connect_failed" in l and f"{k}/o" in l]
        assert lines and "certificate verify failed" in lines[0] and why in lines[0], lines
    for k in ("ok", "ip", "noverify"):
        assert f.server(k, "o")["connect_errors"] == 0
        wait_for(lambda: access_ends(f, k) == ["closed"], what=f"{k}: access log")


def test_termination_and_origination_together():
    # TLS in, TLS out: 16 MiB to a TLS server and its digest back.
    origin = start_tls_backend("b-ec.pem", len_sink)
    port = free_port()
    f = start_ferry(GLOBAL + term_listener("web", port, ["a-ec.pem"], backend="o")
                    + backend("o", [("s", origin.port)],
                              f"tls = on\ntls_ca = {cert('ca.pem')}\ntls_sni = b.test"))
    data = os.urandom(16 * MiB)
    s = tls_connect(port, "a.test", client_ctx(verify=True), timeout=60)
    send_len_prefixed(s, data)
    n, digest = read_line(s).split()
    assert int(n) == len(data) and digest == hashlib.sha256(data).hexdigest()
    s.close()
    wait_for(lambda: f.server("o", "s")["bytes_out"] == len(data) + 8, what="server bytes")


def proxy_then_tls_echo(heard):
    """A TLS echo server behind a PROXY v1 line (recorded in heard)."""
    ctx = server_ctx("a-ec.pem")

    def run(c, b):
        c.settimeout(30)
        line = b""
        while not line.endswith(b"\r\n"):
            ch = c.recv(1)
            if not ch:
                return
            line += ch
        heard.append(line)
        s = ctx.wrap_socket(c, server_side=True)
        try:
            echo(s, b)
        finally:
            s.close()
    return run


def test_connect_timeout_spans_the_server_handshake():
    """connect_timeout bounds the whole attempt, PROXY header and TLS
    handshake included: a server that accepts TCP but never answers the
    ClientHello fails the attempt at connect_timeout, and the next server
    serves."""
    for proxy in (False, True):
        seen = []

        def silent_recording(c, _b):
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            seen.append(data)

        heard = []
        silent = start_backend(silent_recording)
        good = start_backend(proxy_then_tls_echo(heard)) if proxy \
            else start_tls_backend("a-ec.pem")
        port = free_port()
        f = start_ferry(GLOBAL + f"\n[listener web]\nbind = 127.0.0.1:{port}\nbackend = o\n"
                        + backend("o", [("silent", silent.port), ("good", good.port)],
                                  f"tls = on\ntls_ca = {cert('ca.pem')}\ntls_sni = a.test\n"
                                  "connect_timeout = 300ms\nretries = 1\n"
                                  + ("send_proxy = v1\n" if proxy else "")))
        for _ in range(4):  # two workers, round robin: silent is tried at least once
            s = connect(port)  # plain in, TLS out: the echo comes back decrypted
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
            s.close()
        assert f.server("o", "silent")["connect_errors"] >= 1
        wait_for(lambda: any(e.get("server") == "o/silent" and e.get("error") == "connect timeout"
                             for e in f.events("connect_failed")), what="connect timeout logged")
        assert f.server("o", "good")["total"] == 4
        # What silent got before the attempt gave up: the PROXY header when
        # sent, then the ClientHello (a TLS handshake record).
        wait_for(lambda: seen, what="silent's connection closed")
        hello = seen[0]
        if proxy:
            assert hello.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), hello[:60]
            assert len(heard) == 4, heard
            hello = hello[hello.index(b"\r\n") + 2:]
        assert hello[:1] == b"\x16", hello[:16]
        f.stop()


# ---- health checks ----

def test_health_check_tls():
    plain = start_backend("echo")
    good = start_tls_backend("a-ec.pem")
    later_port = free_port()
    later = start_backend("echo", port=later_port)
    untrusted = start_tls_backend("server-untrusted.pem")
    port = free_port()
    hc = "health_check = tls\nhealth_interval = 200ms\nhealth_timeout = 2s\n" \
         "health_rise = 1\nhealth_fall = 1"
    f = start_ferry(GLOBAL + f"\n[listener web]\nbind = 127.0.0.1:{port}\nbackend = hc\n"
                    + backend("hc", [("plain", plain.port), ("good", good.port),
                                     ("later", later_port)], hc)
                    + backend("verified", [("untrusted", untrusted.port), ("good", good.port)],
                              hc + f"\ntls = on\ntls_ca = {cert('ca.pem')}\ntls_sni = a.test"))
    wait_for(lambda: f.server("hc", "plain")["state"] == "down", what="plain server down")
    wait_for(lambda: f.server("hc", "later")["state"] == "down", what="later down")
    wait_for(lambda: f.server("verified", "untrusted")["state"] == "down",
             what="unverifiable server down")
    time.sleep(0.6)  # several more rounds
    assert f.server("hc", "good")["state"] == "up"
    assert f.server("verified", "good")["state"] == "up"
    wait_for(lambda: "msg=server_down" in f.logtext(), what="server_down logged")
    # A TLS server takes over the port: marked up.
    later.close()
    start_tls_backend("b-ec.pem", port=later_port)
    wait_for(lambda: f.server("hc", "later")["state"] == "up", what="later up")
    # Only up servers get traffic (TLS ones here: the client speaks TLS through).
    for _ in range(4):
        s = tls_connect(port, "a.test")
        assert peer_der(s) in (der("a-ec.pem"), der("b-ec.pem"))
        s.close()
    assert f.server("hc", "plain")["total"] == 0


def test_health_timeout_spans_connect_and_handshake():
    """A check's health_timeout bounds all of it: a connect that hangs, and a
    server that accepts but never answers the ClientHello, are both marked
    down with check "timeout"; a TLS server next to them stays up."""
    stuck = start_stuck_listener()
    silent = start_backend(mute)
    good = start_tls_backend("a-ec.pem")
    port = free_port()
    hc = "health_check = tls\nhealth_interval = 200ms\nhealth_timeout = 300ms\n" \
         "health_rise = 1\nhealth_fall = 1"
    f = start_ferry(GLOBAL + f"\n[listener web]\nbind = 127.0.0.1:{port}\nbackend = hc\n"
                    + backend("hc", [("stuck", stuck), ("silent", silent.port),
                                     ("good", good.port)], hc))
    for name in ("stuck", "silent"):
        wait_for(lambda: f.server("hc", name)["check"] == "timeout", timeout=5,
                 what=f"{name}: timeout")
        assert f.server("hc", name)["state"] == "down"
    wait_for(lambda: f.server("hc", "good")["check"] == "ok", timeout=5, what="good: ok")
    assert f.server("hc", "good")["state"] == "up"
    # Every timed-out check closed its connection: none piles up.
    wait_for(lambda: silent.accepted >= 3, timeout=5, what="three checks of silent")
    with silent.lock:
        open_conns = sum(1 for c in silent.conns if c.fileno() != -1)
    assert open_conns <= 2, open_conns


def http_status(code):
    """Reads an HTTP request over the TLS socket and answers `code`."""
    def run(s, _b):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return
            data += chunk
        s.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code)
    return run


def test_health_checks_over_tls_send_sni():
    names_ok, names_bad, names_tls = [], [], []
    ok = start_tls_backend("a-ec.pem", http_status(200), names=names_ok)
    bad = start_tls_backend("a-ec.pem", http_status(500), names=names_bad)
    plain_tls = start_tls_backend("a-ec.pem", echo, names=names_tls)
    port = free_port()
    hc = "health_interval = 200ms\nhealth_timeout = 2s\nhealth_rise = 1\nhealth_fall = 1"
    f = start_ferry(GLOBAL + f"\n[listener web]\nbind = 127.0.0.1:{port}\nbackend = web\n"
                    + backend("web", [("ok", ok.port), ("bad", bad.port)],
                              hc + f"\nhealth_check = http\ntls = on\ntls_ca = {cert('ca.pem')}"
                              "\ntls_sni = a.test")
                    + backend("t", [("s", plain_tls.port)],
                              hc + f"\nhealth_check = tls\ntls = on\ntls_ca = {cert('ca.pem')}"
                              "\ntls_sni = a.test"))
    wait_for(lambda: f.server("web", "bad")["check"] == "status 500", what="bad: status 500")
    wait_for(lambda: f.server("web", "ok")["check"] == "ok", what="ok: ok")
    wait_for(lambda: f.server("t", "s")["check"] == "ok", what="tls check ok")
    assert f.server("web", "bad")["state"] == "down"
    assert f.server("web", "ok")["state"] == "up"
    # The checks sent tls_sni.
    assert names_ok and set(names_ok) == {"a.test"}, names_ok
    assert names_tls and set(names_tls) == {"a.test"}, names_tls


def test_health_checks_present_the_client_certificate():
    def mtls_server(cns):
        ctx = server_ctx("a-ec.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cert("ca.pem"))

        def inner(s, _b):
            cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            cns.append(cn)
            s.sendall(b"CN=%s\n" % cn.encode())
            while s.recv(4096):
                pass
        return start_backend(tls_mode(ctx, inner))
    cns_tls, cns_se = [], []
    srv_tls, srv_se = mtls_server(cns_tls), mtls_server(cns_se)
    port = free_port()
    hc = "health_interval = 200ms\nhealth_timeout = 2s\nhealth_rise = 1\nhealth_fall = 1\n"
    client = f"tls_cert = {cert('client.crt')} {cert('client.key')}\ntls_sni = a.test\n"
    f = start_ferry(GLOBAL + f"\n[listener web]\nbind = 127.0.0.1:{port}\nbackend = t\n"
                    + backend("t", [("s", srv_tls.port)], hc + client + "health_check = tls")
                    + backend("se", [("s", srv_se.port)],
                              hc + client + f"tls = on\ntls_ca = {cert('ca.pem')}\n"
                              "health_check = send-expect\nhealth_expect = CN=client\\n"))
    wait_for(lambda: f.server("se", "s")["check"] == "ok", what="send-expect over mTLS ok")
    wait_for(lambda: cns_tls, what="tls check's client certificate")
    assert set(cns_tls) == {"client"} and set(cns_se) == {"client"}, (cns_tls, cns_se)
    wait_for(lambda: f.server("t", "s")["check"] == "ok", what="tls check ok")


# ---- passthrough (SNI routing without termination) ----

def passthrough_setup(extra=""):
    certs = {"ba": "a-ec.pem", "bb": "b-rsa.pem", "bw": "w-ec.pem", "bdef": "cn-ec.pem"}
    bs = {k: start_tls_backend(c) for k, c in certs.items()}
    port = free_port()
    conf = GLOBAL + f"""
[listener pass]
bind = 127.0.0.1:{port}
backend = bdef
route = a.test ba
route = b.test bb
route = *.w.test bw
{extra}
"""
    for k, b in bs.items():
        conf += backend(k, [("s", b.port)])
    f = start_ferry(conf)
    return f, port, bs, certs


def test_passthrough_routes_by_sni():
    f, port, bs, certs = passthrough_setup()
    cases = (("a.test", "ba"), ("b.test", "bb"), ("x.w.test", "bw"), ("A.Test", "ba"),
             ("unknown.test", "bdef"), ("y.x.w.test", "bdef"), (None, "bdef"))
    for sni, bk in cases:
        s = tls_connect(port, sni)
        # The backend's own certificate: ferryd did not terminate.
        assert peer_der(s) == der(certs[bk]), (sni, bk)
        assert roundtrip(s, b"via " + bk.encode()) == b"via " + bk.encode()
        s.close()
    wait_for(lambda: len(access_ends(f, "pass")) == len(cases), what="access log")
    servers = [e["server"] for e in f.access_log()]
    assert servers == [f"{bk}/s" for _, bk in cases], servers
    assert f.listener("pass")["rejected"] == 0
    assert f.listener("pass")["tls"] is False


def test_passthrough_rejects_what_is_not_a_hello():
    f, port, bs, _ = passthrough_setup("handshake_timeout = 5s")
    hello = BioClient(client_ctx(), "a.test").hello
    bad_type = bytearray(hello)
    bad_type[5] = 2  # a ServerHello
    bad_len = bytearray(hello)
    bad_len[3:5] = b"\xff\xff"  # a record longer than any hello
    samples = (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", bytes(bad_type), bytes(bad_len),
               hello[:40], b"\x16\x03\x01", os.urandom(64) + hello)
    for data in samples:
        s = connect(port)
        s.sendall(data)
        if data in (hello[:40], b"\x16\x03\x01"):
            s.shutdown(socket.SHUT_WR)  # truncated: the client stops there
        t0 = time.monotonic()
        assert closed_by_peer(s), data[:16]
        assert time.monotonic() - t0 < 4, "closed by the timeout, not at once"
        s.close()
    wait_for(lambda: f.listener("pass")["rejected"] == len(samples), what="all rejected")
    wait_for(lambda: access_ends(f, "pass") == ["rejected"] * len(samples), what="access log")
    assert all(b.accepted == 0 for b in bs.values())
    # And still serving.
    s = tls_connect(port, "a.test")
    assert roundtrip(s) == b"ping"
    s.close()


def test_passthrough_hello_in_pieces():
    f, port, _, certs = passthrough_setup()
    # Byte by byte.
    c = BioClient(client_ctx(), "b.test")
    s = connect(port)
    send_slowly(s, c.hello, 1, 0.001)
    c.finish(s)
    assert c.peer_der() == der(certs["bb"])
    assert c.roundtrip(s, b"split") == b"split"
    s.close()
    # A large hello (a long ALPN list), cut into many TLS records sent in
    # uneven TCP writes.
    alpn = [f"proto-{i:03d}-" + "x" * 90 for i in range(100)]
    c = BioClient(client_ctx(alpn=alpn), "x.w.test")
    assert len(c.hello) > 9000, len(c.hello)
    s = connect(port)
    send_slowly(s, refragment(c.hello, 700), 1000, 0.005)
    c.finish(s)
    assert c.peer_der() == der(certs["bw"])
    assert c.roundtrip(s, b"big") == b"big"
    s.close()
    # The same hello in one record, through Python's own socket.
    s = tls_connect(port, "b.test", client_ctx(alpn=alpn))
    assert peer_der(s) == der(certs["bb"]) and roundtrip(s) == b"ping"
    s.close()
    # Past the largest hello ferryd reassembles (16 KiB): refused.
    huge = [f"proto-{i:03d}-" + "y" * 240 for i in range(80)]
    assert refused(lambda: tls_connect(port, "a.test", client_ctx(alpn=huge)))
    wait_for(lambda: f.listener("pass")["rejected"] == 1, what="huge hello rejected")
    assert f.listener("pass")["total"] == 4


def test_passthrough_after_proxy_header():
    f, port, _, certs = passthrough_setup("accept_proxy = on")
    c = BioClient(client_ctx(), "b.test")
    s = connect(port)
    s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n" + c.hello)
    c.finish(s)
    assert c.peer_der() == der(certs["bb"])
    assert c.roundtrip(s, b"proxied") == b"proxied"
    s.close()
    wait_for(lambda: len(f.access_log()) == 1, what="access log")
    e = f.access_log()[0]
    assert e["client"] == "192.0.2.7:40000" and e["server"] == "bb/s", e


def test_origination_after_proxy_header():
    # send_proxy: the PROXY header goes out in the clear, then TLS.
    heard = []
    origin = start_backend(proxy_then_tls_echo(heard))
    port = free_port()
    start_ferry(GLOBAL + f"\n[listener web]\nbind = 127.0.0.1:{port}\nbackend = o\n"
                + backend("o", [("s", origin.port)],
                          f"send_proxy = v1\ntls = on\ntls_ca = {cert('ca.pem')}\n"
                          "tls_sni = a.test"))
    s = connect(port)
    assert roundtrip(s, b"over tls") == b"over tls"
    s.close()
    assert heard and heard[0].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), heard


# ---- routing on a terminating listener ----

def test_route_by_terminated_sni():
    ba = start_backend("label", label=b"A")
    bb = start_backend("label", label=b"B")
    bw = start_backend("label", label=b"W")
    port = free_port()
    f = start_ferry(GLOBAL + term_listener("web", port, ["a-ec.pem", "b-ec.pem", "w-ec.pem"],
                                           backend="ba",
                                           extra="route = b.test bb\nroute = *.w.test bw")
                    + backend("ba", [("s", ba.port)]) + backend("bb", [("s", bb.port)])
                    + backend("bw", [("s", bw.port)]))
    for sni, label, crt in (("b.test", b"B", "b-ec.pem"), ("x.w.test", b"W", "w-ec.pem"),
                            ("a.test", b"A", "a-ec.pem"), ("other.test", b"A", "a-ec.pem"),
                            (None, b"A", "a-ec.pem")):
        s = tls_connect(port, sni)
        assert peer_der(s) == der(crt), sni
        assert recv_exact(s, 1) == label, sni
        assert roundtrip(s) == b"ping"
        s.close()
    assert f.server("bb", "s")["total"] == 1 and f.server("bw", "s")["total"] == 1
    assert f.server("ba", "s")["total"] == 3


# ---- bulk data ----

def test_64mib_through_termination():
    b = start_backend(len_sink)
    port = free_port()
    f = start_ferry(GLOBAL + term_listener("web", port, ["a-ec.pem"])
                    + backend("app", [("e", b.port)]))
    data = os.urandom(64 * MiB)
    s = tls_connect(port, "a.test", timeout=120)
    send_len_prefixed(s, data)
    n, digest = read_line(s).split()
    assert int(n) == len(data) and digest == hashlib.sha256(data).hexdigest()
    s.close()
    wait_for(lambda: f.listener("web")["bytes_in"] == len(data) + 8, what="plaintext bytes_in")


def test_64mib_through_passthrough():
    data = os.urandom(64 * MiB)
    src = start_tls_backend("b-rsa.pem", len_source(data))
    port = free_port()
    f = start_ferry(GLOBAL + f"""
[listener pass]
bind = 127.0.0.1:{port}
route = b.test src
[backend src]
server s 127.0.0.1:{src.port}
""")
    s = tls_connect(port, "b.test", client_ctx(verify=True), timeout=120)
    n, digest = read_len_prefixed(s)
    assert n == len(data) and digest == hashlib.sha256(data).hexdigest()
    s.close()
    # Encrypted bytes passed through: more than the plaintext.
    wait_for(lambda: f.listener("pass")["active"] == 0, what="connection ended")
    assert f.listener("pass")["bytes_out"] > len(data)


# ---- handshake timeout ----

def test_handshake_timeout():
    b = start_backend("echo")
    tport, pport = free_port(), free_port()
    f = start_ferry(GLOBAL + term_listener("term", tport, ["a-ec.pem"],
                                           extra="handshake_timeout = 1s")
                    + f"\n[listener pass]\nbind = 127.0.0.1:{pport}\nbackend = app\n"
                      "route = a.test app\nhandshake_timeout = 1s\n"
                    + backend("app", [("e", b.port)]))
    partial = BioClient(client_ctx(), "a.test").hello[:30]
    for port, first in ((tport, b""), (tport, partial), (pport, b""), (pport, partial)):
        s = connect(port)
        if first:
            s.sendall(first)
        t0 = time.monotonic()
        assert closed_by_peer(s)
        took = time.monotonic() - t0
        assert 0.6 < took < 4, took
        s.close()
    wait_for(lambda: len(f.access_log()) == 4, what="four access-log lines")
    assert access_ends(f, "term") == ["handshake_failed"] * 2
    assert access_ends(f, "pass") == ["rejected"] * 2
    t = f.listener("term")
    assert t["handshake_errors"] == 2 and t["rejected"] == 2 and t["active"] == 0, t
    assert f.listener("pass")["rejected"] == 2
    reasons = {e["listener"]: e.get("reason") for e in f.access_log()}
    assert reasons == {"term": "timeout", "pass": "bad_hello"}, reasons
    assert b.accepted == 0


def test_stop_with_connections_in_every_tls_phase():
    # Mid-handshake, mid-ClientHello and established TLS connections when the
    # daemon stops: it exits 0 after drain_timeout, and (under the
    # sanitizers) frees everything.
    b = start_backend("echo")
    tport, pport = free_port(), free_port()
    f = start_ferry(GLOBAL.replace("log_level", "drain_timeout = 1s\nlog_level")
                    + term_listener("term", tport, ["a-ec.pem"], extra="handshake_timeout = 60s")
                    + f"\n[listener pass]\nbind = 127.0.0.1:{pport}\nbackend = app\n"
                      "route = a.test app\nhandshake_timeout = 60s\n"
                    + backend("app", [("e", b.port)]))
    hello = BioClient(client_ctx(), "a.test").hello
    silent = connect(tport)
    half_tls = connect(tport)
    half_tls.sendall(hello[:50])
    half_hello = connect(pport)
    half_hello.sendall(hello[:50])
    up = tls_connect(tport, "a.test")
    assert roundtrip(up) == b"ping"
    wait_for(lambda: f.listener("term")["active"] == 3 and f.listener("pass")["active"] == 1,
             what="four connections held")
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    # Cut at drain_timeout (1 s), handshaking ones included, not later.
    for s in (silent, half_tls, half_hello, up):
        assert closed_by_peer(s)
        took = time.monotonic() - t0
        assert 0.7 < took < 2.3, took
        s.close()
    assert f.proc.wait(10) == 0
    ends = [e["end"] for e in f.access_log()]
    assert ends == ["drained"] * 4, ends


# ---- many clients ----

def test_1000_concurrent_tls_clients():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(GLOBAL + term_listener("web", port, ["a-ec.pem"])
                    + backend("app", [("e", b.port)]))
    n = 1000
    ctx = client_ctx()
    socks = [None] * n

    def open_one(i):
        s = tls_connect(port, "a.test", ctx, timeout=60)
        msg = f"hello {i}".encode()
        assert roundtrip(s, msg) == msg
        socks[i] = s

    def again(i):
        msg = f"again {i} ".encode() * 10
        assert roundtrip(socks[i], msg) == msg
        socks[i].close()

    try:
        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            list(ex.map(open_one, range(n)))
            # All held at once.
            wait_for(lambda: f.listener("web")["active"] == n, timeout=20, what="all active")
            list(ex.map(again, range(n)))
    finally:
        for s in socks:
            if s is not None:
                s.close()
    wait_for(lambda: f.listener("web")["active"] == 0, timeout=30, what="all closed")
    st = f.listener("web")
    assert st["total"] == n and st["handshake_errors"] == 0 and st["rejected"] == 0, st


# ---- reload ----

def write_file(path, src):
    with open(src, "rb") as fh:
        content = fh.read()
    with open(path + ".tmp", "wb") as fh:
        fh.write(content)
    os.replace(path + ".tmp", path)


def test_reload_rereads_certificates():
    b = start_backend("echo")
    port = free_port()
    live = os.path.join(CERTS, "live.pem")
    write_file(live, cert("a-ec.pem"))
    conf = GLOBAL + f"""
[listener web]
bind = 127.0.0.1:{port}
backend = app
tls = on
tls_cert = {live}
""" + backend("app", [("e", b.port)])
    line = conf.splitlines().index(f"tls_cert = {live}") + 1
    f = start_ferry(conf)
    held = tls_connect(port, "a.test")
    assert peer_der(held) == der("a-ec.pem") and roundtrip(held, b"one") == b"one"

    write_file(live, cert("a-rsa.pem"))
    assert f.ctl("reload").strip() == "ok"
    s = tls_connect(port, "a.test", client_ctx(verify=True))
    assert peer_der(s) == der("a-rsa.pem")
    s.close()
    assert roundtrip(held, b"two") == b"two"

    # A broken certificate: the whole reload fails, the old one serves on.
    for broken, what in (("empty.pem", "no certificate"), ("mismatch.pem", "does not match")):
        write_file(live, cert(broken))
        r = subprocess.run([os.environ.get("FERRYCTL", "build/daemon/ferryctl"), "-s",
                            f.sock_path, "reload"], capture_output=True, timeout=30)
        out = r.stdout.decode()
        assert r.returncode == 1, (r.returncode, out)
        assert out.startswith(f"error: {f.path}:{line}: ") and what in out, out
        s = tls_connect(port, "a.test")
        assert peer_der(s) == der("a-rsa.pem")
        s.close()

    # SIGHUP works the same way.
    write_file(live, cert("a-ec.pem"))
    f.signal(signal.SIGHUP)
    wait_for(lambda: f.ctl("info", json_out=True)["reloads"] == 2, what="SIGHUP reload")
    s = tls_connect(port, "a.test")
    assert peer_der(s) == der("a-ec.pem")
    s.close()
    assert roundtrip(held, b"three") == b"three"
    held.close()


# ---- ferryd -t ----

def test_check_mode_reports_certificate_errors():
    d = tempfile.mkdtemp(prefix="ferry-tls-t-")
    path = os.path.join(d, "ferry.ini")
    missing = os.path.join(d, "missing.pem")
    conf = "[global]\ncontrol_socket =\n"
    bad = [("missing", missing, "cannot read tls_cert"),
           ("mismatch", cert("mismatch.pem"), "does not match"),
           ("nokey", cert("nokey.pem"), "private key"),
           ("empty", cert("empty.pem"), "no certificate")]
    want = {}
    for name, pem, msg in bad:
        conf += f"[listener {name}]\nbind = 127.0.0.1:{free_port()}\nbackend = app\ntls = on\n"
        conf += f"tls_cert = {cert('a-ec.pem')}\n"
        want[conf.count("\n") + 1] = (pem, msg)
        conf += f"tls_cert = {pem}\n"
    conf += "[backend app]\nserver s 127.0.0.1:9\n"
    with open(path, "w") as fh:
        fh.write(conf)
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=30)
    lines = r.stderr.decode().strip().splitlines()  # errors go to stderr
    assert r.returncode == 1, r
    assert len(lines) == len(bad), lines
    for l, (ln, (pem, msg)) in zip(lines, sorted(want.items())):
        assert l.startswith(f"{path}:{ln}: ") and msg in l and pem in l, (l, ln, msg)
    # The same with good files is valid.
    with open(path, "w") as fh:
        fh.write(conf.replace(missing, cert("b-ec.pem")).replace(cert("mismatch.pem"),
                 cert("b-rsa.pem")).replace(cert("nokey.pem"), cert("w-ec.pem"))
                 .replace(cert("empty.pem"), cert("cn-ec.pem")))
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.decode().strip() == f"{path}: configuration is valid", r
    shutil.rmtree(d, True)


if __name__ == "__main__":
    runner.run(globals())
