"""ferryd takes over listening sockets passed by systemd (ferryd(8)).

The real ferryd gets an already listening 127.0.0.1 socket on fd 3 with
LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES, set by a small exec wrapper and, if
installed, by systemd-socket-activate. Bytes sent to that socket must come
back through ferryd from a Python echo backend. Cases:

- named: the inherited socket is named "web" like [listener web], whose own
  bind (another port) must then stay unbound;
- by address: no name; the listener's bind equal to the socket's address
  uses it (a fresh bind would fail: the port is taken), its other bind is
  bound anew;
- by address with reuseport = on and two workers: the inherited socket stays
  the one socket both workers share (binding siblings next to it would make
  ours to close a socket whose closing resets its queue), the other bind gets
  a socket per worker; both serve, before and after a reload;
- unclaimed: an inherited socket no listener claims is exit status 2;
- systemd-socket-activate --fdname=web.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402

# Runs in the child: puts the socket on fd 3, sets the variables with its own
# pid (exec keeps it), and becomes ferryd.
WRAPPER = r"""
import os, sys
fd = int(os.environ.pop("OPS_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
name = os.environ.pop("OPS_FDNAME", "")
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
if name:
    os.environ["LISTEN_FDNAMES"] = name
os.execv(sys.argv[1], sys.argv[1:])
"""


def listening_socket():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def spawn_with_socket(ferryd, config, sock, fdname):
    env = opslib.child_env({"OPS_FD": str(sock.fileno()), "OPS_FDNAME": fdname})
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, ferryd, "-c", config],
                            env=env, pass_fds=(sock.fileno(),))
    # Only ferryd holds the socket now: if it dies, clients see it at once.
    sock.close()
    return proc


def control(path, line):
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(path)
        c.sendall(line)
        out = b""
        while True:
            b = c.recv(65536)
            if not b:
                return out.decode()
            out += b


def check_proxies(port, proc, tag):
    payload = (tag + " ").encode() * 2000
    got = opslib.echo_through(port, payload, timeout=15)
    assert proc.poll() is None, f"ferryd exited with {proc.returncode}"
    assert got == payload, f"{tag}: got {len(got)} bytes back, expected {len(payload)}"


def case_named(ferryd, tmp, backend):
    sock = listening_socket()
    inherited = sock.getsockname()[1]
    own = opslib.free_port()
    config = os.path.join(tmp, "named.ini")
    opslib.write_config(config, own, backend.port, os.path.join(tmp, "c1.sock"))
    proc = spawn_with_socket(ferryd, config, sock, "web")
    try:
        check_proxies(inherited, proc, "named")
        assert not opslib.port_accepts(own), \
            f"listener 'web' got its socket by name but also bound its bind 127.0.0.1:{own}"
        # show stats lists the socket that serves, not the bind line.
        stats = json.loads(control(os.path.join(tmp, "c1.sock"), b"show stats json\n"))
        binds = [l["binds"] for l in stats["listeners"] if l["name"] == "web"]
        assert binds == [[f"127.0.0.1:{inherited}"]], f"show stats lists {binds}"
        assert opslib.stop(proc) == 0, f"exit status {proc.returncode} after SIGTERM"
    finally:
        opslib.stop(proc)
    print("ok: named socket 'web' used by [listener web], its bind left alone")


def case_by_address(ferryd, tmp, backend):
    sock = listening_socket()
    inherited = sock.getsockname()[1]
    other = opslib.free_port()
    config = os.path.join(tmp, "addr.ini")
    opslib.write_config(config, inherited, backend.port, os.path.join(tmp, "c2.sock"))
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace(f"bind = 127.0.0.1:{inherited}\n",
                             f"bind = 127.0.0.1:{inherited}\nbind = 127.0.0.1:{other}\n"))
    proc = spawn_with_socket(ferryd, config, sock, "")
    try:
        check_proxies(inherited, proc, "inherited")
        opslib.wait_for(lambda: opslib.port_accepts(other), 10, f"the fresh bind on :{other}")
        check_proxies(other, proc, "fresh")
        assert opslib.stop(proc) == 0, f"exit status {proc.returncode} after SIGTERM"
    finally:
        opslib.stop(proc)
    print("ok: unnamed socket matched by address, the other bind bound anew")


def listening_count(port):
    """Listening TCP sockets on 127.0.0.1:port (/proc/net/tcp, state 0A)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return sum(1 for line in f.readlines()[1:]
                   if line.split()[1] == want and line.split()[3] == "0A")


def case_by_address_reuseport(ferryd, tmp, backend):
    sock = listening_socket()
    inherited = sock.getsockname()[1]
    other = opslib.free_port()
    config = os.path.join(tmp, "addr-rp.ini")
    ctl = os.path.join(tmp, "c5.sock")
    opslib.write_config(config, inherited, backend.port, ctl)
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("workers = 1\n", "workers = 2\nreuseport = on\n").replace(
            f"bind = 127.0.0.1:{inherited}\n",
            f"bind = 127.0.0.1:{inherited}\nbind = 127.0.0.1:{other}\n"))
    proc = spawn_with_socket(ferryd, config, sock, "")
    try:
        check_proxies(inherited, proc, "inherited")
        opslib.wait_for(lambda: opslib.port_accepts(other), 10, f"the fresh bind on :{other}")
        check_proxies(other, proc, "fresh")
        assert listening_count(inherited) == 1, "siblings were bound next to the inherited socket"
        assert listening_count(other) == 2, f"{listening_count(other)} sockets on :{other}"
        assert control(ctl, b"reload\n").startswith("ok"), "reload failed"
        check_proxies(inherited, proc, "inherited after reload")
        check_proxies(other, proc, "fresh after reload")
        assert opslib.stop(proc) == 0, f"exit status {proc.returncode} after SIGTERM"
    finally:
        opslib.stop(proc)
    print("ok: reuseport = on: the inherited socket shared, the fresh bind one per worker")


def case_unclaimed(ferryd, tmp, backend):
    sock = listening_socket()
    own = opslib.free_port()
    config = os.path.join(tmp, "stray.ini")
    opslib.write_config(config, own, backend.port, os.path.join(tmp, "c3.sock"))
    proc = spawn_with_socket(ferryd, config, sock, "stray")
    try:
        status = proc.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("ferryd kept running with an inherited socket no listener claims")
    finally:
        opslib.stop(proc)
    assert status == 2, f"unclaimed inherited socket: exit status {status}, expected 2"
    print("ok: an unclaimed inherited socket is start-up failure 2")


def case_socket_activate(ferryd, tmp, backend, tool):
    inherited = opslib.free_port()
    own = opslib.free_port()
    config = os.path.join(tmp, "sa.ini")
    opslib.write_config(config, own, backend.port, os.path.join(tmp, "c4.sock"))
    cmd = [tool, "-l", f"127.0.0.1:{inherited}", "--fdname=web"]
    # systemd-socket-activate passes on only the variables named with -E.
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS",
                "LD_LIBRARY_PATH", "LD_PRELOAD"):
        if var in os.environ:
            cmd += ["-E", var]
    cmd += [ferryd, "-c", config]
    proc = subprocess.Popen(cmd, env=opslib.child_env())
    try:
        opslib.wait_for(lambda: proc.poll() is not None or opslib.port_accepts(inherited),
                        10, "systemd-socket-activate to listen")
        # The first connection makes it exec ferryd in its place.
        check_proxies(inherited, proc, "socket-activate")
        exe = os.path.realpath(f"/proc/{proc.pid}/exe")
        assert exe == os.path.realpath(ferryd), f"pid {proc.pid} runs {exe}, not ferryd"
        check_proxies(inherited, proc, "again")
        assert not opslib.port_accepts(own), \
            f"listener 'web' got its socket by name but also bound 127.0.0.1:{own}"
        assert opslib.stop(proc) == 0, f"exit status {proc.returncode} after SIGTERM"
    finally:
        opslib.stop(proc)
    print("ok: systemd-socket-activate --fdname=web")


def main():
    ferryd = opslib.ferryd_path()
    backend = opslib.EchoBackend()
    try:
        with opslib.tempdir() as tmp:
            case_named(ferryd, tmp, backend)
            case_by_address(ferryd, tmp, backend)
            case_by_address_reuseport(ferryd, tmp, backend)
            case_unclaimed(ferryd, tmp, backend)
            tool = shutil.which("systemd-socket-activate")
            if tool:
                case_socket_activate(ferryd, tmp, backend, tool)
            else:
                print("note: systemd-socket-activate not installed; the wrapper cases ran")
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
