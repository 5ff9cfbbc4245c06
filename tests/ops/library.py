"""asynccore as an installed library, used from outside the source tree.

`meson install --destdir TMP` must put libasynccore.so.N (its SONAME
libasynccore.so.N, per `readelf -d`), the libasynccore.so link,
libasynccore.a, asynccore.pc and exactly the public headers
(asynccore/include/asynccore/*.h) under include/asynccore/. Each header must
compile on its own (strict C11, -pedantic, -Werror) and twice in a row;
the shared library exports the ac_ API and no internal (ac__) symbol.

Then the examples (examples/*.c with common.h) are copied to a temporary
directory and built there with
    cc -Wall -Wextra -Werror PROG.c $(pkg-config --cflags --libs asynccore)
(PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR pointing into TMP), the echo
server a second time against libasynccore.a alone, and run on loopback:
client -> proxy -> echo (dynamic) and client -> static echo, with random
payloads through a file and through a pipe, compared byte for byte; the
client's idle and connect timeouts end it with status 3; SIGTERM stops the
servers with status 0 (under ASan with leak detection, as configured).

Environment (tests/ops/meson.build): BUILD_ROOT, SOURCE_ROOT, LIBDIR,
INCLUDEDIR (absolute, as configured), SANITIZE (meson's b_sanitize).
"""
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402

EXAMPLES = ("echo", "client", "proxy")
TIMED_OUT = 3


def env():
    e = {}
    for v in ("BUILD_ROOT", "SOURCE_ROOT", "LIBDIR", "INCLUDEDIR", "SANITIZE"):
        if v not in os.environ:
            opslib.fail(f"{v} is not set; run through meson test")
        e[v] = os.environ[v]
    return e


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=kw.pop("timeout", 120), **kw)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}"
    return p.stdout


def check_tree(e, root):
    libdir = root + e["LIBDIR"]
    real = [p for p in glob.glob(libdir + "/libasynccore.so.*") if not os.path.islink(p)]
    assert len(real) == 1, f"one libasynccore.so.X.Y.Z expected in {e['LIBDIR']}: {real}"
    so = real[0]
    major = re.fullmatch(r"libasynccore\.so\.(\d+)\.\d+\.\d+", os.path.basename(so))
    assert major, f"{so}: not libasynccore.so.MAJOR.MINOR.PATCH"
    soname = f"libasynccore.so.{major.group(1)}"
    dyn = run(["readelf", "-d", so])
    got = re.findall(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", dyn)
    assert got == [soname], f"SONAME of {so} is {got}, expected {soname}"
    assert os.path.realpath(libdir + "/" + soname) == os.path.realpath(so), f"{soname} link"
    assert os.path.realpath(libdir + "/libasynccore.so") == os.path.realpath(so), \
        "libasynccore.so (the link-time name) does not lead to the library"
    # Only the public API is exported: ac_* functions, never the ac__ internals.
    syms = run(["nm", "-D", "--defined-only", so]).split("\n")
    names = [ln.split()[-1].split("@")[0] for ln in syms if ln.strip() and ln.split()[1] != "A"]
    stray = [n for n in names if not n.startswith("ac_") or n.startswith("ac__")]
    assert names and not stray, f"{so} exports more than the ac_ API: {stray[:10]}"
    assert os.path.isfile(libdir + "/libasynccore.a"), "libasynccore.a is not installed"
    assert os.path.isfile(libdir + "/pkgconfig/asynccore.pc"), "asynccore.pc is not installed"
    print(f"ok: {os.path.basename(so)} with SONAME {soname} exporting {len(names)} ac_ symbols "
          "and no internal one, libasynccore.a, asynccore.pc")

    want = sorted(os.path.basename(p) for p in
                  glob.glob(e["SOURCE_ROOT"] + "/asynccore/include/asynccore/*.h"))
    have = sorted(os.listdir(root + e["INCLUDEDIR"] + "/asynccore"))
    assert have == want, f"installed headers {have} differ from the public ones {want}"
    print(f"ok: the {len(want)} public headers and nothing else under include/asynccore/")
    return soname, want


def check_headers(e, root, headers, work):
    inc = root + e["INCLUDEDIR"]
    for h in headers:
        src = os.path.join(work, "hdr.c")
        with open(src, "w") as f:
            f.write(f"#include <asynccore/{h}>\n#include <asynccore/{h}>\nint main(void) {{ return 0; }}\n")
        run(["cc", "-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
             "-I", inc, src])
    print(f"ok: each header compiles alone (strict C11, twice for the guard)")


def build_examples(e, root, soname, work):
    pc_env = dict(os.environ, PKG_CONFIG_PATH=root + e["LIBDIR"] + "/pkgconfig",
                  PKG_CONFIG_SYSROOT_DIR=root)
    flags = run(["pkg-config", "--cflags", "--libs", "asynccore"], env=pc_env).split()
    cflags = run(["pkg-config", "--cflags", "asynccore"], env=pc_env).split()
    # What a static link needs beside the archive (OpenSSL, liburing where
    # the library was built with it), from the .pc file's private part.
    static_libs = [f for f in run(["pkg-config", "--static", "--libs", "asynccore"],
                                  env=pc_env).split() if f != "-lasynccore"]
    # A sanitized library needs its runtime first in the program too.
    san = [f"-fsanitize={e['SANITIZE']}"] if e["SANITIZE"] not in ("", "none") else []
    for name in glob.glob(e["SOURCE_ROOT"] + "/examples/*.[ch]"):
        shutil.copy(name, work)
    exes = {}
    for ex in EXAMPLES:
        exe = os.path.join(work, "ac-" + ex)
        run(["cc", "-Wall", "-Wextra", "-Werror", *san, "-o", exe, ex + ".c", *flags], cwd=work)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", exe]))
        assert soname in needed, f"ac-{ex} does not load {soname}: {needed}"
        exes[ex] = exe
    static = os.path.join(work, "ac-echo-static")
    run(["cc", "-Wall", "-Wextra", "-Werror", *san, "-o", static, "echo.c", *cflags,
         root + e["LIBDIR"] + "/libasynccore.a", *static_libs, "-pthread"], cwd=work)
    needed = run(["readelf", "-d", static])
    assert "libasynccore" not in needed, "the static echo still loads libasynccore.so"
    exes["echo-static"] = static
    print(f"ok: the examples build outside the tree with pkg-config (loading {soname}), "
          "and the echo server against libasynccore.a")
    return exes


class Server:
    """An example server started on port 0; its address read from stderr."""

    def __init__(self, argv, run_env, log):
        self.log = open(log, "w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=run_env)
        self.port = opslib.wait_for(self._port, timeout=30, what=f"{argv[0]} to listen")

    def _port(self):
        assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.text()}"
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.text())
        return int(m.group(1)) if m else None

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        out = self.text()
        self.log.close()
        assert rc == 0, f"SIGTERM: exited {rc}:\n{out}"
        return out


def client(exe, port, payload, run_env, via_pipe, extra=()):
    argv = [exe, *extra, f"127.0.0.1:{port}"]
    if via_pipe:
        p = subprocess.run(argv, input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=run_env, timeout=120)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")
    with tempfile.TemporaryFile() as f:
        f.write(payload)
        f.seek(0)
        p = subprocess.run(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=run_env, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def round_trips(exes, run_env, work):
    echo = Server([exes["echo"], "0", "2"], run_env, os.path.join(work, "echo.log"))
    static = Server([exes["echo-static"], "0"], run_env, os.path.join(work, "static.log"))
    proxy = Server([exes["proxy"], "-w", "2", "127.0.0.1:0", f"127.0.0.1:{echo.port}"],
                   run_env, os.path.join(work, "proxy.log"))
    cases = [("client -> proxy -> echo", proxy.port), ("client -> static echo", static.port),
             ("client -> echo", echo.port)]
    for what, port in cases:
        for size, via_pipe in ((1 << 20, False), (300000, True), (1, True), (0, False)):
            payload = os.urandom(size)
            rc, out, err = client(exes["client"], port, payload, run_env, via_pipe)
            assert rc == 0, f"{what}: client exited {rc}: {err}"
            assert out == payload, \
                f"{what}: {size} bytes via {'pipe' if via_pipe else 'file'} came back as {len(out)}"
        print(f"ok: {what}: 1 MiB, 300000 B, 1 B and 0 B round-trip byte for byte")
    proxy_log = proxy.stop()
    for size in (1 << 20, 300000, 1, 0):
        line = f"closed, {size} bytes up, {size} down"
        assert proxy_log.count(line) == 1, f"{line!r} not logged once:\n{proxy_log}"
    echo.stop()
    static.stop()
    print("ok: the proxy logged each connection; SIGTERM stops the servers with status 0")


def timeouts(exes, run_env):
    # Idle: a server that accepts and never answers, stdin kept open.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        p = subprocess.Popen([exes["client"], "-i", "300", f"127.0.0.1:{port}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=run_env)
        _, err = p.communicate(timeout=60)
        assert p.returncode == TIMED_OUT and "idle on" in err.decode(), \
            f"idle: exited {p.returncode}: {err!r}"
    print("ok: the client gives up after its idle timeout (status 3)")
    # Connect: a listener whose accept queue is full drops further SYNs.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                c = socket.socket()
                c.setblocking(False)
                try:
                    c.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                fillers.append(c)
            time.sleep(0.2)  # the handshakes that can complete have completed
            rc, _, err = client(exes["client"], port, b"", run_env, True, ("-c", "300"))
            assert rc == TIMED_OUT and "connect to" in err, f"connect: exited {rc}: {err}"
        finally:
            for c in fillers:
                c.close()
    print("ok: the client gives up after its connect timeout (status 3)")


def main():
    e = env()
    for tool in ("meson", "cc", "pkg-config", "readelf", "nm"):
        if not shutil.which(tool):
            opslib.skip(f"{tool} is not in PATH")
    with tempfile.TemporaryDirectory(prefix="asynccore-lib-") as tmp:
        root = os.path.join(tmp, "root")
        work = os.path.join(tmp, "work")  # outside the source tree
        os.mkdir(work)
        run(["meson", "install", "-C", e["BUILD_ROOT"], "--destdir", root, "--no-rebuild"])
        soname, headers = check_tree(e, root)
        check_headers(e, root, headers, work)
        exes = build_examples(e, root, soname, work)
        run_env = dict(os.environ, LD_LIBRARY_PATH=root + e["LIBDIR"])
        round_trips(exes, run_env, work)
        timeouts(exes, run_env)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as err:
        opslib.fail(str(err))
