#!/usr/bin/env python3
"""ferryd -t as ferryd(8) describes it: errors on stderr as FILE:LINE:
message, the verdict on stdout, warnings that do not change the exit status
(certificates expired or expiring within 14 days, health_timeout not below
health_interval, a backend of backup servers only), and the files ferryd
would open for writing at start (log, access_log, state_file) checked."""
import os
import shutil
import subprocess
import tempfile

from ferrytest import FERRYD, cleanup, runner

BACKEND = "[backend b]\nserver s 127.0.0.1:9\n"


def tmpdir():
    d = tempfile.mkdtemp(prefix="ferry-t-")
    cleanup(lambda: shutil.rmtree(d, True))
    return d


def check(path):
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def write(d, text):
    path = os.path.join(d, "ferry.ini")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def line_of(text, needle):
    return [l.strip() for l in text.splitlines()].index(needle) + 1


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def cert(d, name, days):
    """A self-signed EC certificate with its key in one PEM file, valid for
    `days` (negative: expired that long ago)."""
    key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".crt"))
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", f"/CN={name}.test", "-out", csr)
    openssl("x509", "-req", "-in", csr, "-signkey", key, "-days", str(days), "-out", crt)
    pem = os.path.join(d, name + ".pem")
    with open(pem, "w") as out:
        for p in (crt, key):
            with open(p) as fh:
                out.write(fh.read())
    r = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-enddate"],
                       capture_output=True, timeout=60, check=True)
    return pem, r.stdout.decode().strip().split("=", 1)[1]


def test_errors_go_to_stderr_and_the_verdict_to_stdout():
    d = tmpdir()
    good = write(d, f"[global]\ncontrol_socket =\n[listener l]\nbind = 127.0.0.1:1\nbackend = b\n"
                    + BACKEND)
    rc, out, err = check(good)
    assert rc == 0 and out == f"{good}: configuration is valid\n" and err == "", (rc, out, err)
    text = "[global]\ncontrol_socket =\nbogus = 1\n[listener l]\nbind = 127.0.0.1:1\nbackend = b\n"
    bad = write(d, text + BACKEND)
    rc, out, err = check(bad)
    assert rc == 1 and out == "", (rc, out, err)
    assert err.startswith(f"{bad}:3: "), err


def test_files_opened_for_writing_are_checked():
    d = tmpdir()
    ro = os.path.join(d, "ro")
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    # root may write anywhere a mode forbids: a directory that is a file then.
    blocked = ro if os.geteuid() != 0 else os.path.join(d, "afile")
    if os.geteuid() == 0:
        open(blocked, "w").close()
    text = ("[global]\ncontrol_socket =\n"
            f"log = {d}/missing/ferry.log\n"
            f"access_log = {blocked}/access.log\n"
            "state_file = nowhere/state\n"
            "[listener l]\nbind = 127.0.0.1:1\nbackend = b\n" + BACKEND)
    path = write(d, text)
    rc, out, err = check(path)
    assert rc == 1 and out == "", (rc, out, err)
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert lines[0].startswith(f"{path}:3: ") and f"{d}/missing" in lines[0], lines
    assert lines[1].startswith(f"{path}:4: ") and blocked in lines[1], lines
    assert lines[2].startswith(f"{path}:5: ") and os.path.join(d, "nowhere") in lines[2], lines
    # The same files in directories that exist: valid, and nothing created.
    os.makedirs(os.path.join(d, "logs"))
    path = write(d, "[global]\ncontrol_socket =\n"
                    f"log = {d}/logs/ferry.log\naccess_log = logs/access.log\n"
                    "state_file = logs/state\n"
                    "[listener l]\nbind = 127.0.0.1:1\nbackend = b\n" + BACKEND)
    rc, out, err = check(path)
    assert rc == 0 and err == "", (rc, out, err)
    assert os.listdir(os.path.join(d, "logs")) == []


def test_start_refuses_a_state_file_it_could_not_write():
    # ferryd(8): what -t says of a file opened for writing stops the start
    # too, before anything is bound (exit 2), at the key's line.
    d = tmpdir()
    text = ("[global]\ncontrol_socket =\nstate_file = nowhere/state\n"
            "[listener l]\nbind = 127.0.0.1:1\nbackend = b\n" + BACKEND)
    path = write(d, text)
    r = subprocess.run([FERRYD, "-c", path], capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert err.startswith(f"{path}:3: state_file {d}/nowhere/state"), err


def test_unknown_user_and_group_are_errors_at_their_lines():
    # What would stop the start (the privilege drop) fails -t too, at the line.
    d = tmpdir()
    text = ("[global]\ncontrol_socket =\nuser = no-such-user-ferry\n"
            "group = no-such-group-ferry\n"
            "[listener l]\nbind = 127.0.0.1:1\nbackend = b\n" + BACKEND)
    path = write(d, text)
    rc, out, err = check(path)
    assert rc == 1 and out == "", (rc, out, err)
    assert err.splitlines() == [f"{path}:3: unknown user 'no-such-user-ferry'",
                                f"{path}:4: unknown group 'no-such-group-ferry'"], err
    # Accounts that exist (by name) are valid.
    path = write(d, text.replace("no-such-user-ferry", "root").replace("no-such-group-ferry",
                                                                        "root"))
    rc, out, err = check(path)
    assert rc == 0 and err == "", (rc, out, err)
    # Or by number (ferry.ini(5)): an id that exists, as nobody's 65534 does.
    nobody = subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout.strip()
    path = write(d, text.replace("no-such-user-ferry", nobody).replace("no-such-group-ferry", "0"))
    rc, out, err = check(path)
    assert rc == 0 and err == "", (rc, out, err)


def test_warnings_do_not_change_the_verdict():
    d = tmpdir()
    soon, soon_date = cert(d, "soon", 5)
    gone, gone_date = cert(d, "gone", -1)
    client, client_date = cert(d, "client", 3)
    fine, _ = cert(d, "fine", 400)
    text = ("[global]\ncontrol_socket =\n"
            "[listener l]\nbind = 127.0.0.1:1\ntls = on\n"
            f"tls_cert = {fine}\ntls_cert = {soon}\ntls_cert = {gone}\nbackend = b\n"
            "[backend b]\nserver s 127.0.0.1:9\n"
            f"tls = on\ntls_verify = off\ntls_cert = {client}\n"
            "health_check = tcp\nhealth_interval = 2s\nhealth_timeout = 2s\n"
            "[backend spare]\nserver x 127.0.0.1:9 backup\nserver y 127.0.0.1:10 backup\n")
    path = write(d, text)
    rc, out, err = check(path)
    assert rc == 0 and out == f"{path}: configuration is valid\n", (rc, out, err)
    lines = err.splitlines()
    want = [
        (line_of(text, f"tls_cert = {soon}"), soon_date),
        (line_of(text, f"tls_cert = {gone}"), gone_date),
        (line_of(text, f"tls_cert = {client}"), client_date),
        (line_of(text, "health_timeout = 2s"), "health_interval"),
        (line_of(text, "[backend spare]"), "backup"),
    ]
    assert len(lines) == len(want), err
    for l, (n, word) in zip(lines, want):
        assert l.startswith(f"{path}:{n}: warning: "), (l, n)
        assert word in l, (l, word)
    assert "expired" in lines[1] and "expires" in lines[0], lines


if __name__ == "__main__":
    runner.run(globals())
