#!/usr/bin/env python3
"""The fleet examples under contrib/ (README "In a fleet") hold up: every YAML file parses
(PyYAML); every ferry.ini in contrib/ (files, and ConfigMap data keys) passes
`ferryd -t`, with test certificates generated where its relative paths point;
the Kubernetes probes ask /ready and /live on the configured metrics port,
terminationGracePeriodSeconds exceeds shutdown_delay + drain_timeout, the
certificates come from a Secret volume; keepalived's check asks /ready on the
metrics port; the pod runs under seccompProfile RuntimeDefault and its
discover name names no namespace; the README says a ConfigMap edit needs a
reload. Exit 77 (skip) without PyYAML or ferryd."""
import base64
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CONTRIB = os.path.join(ROOT, "contrib")
GEN = os.path.join(ROOT, "tests", "fixtures", "gen-certs.sh")
FERRYD = os.environ.get("FERRYD")

try:
    import yaml
except ImportError:
    print("skip: python3-yaml is not installed")
    sys.exit(77)
if not FERRYD:
    print("skip: no ferryd built")
    sys.exit(77)

DURATION = re.compile(r"^(\d+)(ms|s|m|h)?$")


def seconds(v):
    m = DURATION.match(v.strip())
    assert m, f"not a duration: {v!r}"
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def ini_values(text):
    """{(section, key): [values]} of a ferry.ini (comments stripped)."""
    out, section = {}, None
    for line in text.splitlines():
        line = re.sub(r"(^|\s)[;#].*$", "", line).strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]").split()[0]
            continue
        k, _, v = line.partition("=")
        out.setdefault((section, k.strip()), []).append(v.strip())
    return out


def check_ini(text, name, certs):
    """Writes the ferry.ini into a fresh directory with every TLS file it names
    (relative paths only) made from the test certificates, and runs -t."""
    d = tempfile.mkdtemp(prefix="ferry-contrib-")
    try:
        conf_dir = os.path.join(d, "a", "b")  # room for ../ paths
        os.makedirs(conf_dir)
        path = os.path.join(conf_dir, "ferry.ini")
        with open(path, "w") as fh:
            fh.write(text)
        vals = ini_values(text)

        def place(rel, src=None, data=None):
            assert not os.path.isabs(rel), f"{name}: use a path relative to ferry.ini: {rel}"
            dst = os.path.normpath(os.path.join(conf_dir, rel))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if src:
                shutil.copy(os.path.join(certs, src), dst)
            else:
                with open(dst, "w") as fh:
                    fh.write(data)

        for (_, key), values in vals.items():
            for v in values:
                parts = v.split()
                if key == "tls_cert":
                    if len(parts) == 2:
                        place(parts[0], "a-ec.crt")
                        place(parts[1], "a-ec.key")
                    else:
                        place(parts[0], "a-ec.pem")
                elif key in ("tls_client_ca", "tls_ca"):
                    place(parts[0], "ca.pem")
                elif key == "tls_ticket_keys":
                    place(parts[0], data=base64.b64encode(os.urandom(80)).decode() + "\n")
        r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 0 and "configuration is valid" in out, f"{name}:\n{out}"
        return vals
    finally:
        shutil.rmtree(d, True)


def metrics_port(vals, name):
    m = vals.get(("global", "metrics"))
    assert m, f"{name}: no metrics address for the probes"
    return int(m[0].rsplit(":", 1)[1])


def container_port(container, port):
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"probe port {port!r} is not a port of the container")


def check_kubernetes(docs, inis):
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    services = [d for d in docs if d.get("kind") == "Service"]
    maps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    assert deployments and services and maps, "need a Deployment, a Service and a ConfigMap"
    for dep in deployments:
        spec = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert any(s["spec"]["selector"].items() <= labels.items() for s in services), \
            "no Service selects the Deployment's pods"
        volumes = {v["name"]: v for v in spec["volumes"]}
        (ferryd,) = [c for c in spec["containers"] if "ferry" in c["image"]]
        mounts = {m["name"]: m["mountPath"] for m in ferryd["volumeMounts"]}
        # The ConfigMap holding ferry.ini, and where the container reads it.
        cm_vol = [n for n, v in volumes.items() if "configMap" in v]
        assert len(cm_vol) == 1
        cm = maps[volumes[cm_vol[0]]["configMap"]["name"]]
        conf_path = ferryd["args"][ferryd["args"].index("-c") + 1]
        key = os.path.basename(conf_path)
        assert os.path.dirname(conf_path) == mounts[cm_vol[0]], "-c is not in the ConfigMap mount"
        vals = inis[("configmap", cm["metadata"]["name"], key)]
        port = metrics_port(vals, key)
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live")):
            get = ferryd[probe]["httpGet"]
            assert get["path"] == path, (probe, get)
            assert container_port(ferryd, get["port"]) == port, \
                f"{probe} asks port {get['port']}, ferry.ini's metrics is on {port}"
        grace = spec["terminationGracePeriodSeconds"]
        delay = seconds(vals.get(("global", "shutdown_delay"), ["0"])[0])
        drain = seconds(vals.get(("global", "drain_timeout"), ["30s"])[0])
        assert grace > delay + drain, f"grace {grace} <= shutdown_delay {delay} + drain {drain}"
        # Certificates come from a Secret volume mounted where ferry.ini's
        # relative tls_cert paths lead (as a directory: rotations reach it).
        conf_dir = os.path.dirname(conf_path)
        for v in vals.get(("https", "tls_cert"), []) + [
                x for (s, k), xs in vals.items() if k == "tls_cert" for x in xs]:
            f = os.path.normpath(os.path.join(conf_dir, v.split()[0]))
            vol = [n for n, m in mounts.items() if f.startswith(m.rstrip("/") + "/")]
            assert vol and "secret" in volumes[vol[0]], f"{f} is not on a Secret volume"
            m = [m for m in ferryd["volumeMounts"] if m["name"] == vol[0]][0]
            assert "subPath" not in m, "a subPath mount never sees the Secret change"
        # The runtime's default seccomp profile, for the pod and the container.
        for where, ctx in (("pod", spec.get("securityContext") or {}),
                           ("container", ferryd.get("securityContext") or {})):
            prof = (ctx.get("seccompProfile") or {}).get("type")
            assert prof == "RuntimeDefault", f"{where} seccompProfile is {prof!r}"
        # A discover name that works in any namespace: no ".NAMESPACE.svc".
        for (s, k), xs in vals.items():
            for x in xs:
                if k == "discover":
                    assert ".svc" not in x, f"discover names a namespace: {x}"


def main():
    certs = tempfile.mkdtemp(prefix="ferry-contrib-certs-")
    try:
        subprocess.run(["sh", GEN, certs], check=True, timeout=120, capture_output=True)
        inis, yamls = {}, {}
        for path in sorted(glob.glob(os.path.join(CONTRIB, "**", "*"), recursive=True)):
            rel = os.path.relpath(path, CONTRIB)
            if path.endswith((".yaml", ".yml")):
                with open(path) as fh:
                    docs = [d for d in yaml.safe_load_all(fh) if d is not None]
                assert docs, f"{rel}: empty"
                yamls[rel] = docs
                for d in docs:
                    if d.get("kind") == "ConfigMap":
                        for k, v in (d.get("data") or {}).items():
                            if k.endswith(".ini"):
                                key = ("configmap", d["metadata"]["name"], k)
                                inis[key] = check_ini(v, f"{rel}: {k}", certs)
            elif path.endswith(".ini"):
                with open(path) as fh:
                    inis[("file", rel)] = check_ini(fh.read(), rel, certs)
        print(f"{len(yamls)} YAML files parsed, {len(inis)} ferry.ini passed ferryd -t")
        assert inis, "no ferry.ini found in contrib/"
        k8s = [d for rel, docs in yamls.items() if rel.startswith("kubernetes/") for d in docs]
        check_kubernetes(k8s, inis)
        with open(os.path.join(CONTRIB, "kubernetes", "README.md")) as fh:
            readme = fh.read()
        assert re.search(r"ConfigMap[^.]*reload", readme), "README: a ConfigMap edit needs a reload"
        # keepalived: the check script asks /ready on ferry.ini's metrics port.
        ka = os.path.join(CONTRIB, "keepalived")
        with open(os.path.join(ka, "keepalived.conf")) as fh:
            conf = fh.read()
        port = metrics_port(inis[("file", "keepalived/ferry.ini")], "keepalived/ferry.ini")
        m = re.search(r'script\s+"[^"]*http://127\.0\.0\.1:(\d+)/ready"', conf)
        assert m and int(m.group(1)) == port, "keepalived's check does not ask /ready on the metrics port"
        assert re.search(r"track_script\s*{\s*chk_ferry", conf)
        print("ok")
    finally:
        shutil.rmtree(certs, True)


if __name__ == "__main__":
    main()
