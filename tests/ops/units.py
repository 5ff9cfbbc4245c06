"""Checks of the systemd files as configured in the build directory.

usage: units.py verify|security|sysusers

verify    systemd-analyze verify on ferryd.service and ferryd.socket. It
          checks every directive, that every Exec*= command is an executable
          and that every man: page of Documentation= exists. The configured
          units point at the installed paths (prefix/sbin/ferryd), which need
          not exist yet, so the test verifies copies in a temporary directory
          where that path is replaced by the ferryd just built, with MANPATH
          set to the man pages just built. Any message at all is a failure.
security  systemd-analyze security --offline=true on the service: the
          overall exposure must stay at or below MAX_EXPOSURE.
sysusers  systemd-sysusers --root=TMP on ferry.conf creates the user and
          group "ferry" in TMP/etc/passwd and TMP/etc/group.

Environment (set by tests/ops/meson.build): UNIT_DIR (the build directory's
systemd/), MAN_DIR (the build directory's man/), SYSUSERS (the source file),
SBINDIR (the installed sbindir), FERRYD (the built ferryd, for verify).
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

MAX_EXPOSURE = 2.5
UNITS = ("ferryd.service", "ferryd.socket")


def env(name):
    v = os.environ.get(name)
    if not v:
        opslib.fail(f"{name} is not set; run through meson test")
    return v


def tool(name):
    path = shutil.which(name)
    if not path:
        opslib.skip(f"{name} is not installed (scripts/deps.sh test installs systemd)")
    return path


def run(cmd, **kw):
    print("$", " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60, **kw)
    print(p.stdout, end="")
    return p


def man_tree(tmp):
    """A MANPATH directory holding the built pages under man5/ and man8/."""
    root = os.path.join(tmp, "man")
    for page in sorted(os.listdir(env("MAN_DIR"))):
        m = re.fullmatch(r".+\.([1-9])", page)
        if m:
            os.makedirs(os.path.join(root, "man" + m.group(1)), exist_ok=True)
            shutil.copy(os.path.join(env("MAN_DIR"), page),
                        os.path.join(root, "man" + m.group(1), page))
    return root


def verify():
    analyze = tool("systemd-analyze")
    if not shutil.which("man"):
        opslib.skip("man is not installed: Documentation=man: cannot be checked")
    ferryd = opslib.ferryd_path()
    installed = os.path.join(env("SBINDIR"), "ferryd")
    with tempfile.TemporaryDirectory(prefix="ferry-units-") as tmp:
        for unit in UNITS:
            with open(os.path.join(env("UNIT_DIR"), unit)) as f:
                text = f.read()
            if unit.endswith(".service"):
                assert installed in text, f"{unit} does not run {installed}"
                text = text.replace(installed, ferryd)
                ctl = os.path.join(env("BINDIR"), "ferryctl")
                assert f"ExecReload={ctl} " in text, f"{unit} does not reload with {ctl}"
                # The directories the documented paths need (state_file in
                # /var/lib/ferry, log files in /var/log/ferry), made by systemd.
                for d in ("RuntimeDirectory=ferry", "StateDirectory=ferry",
                          "LogsDirectory=ferry"):
                    assert re.search("^" + d + "$", text, re.M), f"{unit}: no {d}"
                text = text.replace(ctl, opslib.ferryctl_path())
            left = re.search(r"@[A-Z_]+@", text)
            assert not left, f"{unit}: {left.group(0)} was left unsubstituted"
            with open(os.path.join(tmp, unit), "w") as f:
                f.write(text)
        envv = dict(os.environ, MANPATH=man_tree(tmp), SYSTEMD_LOG_LEVEL="info")
        p = run([analyze, "verify"] + ["./" + u for u in UNITS], cwd=tmp, env=envv)
        assert p.returncode == 0, f"systemd-analyze verify failed ({p.returncode})"
        assert p.stdout.strip() == "", "systemd-analyze verify printed messages"
    print("ok: systemd-analyze verify is silent on both units")


def security():
    analyze = tool("systemd-analyze")
    with tempfile.TemporaryDirectory(prefix="ferry-units-") as tmp:
        shutil.copy(os.path.join(env("UNIT_DIR"), "ferryd.service"), tmp)
        p = run([analyze, "security", "--offline=true", "--no-pager", "./ferryd.service"],
                cwd=tmp, env=dict(os.environ, SYSTEMD_COLORS="0"))
        m = re.search(r"Overall exposure level for ferryd\.service:\s*([0-9.]+)", p.stdout)
        assert m, "no overall exposure level in the output"
        score = float(m.group(1))
        assert score <= MAX_EXPOSURE, f"exposure {score} is above {MAX_EXPOSURE}"
    print(f"ok: exposure level {score} <= {MAX_EXPOSURE}")


def sysusers():
    tool_path = tool("systemd-sysusers")
    with tempfile.TemporaryDirectory(prefix="ferry-sysusers-") as root:
        os.makedirs(os.path.join(root, "etc"))
        p = run([tool_path, "--root=" + root, env("SYSUSERS")])
        assert p.returncode == 0, f"systemd-sysusers failed ({p.returncode})"
        with open(os.path.join(root, "etc", "passwd")) as f:
            users = {line.split(":")[0]: line.rstrip("\n").split(":") for line in f}
        with open(os.path.join(root, "etc", "group")) as f:
            groups = {line.split(":")[0]: line.rstrip("\n").split(":") for line in f}
        assert "ferry" in users, "no user ferry created"
        assert "ferry" in groups, "no group ferry created"
        u = users["ferry"]
        assert u[3] == groups["ferry"][2], "user ferry's primary group is not ferry"
        assert int(u[2]) < 1000, f"ferry got uid {u[2]}, not a system uid"
        assert u[6] in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"), \
            f"ferry may log in: shell {u[6]}"
    print(f"ok: sysusers creates system user ferry (uid {u[2]}, shell {u[6]})")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    checks = {"verify": verify, "security": security, "sysusers": sysusers}
    if what not in checks:
        opslib.fail(f"usage: {sys.argv[0]} {'|'.join(checks)}")
    try:
        checks[what]()
    except (AssertionError, subprocess.TimeoutExpired) as e:
        opslib.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
