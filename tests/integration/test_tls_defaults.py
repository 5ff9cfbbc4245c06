#!/usr/bin/env python3
"""TLS security defaults of a terminating listener (issue 8): TLS 1.2 offers
only forward-secret AEAD suites unless tls_ciphers says otherwise, and a
flood of empty TLS records ends the connection without waiting for
handshake_timeout. Real clients: Python's ssl and a raw socket."""
import atexit
import ctypes
import ctypes.util
import hashlib
import hmac
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile

from ferrytest import free_port, runner, start_backend, start_ferry, wait_for, web_config

CERTS = tempfile.mkdtemp(prefix="ferry-tlsdef-")
atexit.register(shutil.rmtree, CERTS, True)


def make_cert(name, kind):
    """Self-signed EC or RSA certificate and key in one PEM file."""
    pem = os.path.join(CERTS, name)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
        ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *key, "-nodes", "-keyout", pem + ".key",
                    "-out", pem + ".crt", "-subj", "/CN=defaults.test", "-days", "30"],
                   check=True, capture_output=True, timeout=120)
    with open(pem, "w") as out:
        for part in (".crt", ".key"):
            with open(pem + part) as fh:
                out.write(fh.read())
    return pem


EC = make_cert("ec.pem", "ec")
RSA = make_cert("rsa.pem", "rsa")


def tls_ferry(extra=""):
    port = free_port()
    b = start_backend("echo")
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{b.port}",
                               listener_lines=f"tls = on\ntls_cert = {EC}\ntls_cert = {RSA}\n"
                                              f"{extra}"))
    return f, port


def handshake_12(port, cipher):
    """The TLS 1.2 cipher negotiated when the client offers only `cipher`,
    or None when the server refuses it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher + ":@SECLEVEL=0")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        with ctx.wrap_socket(s) as t:
            return t.cipher()[0]
    except (ssl.SSLError, ConnectionResetError):
        return None
    finally:
        s.close()


CBC_OR_NO_FS = ["AES128-SHA", "AES256-SHA256", "AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA",
                "ECDHE-RSA-AES256-SHA384", "ECDHE-ECDSA-AES256-SHA", "DHE-RSA-AES128-SHA256"]
AEAD_FS = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
           "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
           "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
           "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384"]


def test_tls12_default_is_forward_secret_aead_only():
    _, port = tls_ferry()
    for c in AEAD_FS:
        assert handshake_12(port, c) == c, c
    for c in CBC_OR_NO_FS:
        assert handshake_12(port, c) is None, c


def test_tls_ciphers_still_overrides_the_default():
    _, port = tls_ferry("tls_ciphers = ECDHE-ECDSA-AES128-SHA:AES128-SHA\n")
    assert handshake_12(port, "ECDHE-ECDSA-AES128-SHA") == "ECDHE-ECDSA-AES128-SHA"
    assert handshake_12(port, "AES128-SHA") == "AES128-SHA"
    assert handshake_12(port, "ECDHE-ECDSA-AES128-GCM-SHA256") is None


def ended_by_peer(s, limit_s):
    """True when the peer closes or resets within limit_s (reading what it
    sends, an alert, meanwhile)."""
    s.settimeout(limit_s)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_empty_record_flood_ends_the_handshake():
    # handshake_timeout is far above the wait below: what ends these
    # connections is the bound on empty records, not the timeout.
    _, port = tls_ferry("handshake_timeout = 5m\n")
    for rtype in (22, 20, 21, 23):   # handshake, change_cipher_spec, alert, application data
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        empty = bytes([rtype, 3, 3, 0, 0])
        try:
            s.sendall(empty * 2000)
        except (ConnectionResetError, BrokenPipeError):
            s.close()
            continue
        assert ended_by_peer(s, 30), f"type {rtype}: flood of empty records not cut"
        s.close()
        # The listener still serves.
        assert handshake_12(port, "ECDHE-ECDSA-AES128-GCM-SHA256")


def test_empty_records_interleaved_with_a_trickle():
    # Empty records sent one by one (each a separate segment) are counted
    # the same way: the 40th at the latest ends the handshake.
    _, port = tls_ferry("handshake_timeout = 5m\n")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cut = False
    for _ in range(40):
        try:
            s.sendall(bytes([22, 3, 1, 0, 0]))
        except (ConnectionResetError, BrokenPipeError):
            cut = True
            break
    assert cut or ended_by_peer(s, 30)
    s.close()


# ---- empty records after the handshake ----
# A TLS 1.3 record with no content is legal; a flood of them must still end.
# Python's ssl never sends one, so the test encrypts them itself: keys from
# the client's key log (RFC 8446 7.1/7.3), AES-128-GCM from libcrypto
# through ctypes.

LIBCRYPTO = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
LIBCRYPTO.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
LIBCRYPTO.EVP_aes_128_gcm.restype = ctypes.c_void_p
LIBCRYPTO.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]


def aes128gcm(key, nonce, aad, plain):
    c = LIBCRYPTO
    ctx = ctypes.c_void_p(c.EVP_CIPHER_CTX_new())
    out, tag, n = ctypes.create_string_buffer(len(plain) + 16), ctypes.create_string_buffer(16), \
        ctypes.c_int(0)
    try:
        assert c.EVP_EncryptInit_ex(ctx, ctypes.c_void_p(c.EVP_aes_128_gcm()), None, key,
                                    nonce) == 1
        assert c.EVP_EncryptUpdate(ctx, None, ctypes.byref(n), aad, len(aad)) == 1
        assert c.EVP_EncryptUpdate(ctx, out, ctypes.byref(n), plain, len(plain)) == 1
        used = n.value
        assert c.EVP_EncryptFinal_ex(ctx, ctypes.byref(out, used), ctypes.byref(n)) == 1
        assert c.EVP_CIPHER_CTX_ctrl(ctx, 0x10, 16, tag) == 1   # EVP_CTRL_GCM_GET_TAG
    finally:
        c.EVP_CIPHER_CTX_free(ctx)
    return out.raw[:used] + tag.raw


def hkdf_expand_label(secret, label, length):
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


class RawTls13:
    """A TLS 1.3 client connection whose later records the test writes itself."""

    def __init__(self, port, keylog):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.keylog_filename = keylog
        self.tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert self.tls.cipher()[0] == "TLS_AES_128_GCM_SHA256"
        self.tls.sendall(b"ping")                  # the client's application record 0
        assert self.tls.recv(4) == b"ping"         # through ferryd and the echo server
        with open(keylog) as fh:
            secret = [bytes.fromhex(l.split()[2]) for l in fh
                      if l.startswith("CLIENT_TRAFFIC_SECRET_0")][-1]
        self.key = hkdf_expand_label(secret, b"key", 16)
        self.iv = hkdf_expand_label(secret, b"iv", 12)
        self.seq = 1
        self.raw = socket.socket(fileno=os.dup(self.tls.fileno()))

    def send(self, data):
        """One application data record carrying `data` (b"": an empty one)."""
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        header = bytes([23, 3, 3, 0, len(data) + 17])   # content, its type, the tag
        self.raw.sendall(header + aes128gcm(self.key, nonce, header, data + b"\x17"))
        self.seq += 1

    def close(self):
        self.raw.close()
        self.tls.close()


def test_empty_record_flood_after_the_handshake():
    f, port = tls_ferry("tls_ciphersuites = TLS_AES_128_GCM_SHA256\nidle_timeout = 5m\n")
    keylog = os.path.join(CERTS, "keylog")
    # The records are right: a few empty ones, then data, are served.
    c = RawTls13(port, keylog)
    for _ in range(10):
        c.send(b"")
    c.send(b"pong")
    c.raw.shutdown(socket.SHUT_WR)
    assert ended_by_peer(c.raw, 30)
    c.close()
    wait_for(lambda: [e.get("bytes_in") for e in f.access_log()] == ["8"],
             what="ping, ten empty records and pong forwarded")
    # A flood of them ends the connection, long before idle_timeout.
    c = RawTls13(port, keylog)
    cut = False
    try:
        for _ in range(2000):
            c.send(b"")
    except (ConnectionResetError, BrokenPipeError):
        cut = True
    assert cut or ended_by_peer(c.raw, 30), "a flood of empty records was not cut"
    c.close()


def test_bad_hello_is_rejected_not_a_handshake_error():
    # What the docs and the metric help say (issue 8): a bad ClientHello on a
    # passthrough listener ends rejected and is not a handshake error; a
    # failed TLS handshake on a terminating listener is both.
    mport, pport, tport = free_port(), free_port(), free_port()
    b = start_backend()
    f = start_ferry(f"[global]\ncontrol_socket = @SOCK@\nmetrics = 127.0.0.1:{mport}\n"
                    f"[listener pass]\nbind = 127.0.0.1:{pport}\nroute = x.test app\n"
                    f"[listener term]\nbind = 127.0.0.1:{tport}\ntls = on\ntls_cert = {EC}\n"
                    f"backend = app\n[backend app]\nserver s 127.0.0.1:{b.port}\n")
    for port in (pport, tport):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert ended_by_peer(s, 30)
        s.close()
    wait_for(lambda: f.listener("pass")["rejected"] == 1 and f.listener("term")["rejected"] == 1,
             what="both rejected")
    assert f.listener("pass")["handshake_errors"] == 0
    assert f.listener("term")["handshake_errors"] == 1
    with socket.create_connection(("127.0.0.1", mport), timeout=10) as m:
        m.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        text = b""
        while True:
            d = m.recv(65536)
            if not d:
                break
            text += d
    helps = [l for l in text.decode().splitlines()
             if l.startswith("# HELP ferry_listener_handshake_errors_total")]
    assert len(helps) == 1 and "ClientHello counts as rejected" in helps[0], helps


if __name__ == "__main__":
    runner.run(globals())
