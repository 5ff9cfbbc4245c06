"""ACME (tls_acme, [acme NAME]) against a real ACME server: Debian's pebble
on 127.0.0.1, its tls-alpn-01 validation port pointed at ferryd's listener and
its DNS at a dnsmasq that resolves *.acme.test to 127.0.0.1.

Issuance of a two-name certificate chaining to pebble's root (/roots/0 on its
management port), handshakes before issuance (the listener's other
certificate, or end=handshake_failed reason=no_certificate), a restart that
reuses the stored certificate with no new order, renewal without restart
(pebble's certificateValidityPeriod short, renew_before shorter), pebble down
then up (the order retried), nonce rejection and slow validation with a
reload in the middle, and two ferryd sharing storage placing one order."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from ferrytest import (cleanup, free_port, runner, start_backend, start_ferry,  # noqa: E402
                       wait_for)

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
NAMES = ["a.acme.test", "b.acme.test"]


class Dns:
    """dnsmasq on 127.0.0.1:port answering 127.0.0.1 for every *.acme.test."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ferry-acme-dns-")
        self.port = free_port()
        args = [DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
                f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--address=/acme.test/127.0.0.1",
                f"--pid-file={self.dir}/pid"]
        if os.getuid() == 0:
            args.append("--user=root")
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq exited: " + open(os.path.join(self.dir, "log")).read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


class Pebble:
    """pebble with its own TLS certificate (the `ca` ferryd verifies it with)."""

    def __init__(self, tls_port, dns_port, validity_s=None, env=None, port=None, extra=None):
        self.dir = tempfile.mkdtemp(prefix="ferry-pebble-")
        self.port = port or free_port()
        self.mgmt = free_port()
        self.cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", self.cert,
                        "-days", "2", "-subj", "/CN=pebble", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:ca.acme.test"],
                       check=True, capture_output=True)
        conf = {"listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                "certificate": self.cert, "privateKey": key,
                "httpPort": free_port(), "tlsPort": tls_port,
                "ocspResponderURL": "", "externalAccountBindingRequired": False}
        if validity_s:
            conf["certificateValidityPeriod"] = validity_s
        conf.update(extra or {})
        self.config = os.path.join(self.dir, "pebble.json")
        with open(self.config, "w") as f:
            json.dump({"pebble": conf}, f)
        self.dns_port = dns_port
        self.env = dict(os.environ)
        self.env.update(env if env is not None else {"PEBBLE_VA_NOSLEEP": "1"})
        self.proc = None
        self.logs = []

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self):
        log = open(os.path.join(self.dir, f"log{len(self.logs)}"), "wb")
        self.logs.append(log)
        self.proc = subprocess.Popen([PEBBLE, "-config", self.config, "-dnsserver",
                                      f"127.0.0.1:{self.dns_port}"], stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env)
        wait_for(lambda: self.proc.poll() is not None or self._get("/dir", self.port),
                 timeout=20, what="pebble answering")
        if self.proc.poll() is not None:
            raise AssertionError("pebble exited:\n" + self.logtext())
        return self

    def _get(self, path, port):
        ctx = ssl.create_default_context(cafile=self.cert)
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx,
                                        timeout=5) as r:
                return r.read()
        except OSError:
            return None

    def root(self):
        """pebble's root certificate (PEM): what issued certificates chain to."""
        return self._get("/roots/0", self.mgmt).decode()

    def logtext(self):
        out = ""
        for i in range(len(self.logs)):
            with open(os.path.join(self.dir, f"log{i}"), "rb") as f:
                out += f.read().decode(errors="replace")
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def orders_placed(pebble):
    """Orders pebble created (a POST refused for its nonce and sent again is
    one order)."""
    return pebble.logtext().count("Added order")


def start_dns():
    d = Dns()
    cleanup(d.stop)
    return d


def start_pebble(*a, **kw):
    p = Pebble(*a, **kw)
    cleanup(lambda: [p.stop()] + [log.close() for log in p.logs])
    return p.start()


def acme_config(port, backend_port, pebble, storage="@DIR@/acme", listener="", acme="",
                names=NAMES, global_lines="", directory=None):
    return f"""
[global]
control_socket = @SOCK@
{global_lines}
[listener web]
bind = 127.0.0.1:{port}
backend = app
tls = on
tls_acme = peb {' '.join(names)}
{listener}
[acme peb]
directory = {directory or pebble.directory}
ca = {pebble.cert}
email = ops@acme.test
storage = {storage}
{acme}
[backend app]
server s1 127.0.0.1:{backend_port}
"""


def handshake(port, sni, cafile=None):
    """TLS to the listener with SNI: the server's certificate (DER), verified
    against cafile with the name when given; the echo backend answers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile=cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            return der


def subject_names(der):
    """subjectAltName DNS names and serial of a DER certificate (openssl x509)."""
    r = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-serial", "-ext",
                        "subjectAltName"], input=der, capture_output=True, check=True)
    text = r.stdout.decode()
    return sorted(re.findall(r"DNS:([^,\s]+)", text)), re.search(r"serial=(\w+)", text).group(1)


def issued(f, n=1, timeout=60):
    wait_for(lambda: len(f.events("acme_issued")) >= n or f.proc.poll() is not None,
             timeout=timeout, interval=0.1, what=f"{n} acme_issued")
    assert f.proc.poll() is None, f.logtext()[-3000:]
    return f.events("acme_issued")


def show_acme(f):
    return json.loads(f.command(b"show acme json\n"))["acme"]


def metric(f, name, **labels):
    text = f.command(b"show metrics\n")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in:\n{text}")


def test_issue_two_names_then_restart_reuses():
    dns = start_dns()
    port = free_port()
    backend = start_backend()
    pebble = start_pebble(port, dns.port)
    storage = tempfile.mkdtemp(prefix="ferry-acme-store-")
    os.rmdir(storage)  # ferryd creates it, 0700
    cfg = acme_config(port, backend.port, pebble, storage=storage)
    f = start_ferry(cfg)
    # Before issuance the listener has no certificate for the names at all.
    try:
        handshake(port, NAMES[0])
        early = True
    except (ssl.SSLError, ConnectionError, OSError):
        early = False
    ev = issued(f)
    if not early:
        wait_for(lambda: any(e.get("reason") == "no_certificate"
                             for e in f.events("conn")), what="reason=no_certificate")
    assert ev[0]["names"] == ",".join(NAMES) and ev[0]["acme"] == "peb", ev
    root = os.path.join(pebble.dir, "root.pem")
    with open(root, "w") as out:
        out.write(pebble.root())
    # Both names, verified against pebble's root through the served chain.
    for name in NAMES:
        der = handshake(port, name, cafile=root)
        names, serial = subject_names(der)
        assert names == NAMES, names
    st = show_acme(f)
    assert len(st) == 1 and st[0]["state"] == "valid" and st[0]["names"] == NAMES, st
    assert st[0]["acme"] == "peb" and st[0]["not_after"] > time.time(), st
    assert st[0]["not_after"] > st[0]["renew_at"] > time.time(), st
    text = f.ctl("acme")
    assert "peb" in text and "valid" in text and NAMES[0] in text, text
    assert f.ctl("acme", json_out=True)["acme"][0]["state"] == "valid"
    assert metric(f, "ferry_acme_orders_total", acme="peb", result="ok") == 1
    assert metric(f, "ferry_tls_cert_not_after_seconds", listener="web") == st[0]["not_after"]
    # Storage: 0700 directory, 0600 files.
    assert stat.S_IMODE(os.stat(storage).st_mode) == 0o700
    for fn in os.listdir(storage):
        assert stat.S_IMODE(os.stat(os.path.join(storage, fn)).st_mode) == 0o600, fn
    files = set(os.listdir(storage))
    base = st[0]["cert"][len(storage) + 1:-len(".crt")]
    assert re.fullmatch(re.escape(NAMES[0]) + r"\+[0-9a-f]{8}", base), st[0]["cert"]
    assert {"account.key", base + ".crt", base + ".key", base + ".lock"} <= files, files
    orders = orders_placed(pebble)
    assert orders == 1, pebble.logtext()[-2000:]
    # A restart serves the stored certificate at once and orders nothing.
    f.stop()
    f2 = start_ferry(cfg)
    der = handshake(port, NAMES[1], cafile=root)
    assert subject_names(der)[1] == serial
    time.sleep(1.0)
    assert not f2.events("acme_ordering") and not f2.events("acme_issued"), f2.logtext()
    assert orders_placed(pebble) == 1
    assert show_acme(f2)[0]["state"] == "valid"


def test_nonce_rejection_slow_validation_and_reload():
    """pebble rejects half of the good nonces (badNonce: retried with the
    fresh one) and sleeps before validating; a reload in the middle of the
    order keeps it. Before issuance the names get the listener's tls_cert."""
    dns = start_dns()
    port = free_port()
    backend = start_backend()
    pebble = start_pebble(port, dns.port, env={"PEBBLE_WFE_NONCEREJECT": "50",
                                               "PEBBLE_VA_SLEEPTIME": "3"})
    d = tempfile.mkdtemp(prefix="ferry-acme-other-")
    other = os.path.join(d, "other.pem")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", other, "-out",
                    other + ".crt", "-days", "2", "-subj", "/CN=other.test"],
                   check=True, capture_output=True)
    with open(other, "a") as out:
        out.write(open(other + ".crt").read())
    cfg = acme_config(port, backend.port, pebble, listener=f"tls_cert = {other}",
                      global_lines="log_level = debug")
    f = start_ferry(cfg)
    names, _ = subject_names(handshake(port, NAMES[0]))
    assert names == [], names  # the self-signed other.test (no SAN)
    wait_for(lambda: f.events("acme_ordering"), what="the order started")
    f.signal(signal.SIGHUP)
    wait_for(lambda: "reload" in f.logtext(), what="reload logged")
    issued(f, timeout=90)
    names, _ = subject_names(handshake(port, NAMES[1]))
    assert names == NAMES, names
    assert len(f.events("acme_ordering")) == 1, f.logtext()
    # Half the nonces were refused (badNonce) and retried with the fresh one.
    assert f.events("acme_bad_nonce"), f.logtext()[-3000:]
    # An SNI outside the names (or none) gets the first tls_cert.
    assert subject_names(handshake(port, "elsewhere.test"))[0] == []


def test_renewal_without_restart():
    dns = start_dns()
    port = free_port()
    backend = start_backend()
    pebble = start_pebble(port, dns.port, validity_s=30)
    f = start_ferry(acme_config(port, backend.port, pebble, acme="renew_before = 20s"))
    first = issued(f)[0]
    serial1 = subject_names(handshake(port, NAMES[0]))[1]
    st = show_acme(f)[0]
    # 20 s before notAfter, earlier by up to a tenth of it (2 s).
    assert st["not_after"] - 22 <= st["renew_at"] <= st["not_after"] - 20, st
    issued(f, 2, timeout=60)
    serial2 = subject_names(handshake(port, NAMES[0]))[1]
    assert serial2 != serial1, (serial1, serial2, first)
    assert metric(f, "ferry_acme_orders_total", acme="peb", result="ok") == 2


def test_pebble_down_then_up():
    dns = start_dns()
    port = free_port()
    backend = start_backend()
    pebble = Pebble(port, dns.port)
    cleanup(lambda: [pebble.stop()] + [log.close() for log in pebble.logs])
    f = start_ferry(acme_config(port, backend.port, pebble),
                    env={"FERRY_ACME_RETRY_MS": "1000"})
    wait_for(lambda: f.events("acme_failed"), what="acme_failed while pebble is down")
    st = show_acme(f)[0]
    assert st["state"] in ("failed", "ordering"), st
    assert st["last_error"], st
    assert metric(f, "ferry_acme_orders_total", acme="peb", result="failed") >= 1
    pebble.start()
    issued(f, timeout=60)
    st = show_acme(f)[0]
    assert st["state"] == "valid" and st["last_error"] == "", st
    assert subject_names(handshake(port, NAMES[0]))[0] == NAMES


def test_two_instances_share_storage_one_order():
    """Two ferryd with one storage: one orders; the other waits, answers the
    challenges from storage, and serves the same certificate."""
    dns = start_dns()
    port_a, port_b = free_port(), free_port()
    backend = start_backend()
    pebble = start_pebble(port_a, dns.port)
    storage = tempfile.mkdtemp(prefix="ferry-acme-shared-")
    fa = start_ferry(acme_config(port_a, backend.port, pebble, storage=storage))
    fb = start_ferry(acme_config(port_b, backend.port, pebble, storage=storage))
    wait_for(lambda: subject_names_or_none(port_a) and subject_names_or_none(port_b),
             timeout=60, interval=0.2, what="both serve the certificate")
    assert subject_names_or_none(port_a) == subject_names_or_none(port_b)
    orders = len(fa.events("acme_ordering")) + len(fb.events("acme_ordering"))
    assert orders == 1, (fa.logtext(), fb.logtext())
    assert orders_placed(pebble) == 1


def subject_names_or_none(port):
    try:
        names, serial = subject_names(handshake(port, NAMES[0]))
    except (ssl.SSLError, OSError):
        return None
    return serial if names == NAMES else None


def test_upgrade_during_an_order():
    """`ferryctl upgrade` while an order waits for slow validation: the old
    process drains and exits, the new one (waiting on the storage lock,
    answering the challenges from storage) takes the same order up and
    serves the certificate."""
    dns = start_dns()
    port = free_port()
    backend = start_backend()
    pebble = start_pebble(port, dns.port, env={"PEBBLE_VA_SLEEPTIME": "3"})
    f = start_ferry(acme_config(port, backend.port, pebble, global_lines="drain_timeout = 1s"))
    wait_for(lambda: f.events("acme_ordering"), what="the order started")
    out = f.ctl("upgrade")
    m = re.search(r"pid: (\d+)", out)
    assert m, out
    new_pid = int(m.group(1))

    def stop_new():
        try:
            os.kill(new_pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        wait_for(lambda: not os.path.exists(f"/proc/{new_pid}") or
                 open(f"/proc/{new_pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
                 timeout=30, what="the new ferryd gone")
    cleanup(stop_new)
    wait_for(lambda: f.proc.poll() is not None, timeout=30, what="the old ferryd exits")
    assert f.proc.returncode == 0, f.logtext()[-3000:]
    wait_for(lambda: subject_names_or_none(port), timeout=60, interval=0.2,
             what="the new process serves the certificate")
    # The new process took the order in flight up (BASE.order in storage):
    # the CA saw one order.
    assert f.events("acme_resumed"), f.logtext()[-3000:]
    assert orders_placed(pebble) == 1, f.logtext()[-3000:]


EAB_KID, EAB_KEY = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def test_eab_rsa_key_and_directory_by_name():
    """A CA that requires External Account Binding; rsa-2048 certificate keys;
    the directory's host name looked up through `resolvers` (c-ares)."""
    dns = start_dns()
    port = free_port()
    backend = start_backend()
    pebble = start_pebble(port, dns.port, extra={"externalAccountBindingRequired": True,
                                                 "externalAccountMACKeys": {EAB_KID: EAB_KEY}})
    directory = f"https://ca.acme.test:{pebble.port}/dir"
    glob = f"resolvers = 127.0.0.1:{dns.port}"
    # A wrong HMAC key: the CA refuses the account, with its problem detail.
    bad = start_ferry(acme_config(port, backend.port, pebble, directory=directory,
                                  global_lines=glob, acme=f"eab_kid = {EAB_KID}\n"
                                  "eab_hmac_key = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
    wait_for(lambda: bad.events("acme_failed"), timeout=30, what="EAB refused")
    err = bad.events("acme_failed")[0]["error"]
    assert "newAccount" in err and "HTTP 4" in err, err
    assert show_acme(bad)[0]["last_error"] == err
    bad.stop()
    f = start_ferry(acme_config(port, backend.port, pebble, directory=directory,
                                global_lines=glob, acme=f"eab_kid = {EAB_KID}\n"
                                f"eab_hmac_key = {EAB_KEY}\nkey_type = rsa-2048"))
    issued(f)
    der = handshake(port, NAMES[0])
    r = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-text"], input=der,
                       capture_output=True, check=True)
    assert b"rsaEncryption" in r.stdout and b"2048 bit" in r.stdout, r.stdout[:600]


def test_check_errors():
    """ferryd -t: unknown account, tls_acme without tls = on, no directory,
    wildcard names; it never contacts the ACME server."""
    d = tempfile.mkdtemp(prefix="ferry-acme-t-")
    path = os.path.join(d, "ferry.ini")
    with open(path, "w") as out:
        out.write("""[listener a]
bind = 127.0.0.1:1
backend = app
tls = on
tls_acme = nosuch a.acme.test
[listener b]
bind = 127.0.0.1:2
backend = app
tls_acme = peb b.acme.test
[listener c]
bind = 127.0.0.1:3
backend = app
tls = on
tls_acme = peb *.acme.test
[acme peb]
email = ops@acme.test
[backend app]
server s1 127.0.0.1:9
""")
    from ferrytest import FERRYD
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=30)
    text = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 1, text
    for line, msg in ((5, 'unknown acme "nosuch"'), (9, "tls_acme has no effect without tls = on"),
                      (14, 'wildcard name "*.acme.test"'), (15, "[acme peb] has no directory")):
        assert any(l.startswith(f"{path}:{line}: ") and msg in l for l in text.splitlines()), \
            (line, msg, text)


if __name__ == "__main__":
    for tool in (PEBBLE, DNSMASQ):
        if not os.path.exists(tool):
            print(f"SKIP: {tool} not installed (scripts/deps.sh test installs pebble, "
                  "dnsmasq-base)")
            sys.exit(77)
    runner.run(globals())
