"""The real ferryd stays inside the SystemCallFilter= of ferryd.service.

The unit allows @system-service minus @privileged and @resources; a call
outside that set fails with EPERM under systemd, which would break ferryd
only in production. So the test runs ferryd -t and then ferryd itself under
strace -f (with a NOTIFY_SOCKET, a watchdog, the control socket and the
metrics endpoint), proxies bytes, asks ferryctl for stats and a reload,
sends SIGHUP and SIGTERM, and checks every system call made against the
filter of the unit, expanded with systemd-analyze syscall-filter.

Environment: FERRYD, FERRYCTL, UNIT_DIR (set by meson). Skips (77) when
strace or systemd-analyze is missing.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402


def expand(analyze, names, cache):
    """Every system call named by `names` (calls and @groups, recursively)."""
    out = set()
    for n in names:
        if not n.startswith("@"):
            out.add(n)
            continue
        if n not in cache:
            p = subprocess.run([analyze, "syscall-filter", "--no-pager", n], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=30)
            assert p.returncode == 0, f"systemd-analyze syscall-filter {n}: {p.stderr}"
            body = [line.split("#")[0] for line in p.stdout.splitlines()[1:]]
            cache[n] = set()
            cache[n] = expand(analyze, " ".join(body).split(), cache)
        out |= cache[n]
    return out


def unit_filter(analyze):
    with open(os.path.join(os.environ["UNIT_DIR"], "ferryd.service")) as f:
        lines = re.findall(r"^SystemCallFilter=(.*)$", f.read(), re.M)
    assert lines, "ferryd.service has no SystemCallFilter="
    cache = {}
    allowed, denied = set(), set()
    for line in lines:
        if line.startswith("~"):
            denied |= expand(analyze, line[1:].split(), cache)
        else:
            allowed |= expand(analyze, line.split(), cache)
    return allowed - denied, denied


def traced_calls(path):
    calls = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^\d+\s+([a-z_0-9]+)\(", line)
            if m:
                calls.add(m.group(1))
    return calls


def strace_env(extra):
    env = opslib.child_env(extra)
    # LeakSanitizer cannot run under ptrace; the other tests check leaks.
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    return env


def pid_running(argv, timeout=10):
    """The pid of the process whose command line is exactly argv (strace
    runs ferryd in a grandchild, not in its first child)."""
    want = "\0".join(argv) + "\0"

    def find():
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline") as f:
                        if f.read() == want:
                            return int(d)
                except OSError:
                    pass
        return None
    return opslib.wait_for(find, timeout, "ferryd under strace")


def exercise(tmp, strace, ferryd, ferryctl, backend):
    port = opslib.free_port()
    ctl = os.path.join(tmp, "ctl.sock")
    config = os.path.join(tmp, "ferry.ini")
    opslib.write_config(config, port, backend.port, ctl,
                        extra=f"metrics = 127.0.0.1:{opslib.free_port()}\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(tmp, "notify"))
    notify.settimeout(0.2)
    # Read the notifications as systemd does: a full queue would block ferryd.
    draining = [True]

    def drain():
        while draining[0]:
            try:
                notify.recv(4096)
            except socket.timeout:
                pass
            except OSError:
                return
    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    env = strace_env({"NOTIFY_SOCKET": os.path.join(tmp, "notify"), "WATCHDOG_USEC": "200000"})

    check = subprocess.run([strace, "-f", "-qq", "-o", os.path.join(tmp, "check.trace"),
                            ferryd, "-t", "-c", config], env=env, timeout=60)
    assert check.returncode == 0, f"ferryd -t exited {check.returncode}"

    proc = subprocess.Popen([strace, "-f", "-qq", "-o", os.path.join(tmp, "run.trace"),
                             ferryd, "-c", config], env=env)
    try:
        pid = pid_running([ferryd, "-c", config])
        opslib.wait_for(lambda: opslib.port_accepts(port), 15, f"ferryd on :{port}")
        payload = os.urandom(300000)
        assert opslib.echo_through(port, payload) == payload, "bytes differ through ferryd"
        if ferryctl:
            for cmd in (["stats"], ["--json", "conns"], ["metrics"], ["reload"]):
                p = subprocess.run([ferryctl, "-s", ctl] + cmd, stdout=subprocess.DEVNULL,
                                   timeout=30)
                assert p.returncode == 0, f"ferryctl {' '.join(cmd)} exited {p.returncode}"
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        assert opslib.echo_through(port, b"after reload") == b"after reload"
        os.kill(pid, signal.SIGTERM)
        status = proc.wait(30)
        assert status == 0, f"ferryd under strace exited {status}"
    finally:
        if proc.poll() is None:
            try:
                os.kill(pid_running([ferryd, "-c", config], 1), signal.SIGKILL)
            except (AssertionError, OSError):
                pass
        opslib.stop(proc)
        draining[0] = False
        drainer.join(2)
        notify.close()
    return traced_calls(os.path.join(tmp, "check.trace")), \
        traced_calls(os.path.join(tmp, "run.trace"))


def main():
    ferryd = opslib.ferryd_path()
    strace = shutil.which("strace")
    analyze = shutil.which("systemd-analyze")
    if not strace or not analyze:
        opslib.skip("strace or systemd-analyze is not installed")
    if subprocess.run([strace, "-o", "/dev/null", "true"]).returncode != 0:
        opslib.skip("strace cannot trace here (ptrace not permitted)")
    ferryctl = os.environ.get("FERRYCTL")
    allowed, denied = unit_filter(analyze)
    backend = opslib.EchoBackend()
    try:
        with opslib.tempdir() as tmp:
            check_calls, run_calls = exercise(tmp, strace, ferryd, ferryctl, backend)
    except (AssertionError, subprocess.TimeoutExpired) as e:
        opslib.fail(str(e))
    finally:
        backend.close()
    bad = []
    for what, calls in (("ferryd -t", check_calls), ("ferryd", run_calls)):
        print(f"{what}: {len(calls)} system calls: {' '.join(sorted(calls))}")
        for c in sorted(calls - allowed):
            bad.append(f"{what} calls {c}(), "
                       + ("which the unit denies" if c in denied else "outside @system-service"))
    if bad:
        opslib.fail("\n  ".join(["the unit's SystemCallFilter= would refuse:"] + bad))
    print("ok: every system call ferryd made is allowed by ferryd.service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
