#!/usr/bin/env python3
"""The configuration as a user meets it through the real ferryd: `ferryd -t`
on broken and good files (SPEC 1 and 2), relative paths resolved against the
file's directory whatever the working directory, and the shipped example."""
import os
import shutil
import subprocess
import tempfile

from ferrytest import FERRYD, cleanup, free_port, runner, start_ferry

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))


def tmpdir():
    d = tempfile.mkdtemp(prefix="ferry-cfg-")
    cleanup(lambda: shutil.rmtree(d, True))
    return d


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def check(path, cwd="/"):
    """ferryd -t -c path, run from cwd: (exit status, stdout lines, stderr)."""
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60, cwd=cwd)
    return r.returncode, r.stdout.decode().strip().splitlines(), r.stderr.decode()


def self_signed(pem):
    """A throw-away EC certificate and key in one PEM file."""
    d = os.path.dirname(pem)
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", pem + ".key", "-out",
                    pem + ".crt", "-subj", "/CN=cfg.test", "-days", "2"],
                   check=True, capture_output=True, timeout=60)
    with open(pem, "w") as out:
        for part in (".crt", ".key"):
            with open(pem + part) as fh:
                out.write(fh.read())


def line_of(text, needle):
    return text.splitlines().index(needle) + 1


# ---- relative paths (SPEC 1) ----

def tls_config(port, cert, extra=""):
    return (f"[global]\ncontrol_socket =\n[listener l]\nbind = 127.0.0.1:{port}\ntls = on\n"
            f"tls_cert = {cert}\n{extra}backend = b\n[backend b]\nserver s 127.0.0.1:9\n")


def test_relative_paths_follow_the_config_file():
    d = tmpdir()
    path = os.path.join(d, "etc", "ferry.ini")
    self_signed(os.path.join(d, "etc", "certs", "a.pem"))
    write(path, tls_config(free_port(), "certs/a.pem", "tls_client_ca = certs/a.pem.crt\n"))
    # Valid from any working directory, none of which holds certs/.
    for cwd in ("/", d, os.path.join(d, "etc", "certs")):
        rc, out, err = check(path, cwd)
        assert rc == 0 and out == [f"{path}: configuration is valid"], (cwd, rc, out, err)


def test_messages_name_the_resolved_absolute_path():
    d = tmpdir()
    path = os.path.join(d, "etc", "ferry.ini")
    text = tls_config(free_port(), "certs/missing.pem", "tls_client_ca = ./ca/none.pem\n")
    write(path, text)
    rc, out, _ = check("etc/ferry.ini", cwd=d)   # -c relative to the cwd, as given
    assert rc == 1, out
    want = [f"etc/ferry.ini:{line_of(text, 'tls_cert = certs/missing.pem')}: "
            f"cannot read tls_cert {d}/etc/certs/missing.pem: No such file or directory",
            f"etc/ferry.ini:{line_of(text, 'tls_client_ca = ./ca/none.pem')}: "
            f"cannot read tls_client_ca {d}/etc/ca/none.pem: No such file or directory"]
    assert out == want, out


def test_relative_control_socket_of_a_running_ferryd():
    # The test runs ferryd from the build directory; the socket must still
    # appear next to the configuration file (Ferry waits for it there).
    port = free_port()
    f = start_ferry(f"[global]\ncontrol_socket = ferry.sock\n[listener l]\n"
                    f"bind = 127.0.0.1:{port}\nbackend = b\n[backend b]\nserver s 127.0.0.1:9\n")
    assert os.path.samefile(os.path.dirname(f.sock_path), f.dir)
    assert "ferry" in f.ctl("info")


if __name__ == "__main__":
    runner.run(globals())
