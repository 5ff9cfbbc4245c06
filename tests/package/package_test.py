#!/usr/bin/env python3
"""The Debian package, built and exercised end to end (never on this machine):

1. build: a copy of the source tree (so the repository stays clean:
   dpkg-buildpackage writes ../*.deb) is built with `dpkg-buildpackage -b
   -us -uc`;
2. contents: `dpkg-deb -c` lists the binaries, units, sysusers/tmpfiles
   entries, man pages, bash completion, logrotate file, every contrib/ file
   under /usr/share/doc/ferry/examples/, and the conffile /etc/ferry/ferry.ini
   (the safe example, byte for byte);
3. flags: `hardening-check` passes on ferryd and ferryctl;
4. lintian: no error (warnings are printed);
5. lifecycle, in a throwaway Debian 12 root (tests/package/rootfs.sh, a
   debootstrap made once and cached) entered with chroot: install (the user,
   the directories, the unit enabled, the conffile passing `ferryd -t`),
   a ferryd running there upgraded in place by the package upgrade (its pid
   changes, an open connection keeps working, no connection attempt is
   refused meanwhile), remove (ferryd stopped, the conffile kept), purge
   (/etc/ferry, /var/lib/ferry and /var/log/ferry gone).

Usage: tests/package/package_test.py [--keep] [--results FILE]   (as root: chroot, mount)
Prints "N passed, N failed" at the end; --results writes "ok NAME"/"FAIL NAME"
lines (scripts/summary.py reads them).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from ferrytest import free_port, wait_for  # noqa: E402

results = {"passed": 0, "failed": 0, "lines": []}


def run(cmd, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-6000:]}")
    return p


def step(name, fn, *a):
    t0 = time.monotonic()
    try:
        out = fn(*a)
    except Exception as e:  # one failed step fails the run, the next ones still report
        results["failed"] += 1
        results["lines"].append("FAIL package: " + name)
        print(f"FAIL {name}: {e}", flush=True)
        return None
    results["passed"] += 1
    results["lines"].append("ok package: " + name)
    print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)
    return out


# ---- 1. build ----

def build(work):
    files = run(["git", "-C", SRC, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    tree = os.path.join(work, "ferry")
    os.mkdir(tree)
    for rel in filter(None, files.split("\0")):
        src = os.path.join(SRC, rel)
        if not os.path.lexists(src):  # deleted in the work tree, not yet committed
            continue
        dst = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    log = os.path.join(work, "build.log")
    with open(log, "w") as f:
        p = subprocess.run(["nice", "dpkg-buildpackage", "-b", "-us", "-uc"], cwd=tree,
                           stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        with open(log) as f:
            raise AssertionError(f"dpkg-buildpackage exited {p.returncode}:\n{f.read()[-6000:]}")
    version = run(["dpkg-parsechangelog", "-l", os.path.join(tree, "debian", "changelog"),
                   "-S", "Version"]).stdout.strip()
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = os.path.join(work, f"ferry_{version}_{arch}.deb")
    assert os.path.isfile(deb), f"{deb} not built: {os.listdir(work)}"
    changes = os.path.join(work, f"ferry_{version}_{arch}.changes")
    return deb, changes, version


# ---- 2. contents ----

def contents(deb):
    listing = run(["dpkg-deb", "-c", deb]).stdout
    paths = {line.split()[5].lstrip(".") for line in listing.splitlines() if line.strip()}
    modes = {line.split()[5].lstrip("."): line.split()[0] for line in listing.splitlines()
             if line.strip()}
    want = ["/usr/sbin/ferryd", "/usr/bin/ferryctl",
            "/lib/systemd/system/ferryd.service", "/lib/systemd/system/ferryd.socket",
            "/usr/lib/sysusers.d/ferry.conf", "/usr/lib/tmpfiles.d/ferry.conf",
            "/usr/share/man/man8/ferryd.8.gz", "/usr/share/man/man8/ferryctl.8.gz",
            "/usr/share/man/man5/ferry.ini.5.gz", "/etc/ferry/ferry.ini",
            "/usr/share/bash-completion/completions/ferryctl", "/etc/logrotate.d/ferry",
            "/usr/share/doc/ferry/copyright", "/usr/share/doc/ferry/changelog.gz"]
    contrib = os.path.join(SRC, "contrib")
    for d, _, names in os.walk(contrib):
        for n in names:
            rel = os.path.relpath(os.path.join(d, n), contrib)
            want.append("/usr/share/doc/ferry/examples/" + rel)
    missing = [w for w in want if w not in paths and w + ".gz" not in paths]
    assert not missing, "not in the package: " + ", ".join(missing)
    for exe in ("/usr/sbin/ferryd", "/usr/bin/ferryctl"):
        assert modes[exe] == "-rwxr-xr-x", f"{exe} has mode {modes[exe]}"
    assert "/etc/ferry/ferry.ini.example" not in paths, "the example is shipped beside the conffile"
    assert not [p for p in paths if "asynccore" in p], "asynccore's library is in ferry's package"
    # asynccore, the library: its own packages (shared library; development files).
    d = os.path.dirname(deb)
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    version = os.path.basename(deb).split("_")[1]
    for pkg, files in (("libasynccore0", [f"/usr/lib/{multiarch}/libasynccore.so.0"]),
                       ("libasynccore-dev", [f"/usr/lib/{multiarch}/libasynccore.so",
                                             f"/usr/lib/{multiarch}/libasynccore.a",
                                             f"/usr/lib/{multiarch}/pkgconfig/asynccore.pc",
                                             "/usr/include/asynccore/runtime.h"])):
        lib = os.path.join(d, f"{pkg}_{version}_{arch}.deb")
        assert os.path.isfile(lib), f"{pkg} not built"
        got = {line.split()[5].lstrip(".") for line in run(["dpkg-deb", "-c", lib]).stdout.splitlines()
               if line.strip()}
        missing = [f for f in files if f not in got]
        assert not missing, f"not in {pkg}: {missing}"
    conffiles = run(["dpkg-deb", "-I", deb, "conffiles"]).stdout.split()
    for c in ("/etc/ferry/ferry.ini", "/etc/logrotate.d/ferry"):
        assert c in conffiles, f"{c} is not a conffile: {conffiles}"
    with tempfile.TemporaryDirectory() as x:
        run(["dpkg-deb", "-x", deb, x])
        with open(os.path.join(x, "etc/ferry/ferry.ini"), "rb") as f, \
                open(os.path.join(SRC, "config/ferry.ini.example"), "rb") as g:
            assert f.read() == g.read(), "/etc/ferry/ferry.ini is not config/ferry.ini.example"
    return len(paths)


# ---- 3. hardening ----

def hardening(deb, work):
    x = os.path.join(work, "extract")
    run(["dpkg-deb", "-x", deb, x])
    out = []
    for exe in ("usr/sbin/ferryd", "usr/bin/ferryctl"):
        # Control-flow protection is checked apart: hardening-check wants the
        # IBT/SHSTK property note, which the linker drops because Debian 12's
        # C start files (crt1.o) lack it (no program there has it, /usr/bin/ls
        # neither); the code itself is compiled with -fcf-protection, seen as
        # its endbr64 landing pads.
        p = run(["hardening-check", "--nocfprotection", os.path.join(x, exe)], check=False)
        out.append(p.stdout)
        assert p.returncode == 0, "hardening-check failed:\n" + p.stdout
        dis = run(["objdump", "-d", "--no-show-raw-insn", os.path.join(x, exe)]).stdout
        assert dis.count("endbr64") > 5, f"{exe}: no endbr64: not built with -fcf-protection"
    print("".join(out).rstrip())


# ---- 4. lintian ----

def lintian(changes):
    p = run(["lintian", "--fail-on", "error", "--display-info", changes], check=False)
    print(p.stdout.rstrip() or "lintian: nothing to report")
    errors = [line for line in p.stdout.splitlines() if line.startswith("E:")]
    assert p.returncode == 0 and not errors, f"lintian exited {p.returncode}: {errors}"


# ---- 5. install, upgrade in place, remove, purge in a throwaway root ----

class Root:
    def __init__(self, work):
        tarball = run([os.path.join(HERE, "rootfs.sh")]).stdout.strip().splitlines()[-1]
        self.path = os.path.join(work, "root")
        os.mkdir(self.path)
        run(["tar", "-C", self.path, "-xf", tarball])
        self.mounts = []
        for kind, src, dst in (("proc", "proc", "proc"), ("bind", "/dev", "dev")):
            target = os.path.join(self.path, dst)
            os.makedirs(target, exist_ok=True)
            if kind == "proc":
                run(["mount", "-t", "proc", "proc", target])
            else:
                run(["mount", "--bind", src, target])
            self.mounts.append(target)
        os.makedirs(os.path.join(self.path, "run"), exist_ok=True)

    def sh(self, script, check=True):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LC_ALL": "C"}
        return run(["chroot", self.path, "/bin/sh", "-ec", script], check=check, env=env)

    def file(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def close(self):
        for m in reversed(self.mounts):
            run(["umount", "-l", m], check=False)


class Echo:
    """An echo server on the host (the chroot shares the network)."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", free_port()))
        self.srv.listen(128)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            while True:
                try:
                    b = c.recv(65536)
                except OSError:
                    return
                if not b:
                    return
                c.sendall(b)


def roundtrip(s, payload):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        b = s.recv(65536)
        assert b, "connection closed by ferryd"
        got += b
    assert got == payload, "echo mismatch"


def ferryd_pid(root):
    p = root.sh("ferryctl -s /run/ferry/ferry.sock info", check=False)
    m = re.search(r"^pid: (\d+)$", p.stdout, re.M)
    return int(m.group(1)) if m else None


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return not re.search(r"^State:\s*Z", f.read(), re.M)
    except FileNotFoundError:
        return False


def lifecycle(deb, version, work):
    upgrade_deb = repack(deb, version + "+1", work)
    root = Root(work)
    procs = []
    try:
        shutil.copy(deb, root.file("/tmp/ferry-old.deb"))
        shutil.copy(upgrade_deb, root.file("/tmp/ferry-new.deb"))
        lifecycle_steps(root, procs)
    finally:
        for pid in [p.pid for p in procs] + [getattr(root, "daemon_pid", 0)]:
            if pid and alive(pid):
                os.kill(pid, 9)
        for p in procs:
            p.wait()
        root.close()


def repack(deb, version, work):
    """The same package under a higher version: what an upgrade installs."""
    d = os.path.join(work, "repack")
    run(["dpkg-deb", "-R", deb, d])
    ctl = os.path.join(d, "DEBIAN", "control")
    with open(ctl) as f:
        text = f.read()
    with open(ctl, "w") as f:
        f.write(re.sub(r"^Version: .*$", "Version: " + version, text, flags=re.M))
    out = os.path.join(work, f"ferry_{version}.deb")
    run(["dpkg-deb", "-Zgzip", "-b", d, out])
    return out


def lifecycle_steps(root, procs):
    # Install.
    out = root.sh("dpkg -i /tmp/ferry-old.deb").stdout
    root.sh("getent passwd ferry && getent group ferry")
    for d in ("/var/lib/ferry", "/var/log/ferry"):
        st = os.stat(root.file(d))
        owner = root.sh(f"stat -c %U:%G:%a {d}").stdout.strip()
        assert owner == "ferry:ferry:750", f"{d} is {owner} (st_mode {st.st_mode:o})"
    assert os.path.islink(root.file("/etc/systemd/system/multi-user.target.wants/ferryd.service")), \
        "ferryd.service is not enabled on install:\n" + out
    assert not os.path.lexists(root.file("/etc/systemd/system/sockets.target.wants/ferryd.socket")), \
        "ferryd.socket (port 80) is enabled on install"
    t = root.sh("ferryd -t -c /etc/ferry/ferry.ini").stdout
    assert "/etc/ferry/ferry.ini: configuration is valid" in t, t
    root.sh("logrotate -d /etc/logrotate.d/ferry")
    print("  installed: user and group ferry, /var/lib/ferry and /var/log/ferry, unit enabled, "
          "conffile valid, logrotate file parses")

    # A ferryd running there, on ports of ours (a copy of the conffile).
    echo = Echo()
    port = free_port()
    with open(root.file("/etc/ferry/ferry.ini")) as f:
        ini = f.read()
    ini = ini.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("127.0.0.1:8081",
                                                                     f"127.0.0.1:{echo.port}")
    ini = ini.replace("[global]\n", "[global]\ndrain_timeout = 10s\n", 1)
    with open(root.file("/etc/ferry/test.ini"), "w") as f:
        f.write(ini)
    log = open(os.path.join(os.path.dirname(root.path), "ferryd.log"), "w")
    p = subprocess.Popen(["chroot", root.path, "/usr/sbin/ferryd", "-c", "/etc/ferry/test.ini"],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    wait_for(lambda: ferryd_pid(root) is not None, timeout=20, what="ferryd answering in the root")
    old = ferryd_pid(root)
    root.daemon_pid = old
    kept = socket.create_connection(("127.0.0.1", port), timeout=10)
    roundtrip(kept, b"before the upgrade\n")

    # Upgrade the package while clients keep connecting.
    refused, served, stop = [], [0], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                    roundtrip(c, b"ping\n")
                    served[0] += 1
            except (OSError, AssertionError) as e:
                refused.append(repr(e))
            time.sleep(0.01)
    th = threading.Thread(target=hammer)
    th.start()
    try:
        out = root.sh("dpkg -i /tmp/ferry-new.deb").stdout
    finally:
        time.sleep(0.3)
        stop.set()
        th.join()
    installed = root.sh("dpkg-query -W -f '${Version}' ferry").stdout
    assert installed.endswith("+1"), f"upgrade left version {installed}"
    new = ferryd_pid(root)
    assert new and new != old, f"ferryd was not upgraded in place (pid {old} -> {new}):\n{out}"
    root.daemon_pid = new
    roundtrip(kept, b"after the upgrade, same connection\n")
    assert not refused, f"{len(refused)} connection attempts failed during the upgrade: " \
        f"{refused[:3]}\n{out}"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        roundtrip(c, b"a new connection\n")
    kept.close()
    wait_for(lambda: not alive(old), timeout=20, what="the old ferryd exiting after its drain")
    print(f"  upgraded in place: pid {old} -> {new}, {served[0]} connections served "
          "during the upgrade, none refused, the open one kept")

    # Remove: ferryd stopped, the conffile kept.
    running = root.daemon_pid
    root.sh("dpkg -r ferry")
    wait_for(lambda: not alive(running), timeout=5, what="ferryd stopped on remove")
    assert not os.path.exists(root.file("/usr/sbin/ferryd")), "ferryd left after remove"
    assert os.path.exists(root.file("/etc/ferry/ferry.ini")), "conffile gone on remove"
    print("  removed: ferryd stopped, /etc/ferry/ferry.ini kept")

    # Purge: configuration, state and logs gone.
    with open(root.file("/var/lib/ferry/state"), "w") as f:
        f.write("left by ferryd\n")
    root.sh("dpkg -P ferry")
    for d in ("/etc/ferry", "/var/lib/ferry", "/var/log/ferry"):
        assert not os.path.lexists(root.file(d)), f"{d} left after purge"
    st = root.sh("dpkg-query -W -f '${db:Status-Status}' ferry 2>&1 || true").stdout
    assert "installed" not in st or "not-installed" in st, st
    print("  purged: /etc/ferry, /var/lib/ferry and /var/log/ferry removed")


def main():
    if os.geteuid() != 0:
        print("package test: needs root (chroot, mount); skipped")
        return 77
    keep = "--keep" in sys.argv
    work = tempfile.mkdtemp(prefix="ferry-pkg-")
    try:
        built = step("build: dpkg-buildpackage -b -us -uc", build, work)
        if built:
            deb, changes, version = built
            step("contents: dpkg-deb -c and conffiles", contents, deb)
            step("flags: hardening-check ferryd ferryctl", hardening, deb, work)
            step("lintian: no error", lintian, changes)
            step("lifecycle: install, upgrade in place, remove, purge in a Debian 12 root",
                 lifecycle, deb, version, work)
    finally:
        with open("/proc/mounts") as f:
            mounted = [m for m in (line.split()[1] for line in f) if m.startswith(work)]
        if keep or results["failed"] or mounted:
            print(f"work directory kept: {work}" + (f" (still mounted: {mounted})" if mounted else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
    if "--results" in sys.argv:
        with open(sys.argv[sys.argv.index("--results") + 1], "w") as f:
            f.write("".join(line + "\n" for line in results["lines"]))
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
