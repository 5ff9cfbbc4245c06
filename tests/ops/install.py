"""`meson install --destdir` puts everything where a distribution package would.

Runs `meson install -C BUILD_ROOT --destdir TMP --no-rebuild` and checks the
tree: ferryd in sbindir, ferryctl in bindir, the units in the systemd unit
directory, ferry.conf in sysusers.d, the example configuration in
SYSCONFDIR/ferry and in the documentation examples, the three man pages,
no @VARIABLE@ left in any text file, no file outside the expected
directories, and an installed ferryd.service whose commands run the
installed ferryd on SYSCONFDIR/ferry/ferry.ini, and the installed example
configuration passes the installed `ferryd -t`. With prefix /usr (as a
Debian build uses) the exact Debian paths are checked too.

Environment (set by tests/ops/meson.build): BUILD_ROOT, PREFIX, BINDIR,
SBINDIR, SYSCONFDIR, DATADIR, MANDIR, UNITDIR, SYSUSERSDIR (absolute, as
configured), HAVE_DAEMON (1 when ferryd and ferryctl are build targets).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402

VARS = ("BUILD_ROOT", "PREFIX", "BINDIR", "SBINDIR", "SYSCONFDIR", "DATADIR", "MANDIR",
        "UNITDIR", "SYSUSERSDIR")


def env():
    e = {}
    for v in VARS:
        if not os.environ.get(v):
            opslib.fail(f"{v} is not set; run through meson test")
        e[v] = os.environ[v]
    e["HAVE_DAEMON"] = os.environ.get("HAVE_DAEMON") == "1"
    return e


def expected(e):
    files = {
        e["UNITDIR"] + "/ferryd.service": 0o644,
        e["UNITDIR"] + "/ferryd.socket": 0o644,
        e["SYSUSERSDIR"] + "/ferry.conf": 0o644,
        e["SYSCONFDIR"] + "/ferry/ferry.ini.example": 0o644,
        e["DATADIR"] + "/doc/ferry/examples/ferry.ini.example": 0o644,
        e["MANDIR"] + "/man8/ferryd.8": 0o644,
        e["MANDIR"] + "/man8/ferryctl.8": 0o644,
        e["MANDIR"] + "/man5/ferry.ini.5": 0o644,
    }
    if e["HAVE_DAEMON"]:
        files[e["SBINDIR"] + "/ferryd"] = 0o755
        files[e["BINDIR"] + "/ferryctl"] = 0o755
    return files


def debian_layout(e):
    """With prefix /usr, the places a Debian package uses."""
    want = {"SBINDIR": ["/usr/sbin"], "BINDIR": ["/usr/bin"], "SYSCONFDIR": ["/etc"],
            "MANDIR": ["/usr/share/man"], "DATADIR": ["/usr/share"],
            "UNITDIR": ["/usr/lib/systemd/system", "/lib/systemd/system"],
            "SYSUSERSDIR": ["/usr/lib/sysusers.d"]}
    for var, places in want.items():
        assert e[var] in places, f"prefix /usr: {var} is {e[var]}, Debian uses {places[0]}"
    print("ok: prefix /usr gives the Debian paths")


def check_service(e, root):
    path = root + e["UNITDIR"] + "/ferryd.service"
    with open(path) as f:
        unit = f.read()
    config = e["SYSCONFDIR"] + "/ferry/ferry.ini"
    cmds = re.findall(r"^(ExecStart|ExecStartPre|ExecReload)=(\S+)(.*)$", unit, re.M)
    assert cmds, "no Exec lines in ferryd.service"
    ferryd = e["SBINDIR"] + "/ferryd"
    ferryctl = e["BINDIR"] + "/ferryctl"
    for key, exe, args in cmds:
        if key == "ExecReload":
            # Waits for the reload's outcome through the control socket.
            assert exe == ferryctl, f"{key}= runs {exe}, not {ferryctl}"
            assert args.split()[-1] == "reload", f"{key}= does not ask for a reload"
        else:
            assert exe == ferryd, f"{key}= runs {exe}, not {ferryd}"
            assert f"-c {config}" in args, f"{key}= does not use {config}"
        if e["HAVE_DAEMON"]:
            assert os.access(root + exe, os.X_OK), f"{key}= command {exe} is not installed"
    print("ok: ferryd.service runs the installed ferryd on " + config + " and reloads with ferryctl")


def check_example(e, root):
    """The example configuration passes `ferryd -t` as installed (issue 8)."""
    example = root + e["SYSCONFDIR"] + "/ferry/ferry.ini.example"
    p = subprocess.run([root + e["SBINDIR"] + "/ferryd", "-t", "-c", example], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == f"{example}: configuration is valid", \
        f"ferryd -t on the installed example exited {p.returncode}:\n{p.stdout}"
    print("ok: the installed ferry.ini.example passes ferryd -t")


def walk(root):
    for d, _, names in os.walk(root):
        for n in names:
            yield os.path.join(d, n)


def main():
    e = env()
    meson = shutil.which("meson")
    if not meson:
        opslib.fail("meson is not in PATH")
    with tempfile.TemporaryDirectory(prefix="ferry-install-") as root:
        p = subprocess.run([meson, "install", "-C", e["BUILD_ROOT"], "--destdir", root,
                            "--no-rebuild"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        if p.returncode != 0:
            print(p.stdout)
            opslib.fail(f"meson install exited {p.returncode}")
        try:
            for path, mode in expected(e).items():
                full = root + path
                assert os.path.isfile(full), f"{path} is not installed"
                got = os.stat(full).st_mode & 0o777
                # The exact bits follow the umask; what matters is x or not x.
                assert got & 0o400, f"{path} is not readable (mode {got:o})"
                assert bool(got & 0o100) == bool(mode & 0o100), \
                    f"{path} has mode {got:o}, expected {mode:o}"
                print(f"ok: {path} ({got:o})")
            # Nothing lands outside the directories a package owns.
            roots = [e["PREFIX"], e["SYSCONFDIR"], e["UNITDIR"], e["SYSUSERSDIR"]]
            for full in walk(root):
                rel = full[len(root):]
                assert any(rel.startswith(r.rstrip("/") + "/") for r in roots), \
                    f"{rel} is outside {roots}"
                if full.endswith((".service", ".socket", ".conf", ".5", ".8", ".example")):
                    with open(full, errors="replace") as f:
                        left = re.findall(r"@[A-Z_]+@", f.read())
                    assert not left, f"{rel}: unsubstituted {left}"
            check_service(e, root)
            if e["HAVE_DAEMON"]:
                check_example(e, root)
            if e["PREFIX"] == "/usr":
                debian_layout(e)
            else:
                print(f"note: prefix {e['PREFIX']}; configure with --prefix=/usr "
                      "for the Debian paths")
        except AssertionError as err:
            print("installed:\n  " + "\n  ".join(sorted(f[len(root):] for f in walk(root))))
            opslib.fail(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
