#!/usr/bin/env python3
"""tls_watch (ferry.ini(5)): certificate rotation picked up without a signal,
within 5 s, by reading the TLS files again and nothing else (no reload:
`reloads` stays, ferry_tls_reloads_total counts, servers added and weights
set at runtime stay): a file replaced by rename, written in place, a
Kubernetes secret-volume layout whose `..data` link is swapped to a new
timestamped directory (twice), a broken file (msg=tls_reload_failed, the
running certificate stays), and tls_watch = off. A connection open across
the rotations is never cut."""
import atexit
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

from ferrytest import (free_port, recv_exact, runner, start_backend, start_ferry, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = tempfile.mkdtemp(prefix="ferry-watch-certs-")
atexit.register(shutil.rmtree, CERTS, True)
subprocess.run(["sh", os.path.join(HERE, "..", "fixtures", "gen-certs.sh"), CERTS], check=True,
               timeout=120)
WITHIN = 5.0  # ferry.ini(5) tls_watch: a change is picked up within 5 s


def read(name):
    with open(os.path.join(CERTS, name), "rb") as fh:
        return fh.read()


def der(name):
    pem = read(name).decode()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(pem[:pem.index(end) + len(end)] + "\n")


def served(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="a.test") as s:
            cert = s.getpeercert(binary_form=True)
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x"
            return cert


def replace(path, data):
    """Atomic replacement by rename, as most tools do."""
    with open(path + ".tmp", "wb") as fh:
        fh.write(data)
    os.replace(path + ".tmp", path)


def start(tls_cert_line, extra=""):
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
{extra}
[listener web]
bind = 127.0.0.1:{port}
tls = on
tls_cert = {tls_cert_line}
backend = app
[backend app]
server s 127.0.0.1:{b.port}
""")
    f.port = port
    return f


def info(f):
    return f.ctl("info", json_out=True)


def held_connection(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="a.test")
    s.sendall(b"held")
    assert recv_exact(s, 4) == b"held"
    return s


def tls_reloads(f):
    m = re.search(r"^ferry_tls_reloads_total (\d+)$", f.ctl("metrics"), re.M)
    return int(m.group(1))


def picked_up(f, port, want, reloads):
    """Waits until the served certificate is `want` and `reloads` TLS
    re-reads were counted (no reload); returns the seconds it took."""
    t0 = time.monotonic()
    wait_for(lambda: served(port) == want, timeout=WITHIN + 5, what="the new certificate")
    took = time.monotonic() - t0
    wait_for(lambda: tls_reloads(f) == reloads, what=f"{reloads} TLS re-reads")
    assert info(f)["reloads"] == 0, "tls_watch must not reload"
    return took


def test_rename_and_write_in_place():
    d = tempfile.mkdtemp(prefix="ferry-watch-")
    cert = os.path.join(d, "cert.pem")
    replace(cert, read("a-ec.pem"))
    f = start(cert)
    assert served(f.port) == der("a-ec.pem")
    held = held_connection(f.port)
    replace(cert, read("a-rsa.pem"))
    took = picked_up(f, f.port, der("a-rsa.pem"), 1)
    assert took < WITHIN + 1, took
    # Written in place (truncated and rewritten, as `cp` does).
    with open(cert, "wb") as fh:
        fh.write(read("a-ec.pem"))
    picked_up(f, f.port, der("a-ec.pem"), 2)
    wait_for(lambda: len(re.findall(r"tls_file_changed.*file=" + re.escape(cert),
                                    f.logtext())) >= 2, what="two tls_file_changed lines")
    wait_for(lambda: len(re.findall(r"msg=tls_reloaded.*file=" + re.escape(cert),
                                    f.logtext())) >= 2, what="two tls_reloaded lines")
    assert info(f)["reloads_failed"] == 0
    held.sendall(b"still")
    assert recv_exact(held, 5) == b"still"
    held.close()
    shutil.rmtree(d, True)


def secret_volume(d, stamp, crt, key):
    """Kubernetes' atomic writer: files in a timestamped directory, `..data`
    pointing at it, and the visible names pointing through `..data`."""
    ts = os.path.join(d, "..2026_" + stamp)
    os.mkdir(ts)
    shutil.copy(os.path.join(CERTS, crt), os.path.join(ts, "tls.crt"))
    shutil.copy(os.path.join(CERTS, key), os.path.join(ts, "tls.key"))
    old = os.readlink(os.path.join(d, "..data")) if os.path.islink(os.path.join(d, "..data")) else None
    os.symlink("..2026_" + stamp, os.path.join(d, "..data_tmp"))
    os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
    for name in ("tls.crt", "tls.key"):
        if not os.path.islink(os.path.join(d, name)):
            os.symlink(os.path.join("..data", name), os.path.join(d, name))
    if old:
        shutil.rmtree(os.path.join(d, old))


def test_secret_volume_symlink_swap():
    d = tempfile.mkdtemp(prefix="ferry-watch-secret-")
    secret_volume(d, "01_01", "a-ec.crt", "a-ec.key")
    f = start(f"{d}/tls.crt {d}/tls.key")
    assert served(f.port) == der("a-ec.pem")
    held = held_connection(f.port)
    secret_volume(d, "02_02", "a-rsa.crt", "a-rsa.key")
    picked_up(f, f.port, der("a-rsa.pem"), 1)
    # Again: the watches followed the link to the new directory.
    secret_volume(d, "03_03", "a-ec.crt", "a-ec.key")
    picked_up(f, f.port, der("a-ec.pem"), 2)
    held.sendall(b"still")
    assert recv_exact(held, 5) == b"still"
    held.close()
    assert info(f)["reloads_failed"] == 0
    shutil.rmtree(d, True)


def test_broken_file_keeps_the_running_certificate():
    d = tempfile.mkdtemp(prefix="ferry-watch-broken-")
    cert = os.path.join(d, "cert.pem")
    replace(cert, read("a-ec.pem"))
    f = start(cert)
    replace(cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    wait_for(lambda: re.search(r"level=error msg=tls_reload_failed .*" + re.escape(cert),
                               f.logtext()), timeout=WITHIN + 5, what="the tls_reload_failed line")
    assert served(f.port) == der("a-ec.pem")
    assert info(f)["reloads"] == 0 and info(f)["reloads_failed"] == 0
    assert tls_reloads(f) == 0
    # Fixed: picked up again.
    replace(cert, read("a-rsa.pem"))
    picked_up(f, f.port, der("a-rsa.pem"), 1)
    shutil.rmtree(d, True)


def test_runtime_changes_survive_a_rotation():
    """The defect tls_watch had as a reload: a server added and a weight set
    at runtime were gone after a certificate renewal."""
    d = tempfile.mkdtemp(prefix="ferry-watch-rt-")
    cert = os.path.join(d, "cert.pem")
    replace(cert, read("a-ec.pem"))
    f = start(cert)
    spare = start_backend("echo")
    f.ctl("add", "app", "extra", f"127.0.0.1:{spare.port}", "weight=2")
    f.ctl("set", "app/s", "weight", "5")
    replace(cert, read("a-rsa.pem"))
    picked_up(f, f.port, der("a-rsa.pem"), 1)
    servers = {s["name"]: s for s in f.stats()["backends"][0]["servers"]}
    assert servers["extra"]["weight"] == 2, servers
    assert servers["s"]["weight"] == 5, servers
    shutil.rmtree(d, True)


def test_off_watches_nothing():
    d = tempfile.mkdtemp(prefix="ferry-watch-off-")
    cert = os.path.join(d, "cert.pem")
    replace(cert, read("a-ec.pem"))
    f = start(cert, extra="tls_watch = off")
    replace(cert, read("a-rsa.pem"))
    time.sleep(WITHIN)
    assert info(f)["reloads"] == 0 and tls_reloads(f) == 0
    assert served(f.port) == der("a-ec.pem")
    shutil.rmtree(d, True)


if __name__ == "__main__":
    runner.run(globals())
