#!/usr/bin/env python3
"""user/group: ferryd binds as root, then runs as the configured user with no
capabilities and no_new_privs; a drop that cannot be done is fatal."""
import grp
import os
import pwd
import stat
import subprocess
import tempfile

from ferrytest import (FERRYCTL, FERRYD, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, wait_for)


def status_fields(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def test_drop_to_nobody():
    if os.geteuid() != 0:
        print("skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
user = nobody
group = {group}
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
""", pre_start=lambda d: os.chmod(d, 0o755))
    # The control socket is created before the drop: wait for the drop to end.
    wait_for(lambda: status_fields(f.proc.pid).get("NoNewPrivs") == "1", what="privilege drop")
    st = status_fields(f.proc.pid)
    uids = st["Uid"].split()
    gids = st["Gid"].split()
    assert uids == [str(nobody.pw_uid)] * 4, st["Uid"]
    assert gids == [str(nobody.pw_gid)] * 4, st["Gid"]
    assert st["CapEff"] == "0000000000000000", st["CapEff"]
    assert st["CapPrm"] == "0000000000000000", st["CapPrm"]
    assert st["NoNewPrivs"] == "1"
    assert "0" not in st["Groups"].split(), st["Groups"]
    # The control socket belongs to the new user, and works.
    s = os.stat(f.sock_path)
    assert stat.S_ISSOCK(s.st_mode) and s.st_uid == nobody.pw_uid
    assert "version" in f.ctl("info")
    c = connect(port)
    c.sendall(b"still serving")
    assert recv_exact(c, 13) == b"still serving"
    c.close()


def test_reload_fails_on_a_key_unreadable_after_the_drop():
    # `ferryd -t` runs as root and reads the key; the running ferryd (nobody)
    # cannot: ferryctl reload, the unit's ExecReload=, must say so and fail.
    if os.geteuid() != 0:
        print("skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    b = start_backend("echo")
    port, tport = free_port(), free_port()
    base = f"""
[global]
control_socket = @SOCK@
user = nobody
group = {group}
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
"""
    f = start_ferry(base, pre_start=lambda d: os.chmod(d, 0o755))
    pem = os.path.join(f.dir, "secret.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", pem, "-out", pem + ".crt",
                    "-subj", "/CN=priv.test", "-days", "30"], check=True, capture_output=True,
                   timeout=60)
    with open(pem) as fh:
        key = fh.read()
    with open(pem + ".crt") as fh:
        crt = fh.read()
    with open(pem, "w") as fh:
        fh.write(crt + key)
    os.chmod(pem, 0o600)  # root's only
    new = base + f"""
[listener tls]
bind = 127.0.0.1:{tport}
tls = on
tls_cert = {pem}
backend = app
"""
    f.write_config(new)
    assert subprocess.run([FERRYD, "-t", "-c", f.path], capture_output=True).returncode == 0
    r = subprocess.run([FERRYCTL, "-s", f.sock_path, "reload"], capture_output=True, timeout=30)
    assert r.returncode == 1, r
    out = r.stdout.decode()
    line = new.splitlines().index(f"tls_cert = {pem}") + 1
    assert out.startswith(f"error: {f.path}:{line}: ") and pem in out, out
    info = f.ctl("info", json_out=True)
    assert info["reloads_failed"] == 1 and info["last_reload_ok"] is False, info
    c = connect(port)
    c.sendall(b"still")
    assert recv_exact(c, 5) == b"still"
    c.close()


def test_already_that_user():
    # Under the systemd unit ferryd starts as its user: `user =` then only
    # confirms it, and no_new_privs is still set.
    if os.geteuid() != 0:
        print("skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    d = tempfile.mkdtemp()
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    os.chmod(d, 0o755)
    b = start_backend("echo")
    port = free_port()
    path = os.path.join(d, "ferry.ini")
    with open(path, "w") as fh:
        fh.write(f"""
[global]
control_socket = {d}/s.sock
user = nobody
group = {group}
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
""")
    p = subprocess.Popen(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                          "--clear-groups", FERRYD, "-c", path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(f"{d}/s.sock") or p.poll() is not None, timeout=15,
                 what="ferryd up")
        assert p.poll() is None, p.stdout.read()
        # The control socket exists before the drop ends: wait for it.
        wait_for(lambda: status_fields(p.pid).get("NoNewPrivs") == "1", what="no_new_privs")
        c = connect(port)
        c.sendall(b"as nobody")
        assert recv_exact(c, 9) == b"as nobody"
        c.close()
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_drop_by_number():
    # user and group may be numbers (ferry.ini(5)), ids that have an entry.
    if os.geteuid() != 0:
        print("skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody")
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
user = {nobody.pw_uid}
group = {nobody.pw_gid}
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
""", pre_start=lambda d: os.chmod(d, 0o755))
    wait_for(lambda: status_fields(f.proc.pid).get("NoNewPrivs") == "1", what="privilege drop")
    st = status_fields(f.proc.pid)
    assert st["Uid"].split() == [str(nobody.pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(nobody.pw_gid)] * 4, st["Gid"]
    c = connect(port)
    c.sendall(b"by number")
    assert recv_exact(c, 9) == b"by number"
    c.close()


def test_unknown_user_is_fatal():
    if os.geteuid() != 0:
        print("skipped: needs root")
        return
    d = tempfile.mkdtemp()
    path = os.path.join(d, "ferry.ini")
    with open(path, "w") as fh:
        fh.write(f"""
[global]
control_socket = {d}/s.sock
user = no-such-user-ferry
[listener web]
bind = 127.0.0.1:{free_port()}
backend = app
[backend app]
server app1 127.0.0.1:9
""")
    r = subprocess.run([FERRYD, "-c", path], capture_output=True, timeout=30)
    assert r.returncode == 2, r
    # Before anything is bound, at the line that names it (ferryd(8) EXIT STATUS).
    assert f"{path}:4: unknown user 'no-such-user-ferry'\n".encode() in r.stderr, r.stderr


if __name__ == "__main__":
    runner.run(globals())
