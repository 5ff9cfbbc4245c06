#!/usr/bin/env python3
"""The PROXY protocol v2 with TLVs, both ways: send_proxy = v2 carries ALPN,
AUTHORITY (the SNI), UNIQUE_ID (the access log's id) and SSL (version,
cipher, client CN), checked field by field by a Python backend that parses
the header itself, behind a real TLS client with ALPN, SNI and a client
certificate; accept_proxy takes v2 LOCAL (a load balancer's health check),
3 KiB of cloud TLVs, and a malformed header costs only its own connection."""
import atexit
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading

from ferrytest import (closed_by_peer, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = tempfile.mkdtemp(prefix="ferry-pp2-certs-")
atexit.register(shutil.rmtree, CERTS, True)
subprocess.run(["sh", os.path.join(HERE, "..", "fixtures", "gen-certs.sh"), CERTS], check=True,
               timeout=120)
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def cert(name):
    return os.path.join(CERTS, name)


# ---- an independent v2 reader (proxy-protocol.txt 2.2) ----

def read_tlvs(data):
    out = []
    while data:
        assert len(data) >= 3, data
        t, n = data[0], struct.unpack("!H", data[1:3])[0]
        assert len(data) >= 3 + n, (t, n, data)
        out.append((t, data[3:3 + n]))
        data = data[3 + n:]
    return out


def parse_v2(sock):
    """Reads one v2 header from sock: a dict of its fields and TLVs."""
    head = recv_exact(sock, 16)
    assert head[:12] == SIG, head
    ver_cmd, fam, n = head[12], head[13], struct.unpack("!H", head[14:16])[0]
    body = recv_exact(sock, n)
    h = {"cmd": ver_cmd & 15, "version": ver_cmd >> 4, "fam": fam}
    if fam == 0x11:
        h["src"] = (socket.inet_ntoa(body[0:4]), struct.unpack("!H", body[8:10])[0])
        h["dst"] = (socket.inet_ntoa(body[4:8]), struct.unpack("!H", body[10:12])[0])
        body = body[12:]
    for t, v in read_tlvs(body):
        key = {1: "alpn", 2: "authority", 5: "unique_id"}.get(t)
        assert t in (1, 2, 5, 0x20), f"unexpected TLV type {t:#x}"
        assert key is None or key not in h, f"TLV {t:#x} twice"
        if key:
            h[key] = v.decode()
            continue
        h["ssl_client"], h["ssl_verify"] = v[0], struct.unpack("!I", v[1:5])[0]
        for st, sv in read_tlvs(v[5:]):
            h[{0x21: "ssl_version", 0x22: "ssl_cn", 0x23: "ssl_cipher"}[st]] = sv.decode()
    return h


def header_reporter(c, _b):
    """Backend: parse the header, answer with it as one JSON line, then echo."""
    h = parse_v2(c)
    c.sendall(json.dumps(h).encode() + b"\n")
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(1)
        assert d, buf
        buf += d
    return json.loads(buf)


def config(port, bport, listener):
    return f"""
[global]
control_socket = @SOCK@
[listener web]
bind = 127.0.0.1:{port}
backend = app
{listener}
[backend app]
server s 127.0.0.1:{bport}
send_proxy = v2
"""


def access_ids(f):
    return {e["client"]: e["id"] for e in f.access_log()}


def test_send_proxy_v2_tlvs_from_terminated_tls():
    b = start_backend(header_reporter)
    port = free_port()
    f = start_ferry(config(port, b.port, f"""tls = on
tls_cert = {cert('a-ec.pem')}
tls_alpn = h2,http/1.1
tls_client_ca = {cert('ca.pem')}"""))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert("ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert("client.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    cport = raw.getsockname()[1]
    s = ctx.wrap_socket(raw, server_hostname="a.test")
    s.sendall(b"x")
    h = read_line(s)
    assert s.recv(1) == b"x"
    version, cipher = s.version(), s.cipher()[0]
    s.close()
    assert h["version"] == 2 and h["cmd"] == 1 and h["fam"] == 0x11, h
    assert h["src"] == ["127.0.0.1", cport] and h["dst"] == ["127.0.0.1", port], h
    assert h["alpn"] == "http/1.1", h
    assert h["authority"] == "a.test", h
    # PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, verified (0).
    assert h["ssl_client"] == 0x03 and h["ssl_verify"] == 0, h
    assert h["ssl_version"] == version, (h, version)
    assert h["ssl_cipher"] == cipher, (h, cipher)
    assert h["ssl_cn"] == "client", h
    wait_for(lambda: f"127.0.0.1:{cport}" in access_ids(f), what="access-log line")
    assert h["unique_id"] == access_ids(f)[f"127.0.0.1:{cport}"], (h, f.access_log())

    # TLS 1.2 without ALPN, SNI or client certificate (a listener that asks
    # for none): SSL carries only the client bit, version and cipher.
    port2 = free_port()
    f2 = start_ferry(config(port2, b.port, f"tls = on\ntls_cert = {cert('a-ec.pem')}"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port2), timeout=15))
    s.sendall(b"y")
    h = read_line(s)
    s.close()
    assert "alpn" not in h and "authority" not in h and "ssl_cn" not in h, h
    assert h["ssl_client"] == 0x01 and h["ssl_version"] == "TLSv1.2", h
    assert h["ssl_cipher"] and h["unique_id"].isdigit(), h
    assert f2.listener("web")["total"] == 1


def test_send_proxy_v2_authority_only_for_host_names():
    """A terminating listener takes whatever SNI OpenSSL accepts; AUTHORITY
    carries it only when it is a host name (letters, digits, - . _, at most
    255 bytes): a name with a space, CR/LF, quotes or an escape is left out,
    the connection itself is served."""
    b = start_backend(header_reporter)
    port = free_port()
    start_ferry(config(port, b.port, f"tls = on\ntls_cert = {cert('a-ec.pem')}"))

    def authority(name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15),
                            server_hostname=name)
        s.sendall(b"q")
        h = read_line(s)
        assert s.recv(1) == b"q"
        s.close()
        return h.get("authority")

    assert authority("Good-name_1.a.test") == "Good-name_1.a.test"
    longest = "l" * 63 + "." + "m" * 63 + "." + "n" * 63 + "." + "o" * 63  # 255 bytes
    assert authority(longest) == longest
    for bad in ('bad name.test', 'x.test\r\nInjected: 1', 'q"uote.test', 'esc\x1b[2J.test',
                'slash/x.test', 'semi;colon.test'):
        assert authority(bad) is None, bad


def test_send_proxy_v2_authority_from_passthrough():
    b = start_backend(header_reporter)
    port = free_port()
    start_ferry(config(port, b.port, "route = a.test app"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    inc, outc = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outc, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    raw.sendall(outc.read())
    h = read_line(raw)  # the backend is no TLS server: it reports and echoes the hello
    raw.close()
    assert h["authority"] == "a.test" and "ssl_client" not in h and "alpn" not in h, h
    assert h["unique_id"].isdigit(), h


def test_plain_tcp_sends_only_unique_id():
    b = start_backend(header_reporter)
    port = free_port()
    f = start_ferry(config(port, b.port, ""))
    s = connect(port)
    s.sendall(b"z")
    h = read_line(s)
    s.close()
    assert set(h) == {"cmd", "version", "fam", "src", "dst", "unique_id"}, h
    wait_for(lambda: f.access_log(), what="access log")
    assert h["unique_id"] == f.access_log()[0]["id"], (h, f.access_log())


def v2(cmd, fam, body):
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


def inet(src, sport, dst, dport):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def tlv(t, v):
    return bytes([t]) + struct.pack("!H", len(v)) + v


def test_accept_proxy_local_cloud_tlvs_and_malformed():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(config(port, b.port, "accept_proxy = on").replace("send_proxy = v2", ""))
    # Another client's connection, open through all of this.
    other = connect(port)
    other.sendall(v2(1, 0x11, inet("198.51.100.1", 1000, "127.0.0.1", 80)) + b"a")
    assert recv_exact(other, 1) == b"a"

    # LOCAL (a load balancer's health check): accepted, the socket's peer is the client.
    s = connect(port)
    local_port = s.getsockname()[1]
    s.sendall(v2(0, 0x00, b"") + b"local")
    assert recv_exact(s, 5) == b"local"
    s.close()

    # 3 KiB of cloud TLVs: AWS 0xEA (VPC endpoint id), Azure 0xEE, GCP 0xE0, NOOP.
    tl = tlv(0xEA, b"\x01vpce-0123456789abcdef0") + tlv(0xEE, b"\x01" + b"\x11" * 4)
    tl += tlv(0xE0, b"\x00" * 8) + tlv(0x02, b"www.example.com") + tlv(0x05, b"lb-req-1")
    tl += tlv(0x04, b"\x00" * (3072 - 16 - 12 - len(tl) - 3))
    hdr = v2(1, 0x11, inet("203.0.113.5", 2000, "127.0.0.1", 443) + tl)
    assert len(hdr) == 3072
    s = connect(port)
    s.sendall(hdr + b"cloud")
    assert recv_exact(s, 5) == b"cloud"
    s.close()

    # Malformed: a TLV running past the header; an SSL TLV whose sub-TLV does;
    # over 4 KiB. Each is closed; nothing else is disturbed.
    bad = [
        v2(1, 0x11, inet("192.0.2.1", 1, "127.0.0.1", 2) + b"\xea\x00\x09abc"),
        v2(1, 0x11, inet("192.0.2.1", 1, "127.0.0.1", 2) + tlv(0x20, b"\x01\0\0\0\0\x21\x00\x09ab")),
        v2(1, 0x11, inet("192.0.2.1", 1, "127.0.0.1", 2) + tlv(0xEA, b"\0" * 4066)),
    ]
    assert len(bad[2]) == 4097
    for h in bad:
        s = connect(port)
        s.sendall(h + b"never")
        assert closed_by_peer(s)
        s.close()
    other.sendall(b"still")
    assert recv_exact(other, 5) == b"still"
    other.close()

    wait_for(lambda: len(f.access_log()) == 6, what="six access-log lines")
    by_client = {e["client"]: e["end"] for e in f.access_log()}
    assert by_client[f"127.0.0.1:{local_port}"] == "closed", by_client
    assert by_client["203.0.113.5:2000"] == "closed", by_client
    assert by_client["198.51.100.1:1000"] == "closed", by_client
    assert sum(1 for e in f.access_log() if e["end"] == "rejected") == 3, f.access_log()
    assert f.listener("web")["rejected"] == 3


if __name__ == "__main__":
    runner.run(globals())
