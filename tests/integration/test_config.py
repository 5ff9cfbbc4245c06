#!/usr/bin/env python3
"""The configuration as a user meets it through the real ferryd: `ferryd -t`
on broken and good files (ferryd(8), ferry.ini(5)), relative paths resolved against the
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
    """ferryd -t -c path, run from cwd: (exit status, lines, stderr). The
    lines are the verdict on stdout when the file is valid, else the errors,
    which go to stderr (stdout then stays empty)."""
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60, cwd=cwd)
    out, err = r.stdout.decode(), r.stderr.decode()
    if r.returncode == 0:
        return r.returncode, out.strip().splitlines(), err
    assert out == "", f"-t printed on stdout with errors: {out!r}"
    return r.returncode, err.strip().splitlines(), err


def self_signed(pem):
    """A throw-away EC certificate and key in one PEM file."""
    d = os.path.dirname(pem)
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", pem + ".key", "-out",
                    pem + ".crt", "-subj", "/CN=cfg.test", "-days", "30"],
                   check=True, capture_output=True, timeout=60)
    with open(pem, "w") as out:
        for part in (".crt", ".key"):
            with open(pem + part) as fh:
                out.write(fh.read())


def line_of(text, needle):
    return text.splitlines().index(needle) + 1


# ---- relative paths (ferryd(8)) ----

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


# ---- every error of every pass, at its own line (ferry.ini(5)) ----

def test_check_reports_every_pass_in_line_order():
    d = tmpdir()
    path = os.path.join(d, "ferry.ini")
    self_signed(os.path.join(d, "good.pem"))
    lines = [
        "[global]",
        "control_socket =",
        "bogus = 1",                               # unknown key
        "[listener a]",
        f"bind = 127.0.0.1:{free_port()}",
        "tls = on",
        "tls_cert = good.pem",
        "tls_cert = missing.pem",                  # TLS file
        "tls_ciphers = NO-SUCH-CIPHER",            # cipher list, at its line
        "tls_ciphersuites = TLS_NO_SUCH_SUITE",    # suites, at its line
        "tls_alpn = h2,,x",                        # ALPN syntax
        "backend = nowhere",                       # reference
        "[listener plain]",
        f"bind = 127.0.0.1:{free_port()}",
        "tls_cert = good.pem",                     # TLS key without tls = on
        "tls_client_ca = good.pem.crt",
        "backend = b",
        "[backend b]",
        "server s 127.0.0.1:9",
        "retries = many",                          # value
        "tls = on",
        "tls_ca = nowhere/ca.pem",                 # TLS file, at its line
        "tls_verify = maybe",                      # value
    ]
    write(path, "\n".join(lines) + "\n")
    rc, out, err = check(path)
    want = [
        (3, 'unknown key "bogus" in [global]'),
        (8, f"cannot read tls_cert {d}/missing.pem: No such file or directory"),
        (9, 'invalid tls_ciphers "NO-SUCH-CIPHER"'),
        (10, 'invalid tls_ciphersuites "TLS_NO_SUCH_SUITE"'),
        (11, 'invalid value "h2,,x" for tls_alpn'),
        (12, 'unknown backend "nowhere"'),
        (15, "tls_cert has no effect without tls = on"),
        (16, "tls_client_ca has no effect without tls = on"),
        (20, 'invalid value "many" for retries'),
        (22, f"cannot read tls_ca {d}/nowhere/ca.pem: No such file or directory"),
        (23, 'invalid value "maybe" for tls_verify'),
    ]
    assert rc == 1, (rc, out, err)
    assert len(out) == len(want), "\n".join(out)
    for got, (ln, text) in zip(out, want):
        assert got.startswith(f"{path}:{ln}: ") and text in got, (got, ln, text)
    # The start reports the same list, on stderr, and exits 1.
    r = subprocess.run([FERRYD, "-c", path], capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 1 and r.stderr.decode().strip().splitlines() == out, r


def test_plaintext_listener_with_tls_keys_is_refused():
    # The case: tls_cert and tls_client_ca without tls = on used to
    # pass -t and serve plaintext.
    d = tmpdir()
    path = os.path.join(d, "ferry.ini")
    self_signed(os.path.join(d, "a.pem"))
    text = (f"[listener l]\nbind = 127.0.0.1:{free_port()}\ntls_cert = a.pem\n"
            f"tls_client_ca = a.pem.crt\nbackend = b\n[backend b]\nserver s 127.0.0.1:9\n"
            f"tls_ca = a.pem.crt\ntls_sni = x.test\n")
    write(path, text)
    rc, out, _ = check(path)
    assert rc == 1
    assert out == [f"{path}:3: tls_cert has no effect without tls = on",
                   f"{path}:4: tls_client_ca has no effect without tls = on",
                   f"{path}:8: tls_ca has no effect without tls = on",
                   f"{path}:9: tls_sni has no effect without tls = on or health_check = tls"], out


def test_line_too_long_is_an_error_at_its_line():
    # ferry.ini(5): a line too long to read whole is an error with its line; the
    # lines after it are still read (their errors reported in the same run).
    d = tmpdir()
    path = os.path.join(d, "ferry.ini")
    long_value = "A" * 5000
    write(path, f"[global]\ncontrol_socket =\n[listener l]\nbind = 127.0.0.1:{free_port()}\n"
                f"tls_ciphers = {long_value}\nbackend = nowhere\n[backend b]\n"
                f"server s 127.0.0.1:9\n")
    rc, out, _ = check(path)
    assert rc == 1
    assert out == [f"{path}:5: line too long: {len('tls_ciphers = ') + 5000} characters, "
                   f"at most 4096",
                   f'{path}:6: unknown backend "nowhere"'], out


# ---- documentation matches the binary ----

def test_ferryctl_man_page_lists_every_metric():
    # Issue 8: ferryctl(8) listed only part of the metrics. Every metric the
    # real ferryd exports (with a TLS listener, so certificate metrics too)
    # is named in the page.
    d = tmpdir()
    self_signed(os.path.join(d, "a.pem"))
    mport = free_port()
    f = start_ferry(f"[global]\ncontrol_socket = @SOCK@\nmetrics = 127.0.0.1:{mport}\n"
                    f"[listener l]\nbind = 127.0.0.1:{free_port()}\ntls = on\n"
                    f"tls_cert = {d}/a.pem\nbackend = b\n[backend b]\nserver s 127.0.0.1:9\n")
    text = f.ctl("metrics")
    names = sorted({l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")})
    assert len(names) >= 20, names
    with open(os.path.join(SOURCE, "man", "ferryctl.8")) as fh:
        page = fh.read().replace("\\-", "-")
    missing = [n for n in names if n not in page]
    assert not missing, f"not in ferryctl(8): {missing}"


if __name__ == "__main__":
    runner.run(globals())
