#!/usr/bin/env python3
"""Certificates (ferry.ini(5)): `tls_cert = CERT KEY` with the key in its own file on
a listener; `tls_cert` on a backend presenting a client certificate to a
Python ssl server that requires one (mutual TLS upstream);
ferry_tls_cert_not_after_seconds and the warning for a certificate that
expires within 14 days (a short-lived certificate made by openssl)."""
import atexit
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

from ferrytest import (FERRYD, free_port, recv_exact, runner, start_ferry, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = tempfile.mkdtemp(prefix="ferry-certs-")
atexit.register(shutil.rmtree, CERTS, True)
subprocess.run(["sh", os.path.join(HERE, "..", "fixtures", "gen-certs.sh"), CERTS], check=True,
               timeout=120)


def cert(name):
    return os.path.join(CERTS, name)


def client_ctx():
    ctx = ssl.create_default_context(cafile=cert("ca.pem"))
    return ctx


def tls_roundtrip(port, sni="a.test", data=b"hello"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx().wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(data)
            return recv_exact(s, len(data))


def check(config_text):
    """ferryd -t on a configuration: (exit status, output)."""
    d = tempfile.mkdtemp(prefix="ferry-certs-t-")
    try:
        path = os.path.join(d, "ferry.ini")
        with open(path, "w") as fh:
            fh.write(config_text)
        r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60)
        return r.returncode, (r.stdout + r.stderr).decode()
    finally:
        shutil.rmtree(d, True)


class TLSServer:
    """A Python ssl server that requires a client certificate signed by ca.pem
    and answers with the subject CN of the one it got, then echoes."""

    def __init__(self):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert("a-ec.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(cert("ca.pem"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            with self.ctx.wrap_socket(c, server_side=True) as s:
                subject = dict(x[0] for x in s.getpeercert()["subject"])
                s.sendall(("CN=%s\n" % subject["commonName"]).encode())
                while True:
                    b = s.recv(65536)
                    if not b:
                        return
                    s.sendall(b)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(repr(e))
            c.close()

    def close(self):
        self.sock.close()


def test_listener_key_in_its_own_file():
    port = free_port()
    start_ferry(f"""
[global]
control_socket = @SOCK@
[listener web]
bind = 127.0.0.1:{port}
tls = on
tls_cert = {cert('a-ec.crt')} {cert('a-ec.key')}
tls_cert = {cert('b-rsa.pem')}
backend = app
[backend app]
server echo 127.0.0.1:{start_echo()}
""")
    assert tls_roundtrip(port, "a.test") == b"hello"
    assert tls_roundtrip(port, "b.test") == b"hello"


def start_echo():
    from ferrytest import start_backend
    return start_backend("echo").port


def test_listener_key_errors():
    base = "[global]\ncontrol_socket =\n[listener web]\nbind = 127.0.0.1:1\ntls = on\n"
    tail = "backend = app\n[backend app]\nserver s 127.0.0.1:2\n"
    rc, out = check(base + f"tls_cert = {cert('a-ec.crt')} {cert('b-ec.key')}\n" + tail)
    assert rc == 1 and re.search(r"ferry\.ini:6: private key .*b-ec\.key does not match", out), out
    rc, out = check(base + f"tls_cert = {cert('a-ec.crt')} {cert('missing.key')}\n" + tail)
    assert rc == 1 and "ferry.ini:6: cannot read the key" in out and "missing.key" in out, out
    rc, out = check(base + f"tls_cert = {cert('a-ec.crt')} {cert('a-ec.crt')}\n" + tail)
    assert rc == 1 and "ferry.ini:6: no usable private key" in out, out
    rc, out = check(base + f"tls_cert = {cert('a-ec.crt')} {cert('a-ec.key')} x\n" + tail)
    assert rc == 1 and "ferry.ini:6: invalid tls_cert" in out, out
    # Relative paths are relative to the configuration file's directory.
    d = tempfile.mkdtemp(prefix="ferry-certs-rel-")
    try:
        shutil.copy(cert("a-ec.crt"), d)
        shutil.copy(cert("a-ec.key"), d)
        path = os.path.join(d, "ferry.ini")
        with open(path, "w") as fh:
            fh.write(base + "tls_cert = a-ec.crt a-ec.key\n" + tail)
        r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60, cwd="/")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        shutil.rmtree(d, True)


def test_backend_client_certificate():
    srv = TLSServer()
    port, port2 = free_port(), free_port()
    start_ferry(f"""
[global]
control_socket = @SOCK@
[listener mtls]
bind = 127.0.0.1:{port}
backend = secure
[listener plain]
bind = 127.0.0.1:{port2}
backend = nocert
[backend secure]
server s1 127.0.0.1:{srv.port}
tls = on
tls_ca = {cert('ca.pem')}
tls_sni = a.test
tls_cert = {cert('client.crt')} {cert('client.key')}
[backend nocert]
server s1 127.0.0.1:{srv.port}
tls = on
tls_ca = {cert('ca.pem')}
tls_sni = a.test
""")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert recv_exact(s, 10) == b"CN=client\n"
        s.sendall(b"through")
        assert recv_exact(s, 7) == b"through"
    # Without a client certificate the server refuses the handshake.
    with socket.create_connection(("127.0.0.1", port2), timeout=10) as s:
        s.settimeout(10)
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b"", got
    wait_for(lambda: srv.errors, what="the server's refusal")
    srv.close()


def short_lived(name, days):
    """A self-signed certificate valid for `days` days, key in the same file."""
    path = os.path.join(CERTS, name)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", str(days), "-subj",
                    "/CN=soon.test", "-keyout", path + ".key", "-out", path + ".crt"],
                   check=True, capture_output=True, timeout=60)
    with open(path, "w") as out:
        for part in (".crt", ".key"):
            with open(path + part) as fh:
                out.write(fh.read())
    return path


def not_after(path):
    info = ssl._ssl._test_decode_cert(path)  # pylint: disable=protected-access
    return int(ssl.cert_time_to_seconds(info["notAfter"]))


def metrics(mport):
    c = http.client.HTTPConnection("127.0.0.1", mport, timeout=10)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    return body


def test_expiry_metric_and_warning():
    soon = short_lived("soon.pem", 3)
    later = cert("a-ec.pem")
    port, mport = free_port(), free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
metrics = 127.0.0.1:{mport}
[listener web]
bind = 127.0.0.1:{port}
tls = on
tls_cert = {later}
tls_cert = {soon}
backend = app
[backend app]
server s 127.0.0.1:{free_port()}
""")
    body = metrics(mport)
    assert "# TYPE ferry_tls_cert_not_after_seconds gauge" in body
    for path in (soon, later):
        line = f'ferry_tls_cert_not_after_seconds{{listener="web",cert="{path}"}} {not_after(path)}'
        assert line in body.splitlines(), (line, body)
    # Only the short-lived one is warned about, naming its file.
    wait_for(lambda: re.search(r"certificate.expires.soon", f.logtext()), what="warning")
    warnings = [l for l in f.logtext().splitlines() if re.search(r"certificate.expires", l)]
    assert len(warnings) == 1, warnings
    assert soon in warnings[0] and "listener=web" in warnings[0], warnings
    assert re.search(r"days_left=[23]\b", warnings[0]), warnings


def test_expiry_warning_for_backend_client_certificate():
    soon = short_lived("soon-client.pem", 5)
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener web]
bind = 127.0.0.1:{free_port()}
backend = up
[backend up]
server s 127.0.0.1:{free_port()}
tls = on
tls_cert = {soon}
""")
    wait_for(lambda: re.search(r"certificate.expires.soon", f.logtext()), what="warning")
    line = [l for l in f.logtext().splitlines() if re.search(r"certificate.expires", l)][0]
    assert "backend=up" in line and soon in line, line


if __name__ == "__main__":
    runner.run(globals())
