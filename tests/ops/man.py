"""Checks of the manual pages as configured in the build directory.

usage: man.py lint|render|content

lint     mandoc -T lint -W all: no message at any level (style included).
render   man -l renders each page without a warning, with the expected
         sections, and no @VARIABLE@ left unsubstituted.
content  every option, signal, exit status, configuration key, control
         command and log field of the user contract (ferry.ini(5)) appears in the
         page that must document it.

Environment: MAN_DIR, the build directory's man/ (set by meson).
"""
import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402

PAGES = ("ferryd.8", "ferry.ini.5", "ferryctl.8")
SOURCE_MAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "man")

SECTIONS = {
    "ferryd.8": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "SYSTEMD",
                 "EXIT STATUS", "LOGS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"],
    "ferry.ini.5": ["NAME", "SYNOPSIS", "DESCRIPTION", "SYNTAX", "ERRORS", "[global]",
                    "[listener NAME]", "[backend NAME]", "EXAMPLES", "FILES", "SEE ALSO"],
    "ferryctl.8": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "JSON OUTPUT",
                   "EXIT STATUS", "EXAMPLES", "SEE ALSO"],
}

# The keys come from the parser's own tables (config/ferry_config_keys.c:
# global_keys, listener_keys, backend_keys), so a key added there and not
# documented fails here.
KEYS_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config",
                      "ferry_config_keys.c")


def parser_keys(table):
    text = open(KEYS_C, encoding="utf-8").read()
    m = re.search(r"static const struct key_def " + table + r"\[\] = \{(.*?)\n\};", text, re.S)
    if not m:
        sys.exit(f"man.py: no table {table} in {KEYS_C}")
    return re.findall(r'^\s*\{"([a-z_]+)",', m.group(1), re.M)


GLOBAL_KEYS = parser_keys("global_keys")
LISTENER_KEYS = parser_keys("listener_keys")
BACKEND_KEYS = parser_keys("backend_keys")

# Words each rendered page must contain (ferryd(8), ferryd(8) LOGS).
REQUIRED = {
    "ferryd.8": ["-c, --config", "-t, --test", "-V, --version", "-h, --help",
                 "SIGHUP", "SIGTERM", "SIGINT", "Second SIGTERM", "drain_timeout",
                 "READY=1", "RELOADING=1", "MONOTONIC_USEC=", "STOPPING=1", "STATUS=",
                 "WATCHDOG=1", "NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID",
                 "LISTEN_FDNAMES", "FileDescriptorName=", "configuration is valid",
                 "cannot bind 127.0.0.1:80: Permission denied",
                 "level=info msg=conn id=17 listener=web client=127.0.0.1:51234 server=web/app1",
                 "level=info msg=started version=",
                 "duration_ms=1200 connect_ms=1 retries=0 bytes_in=512 bytes_out=20480",
                 "end=closed closed_by=client", "closed_by", "SIGUSR1", "JOURNAL_STREAM",
                 "log_format = json", "log_dropped", "ferry_log_lines_dropped_total",
                 "closed", "idle_timeout", "connect_failed", "no_server", "LogsDirectory=", "rejected", "handshake_failed",
                 "reset", "drained", "/run/ferry/ferry.sock", "ferry.ini(5)", "ferryctl(8)"],
    "ferryctl.8": ["-s, --socket SOCKET", "-j, --json", "help", "info", "stats", "conns", "metrics",
                   "disable BACKEND/SERVER", "enable BACKEND/SERVER", "reload", "error:",
                   "uptime_s", "max_connections", "reloads", "handshake_errors",
                   "connect_errors", '"age_s"', "disabled",
                   "ferry_listener_connections_active", "ferry_listener_connections_total",
                   "ferry_listener_rejected_total", "ferry_listener_bytes_in_total",
                   "ferry_listener_bytes_out_total", "ferry_server_up",
                   "ferry_server_connections_active", "ferry_server_connections_total",
                   "ferry_server_connect_errors_total", "ferry_server_bytes_in_total",
                   "ferry_server_bytes_out_total", "show stats", "4096",
                   "cannot connect to /run/ferry/ferry.sock: No such file or directory"],
    "ferry.ini.5": ["roundrobin", "leastconn", "random", "source", "backup", "weight=",
                    "250ms", "16k", "on, yes, true", "[IPV6]:PORT", "*:PORT", "unix:/path",
                    "*.example.com", "PROXY", "v1", "v2", "FILE:LINE: message",
                    "30s", "10000", "0660", "5m", "10s", "5s", "2s"],
}


def render(page):
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="0")
    p = subprocess.run(["man", "--warnings=all", "-l", "-P", "cat", page],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60, env=env)
    # Undo any overstriking and join words hyphenated across lines.
    text = re.sub(r".\x08", "", p.stdout)
    return p.returncode, text, p.stderr


def lint():
    mandoc = shutil.which("mandoc")
    if not mandoc:
        opslib.skip("mandoc is not installed (scripts/deps.sh test)")
    bad = 0
    for page in PAGES:
        p = subprocess.run([mandoc, "-T", "lint", "-W", "all", page], cwd=os.environ["MAN_DIR"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        print(p.stdout, end="")
        if p.stdout.strip() or p.returncode != 0:
            bad += 1
        else:
            print(f"ok: {page}: mandoc -T lint -W all is silent")
    if bad:
        opslib.fail(f"{bad} page(s) with mandoc messages")


def render_all():
    if not shutil.which("man"):
        opslib.skip("man is not installed (scripts/deps.sh test)")
    for page in PAGES:
        path = os.path.join(os.environ["MAN_DIR"], page)
        rc, text, err = render(path)
        assert rc == 0, f"{page}: man -l exited {rc}: {err}"
        assert not err.strip(), f"{page}: man -l warned:\n{err}"
        with open(path) as f:
            left = re.findall(r"@[A-Z_]+@", f.read())
        assert not left, f"{page}: unsubstituted {left}"
        # Read in the source tree (man man/ferryd.8), a page shows a version,
        # not a placeholder; the paths are the build's to fill in.
        with open(os.path.join(SOURCE_MAN, page)) as f:
            raw = f.read()
        assert "@VERSION@" not in raw, f"man/{page}: @VERSION@ in the source page"
        headings = {line.strip() for line in text.splitlines()
                    if line and not line[0].isspace()}
        headings |= {line.strip() for line in text.splitlines() if line.startswith("   ")}
        for sec in SECTIONS[page]:
            assert sec in headings, f"{page}: no section {sec}"
        print(f"ok: {page} renders without warnings, {len(text.splitlines())} lines")


def unhyphenate(text):
    # man(1) may break a long word at a hyphen at the end of a line.
    text = re.sub(r"(\w)[-\u2010]\n\s*(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", text)


def section(text, title, nexts):
    start = text.index("\n" + title + "\n")
    ends = [text.index("\n" + n + "\n", start + 1) for n in nexts if ("\n" + n + "\n") in text[start + 1:]]
    return text[start:min(ends) if ends else len(text)]


def content():
    if not shutil.which("man"):
        opslib.skip("man is not installed (scripts/deps.sh test)")
    missing = []
    texts = {}
    for page in PAGES:
        rc, text, _ = render(os.path.join(os.environ["MAN_DIR"], page))
        assert rc == 0, f"{page}: man -l exited {rc}"
        texts[page] = text
        flat = re.sub(r"\s+", " ", text)
        flat_unhyph = unhyphenate(text)
        for word in REQUIRED[page]:
            if word not in flat and word not in flat_unhyph:
                missing.append(f"{page}: {word!r}")
    ini = texts["ferry.ini.5"]
    order = ["[global]", "[listener NAME]", "[backend NAME]", "EXAMPLES"]
    for title, keys in (("[global]", GLOBAL_KEYS), ("[listener NAME]", LISTENER_KEYS),
                        ("[backend NAME]", BACKEND_KEYS)):
        body = section(ini, title, [t for t in order if t != title])
        for key in keys:
            # Each key is the head of an entry: "key = ..." at the tag indent.
            if not re.search(r"^\s{7}" + re.escape(key) + r" = ", body, re.M):
                missing.append(f"ferry.ini.5 {title}: key {key}")
    if missing:
        opslib.fail("not documented:\n  " + "\n  ".join(missing))
    print(f"ok: every option, key, command and log field of the man pages is documented "
          f"({sum(len(v) for v in REQUIRED.values())} words, "
          f"{len(GLOBAL_KEYS) + len(LISTENER_KEYS) + len(BACKEND_KEYS)} keys)")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    checks = {"lint": lint, "render": render_all, "content": content}
    if what not in checks:
        opslib.fail(f"usage: {sys.argv[0]} {'|'.join(checks)}")
    if not os.environ.get("MAN_DIR"):
        opslib.fail("MAN_DIR is not set; run through meson test")
    try:
        checks[what]()
    except (AssertionError, subprocess.TimeoutExpired, ValueError) as e:
        opslib.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
