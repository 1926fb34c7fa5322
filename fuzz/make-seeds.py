#!/usr/bin/env python3
"""Regenerates the checked-in seed corpora in fuzz/corpus/ from the project's own examples,
docs and tests. Run from anywhere: python3 fuzz/make-seeds.py. Needs PyYAML (python3-yaml) for
the JSON variants of the manifests. Files are named by content hash (like libFuzzer's), so
re-running only adds what changed."""

import hashlib
import itertools
import os
import subprocess
import json
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, text):
    data = text if isinstance(text, bytes) else text.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def rust_strings(path):
    """String literals (raw or plain) in a Rust file."""
    src = path.read_text()
    out = [m.group(2) for m in re.finditer(r'r(#+)"(.*?)"\1', src, re.S)]
    for m in re.finditer(r'(?<![r#])"((?:[^"\\]|\\.)*)"', src, re.S):
        s = m.group(1)
        try:
            s = s.encode().decode("unicode_escape").encode("latin-1").decode()
        except UnicodeError:
            continue
        out.append(s)
    return out


def manifests():
    found = []
    for p in sorted((ROOT / "examples").glob("*/*.yaml")):
        found.append(p.read_text())
    for p in sorted((ROOT / "docs").glob("*.md")):
        for m in re.finditer(r"```ya?ml\n(.*?)```", p.read_text(), re.S):
            if "apiVersion" in m.group(1):
                found.append(m.group(1))
    sources = [ROOT / "crates/weft-manifest/src/tests.rs"]
    sources += sorted((ROOT / "crates/weft-manifest/tests").glob("*.rs"))
    sources += sorted((ROOT / "crates/weft/tests").glob("*.rs"))
    for p in sources:
        for s in rust_strings(p):
            if "apiVersion" in s or "components:" in s:
                found.append(s)
    return found


def json_variant(text):
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return None
    if not docs:
        return None
    value = docs[0] if len(docs) == 1 else docs
    try:
        return json.dumps(value, indent=2)
    except (TypeError, ValueError):
        return None


def main():
    docs = manifests()
    for d in docs:
        write("manifest_parse", d)
        j = json_variant(d)
        if j:
            write("manifest_parse", j)
    # Versions of a workload: each manifest followed by an edited copy, and pairs of manifests.
    single = [d for d in docs if "---" not in d and "apiVersion" in d][:40]
    edits = [
        ("./api.wasm", "./api-v2.wasm"),
        ("image: ./", "image: ./v2/"),
        ("timeoutMs: 5000", "timeoutMs: 6000"),
        ("interfaces: [store, atomics]", "interfaces: [atomics]"),
        ("name: api", "name: api2"),
    ]
    for d in single:
        for a, b in edits:
            if a in d:
                write("manifest_diff", d.rstrip() + "\n---\n" + d.replace(a, b))
    for a, b in itertools.islice(itertools.combinations(single, 2), 60):
        write("manifest_diff", a.rstrip() + "\n---\n" + b)

    # Router: the cases of weft-policy's unit tests, as text.
    write("router", "route - / root\nreq - /\nreq any.example /a/b\nreq - x\n")
    write("router", "route - /api api\nroute - /api/v2 v2\nroute - / root\nreq - /api\n"
          "req - /apix\nreq - /api/v2/x\nreq - /api/v2x\nreq - /API\n")
    write("router", "route Hello.Localhost. / hello\nreq hello.localhost /x\n"
          "req Hello.LocalHost.:8080 /x\nreq hello.localhost.. /x\nreq - /x\n")
    write("router", "route a.test:8080 / a8080\nroute a.test / any\nreq a.test:8080 /\n"
          "req A.TEST.:8080 /\nreq a.test:8081 /\nreq a.test: /\nreq a.test /\n")
    write("router", "route [::1]:8080 / v6port\nroute [::2] / v6\nroute ::1 / bare\n"
          "req [::1]:8080 /\nreq [::1] /\nreq [::2]:1 /\nreq ::1 /\n")
    write("router", "route - /api/v1/deep hostless\nroute a.test / host\n"
          "req a.test /api/v1/deep/x\nreq b.test /api/v1/deep/x\nreq - /api/v1/deep\n")
    write("router", "route Hello.localhost /api/ one\nroute hello.localhost. /api two\n")
    write("router", "route ~ / empty\nroute - /a x\nroute - /a/ x\nroute - api api\n"
          "req ~ /\nreq x /\nreq - /a\nreq \u00e9:\u00e9 /z\u00e9\nreq [ /\nreq ]: /\n")
    for d in docs:
        for m in re.finditer(r"host: ([^,}\s]+), path: ([^,}\s]+)", d):
            write("router", f"route {m.group(1)} {m.group(2)} w\nroute - / other\n"
                  f"req {m.group(1)} {m.group(2)}\nreq {m.group(1)} {m.group(2)}/x\n")

    # Ingress: raw request heads, well-formed and hostile (the shapes of the hostile corpus in
    # crates/weft/tests/hostile.rs).
    for head in [
        "GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n",
        "GET /admin/x HTTP/1.1\r\nHost: Counter.Localhost.:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: hello.localhost\r\nHost: counter.localhost\r\n\r\n",
        "GET http://counter.localhost/ HTTP/1.1\r\nHost: hello.localhost\r\n\r\n",
        "GET http://counter.localhost/admin HTTP/1.1\r\nHost: counter.localhost\r\n\r\n",
        "GET HTTPS://a.test:8080/x?y HTTP/1.1\r\nHost: a.test:08080\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET /public/x HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@hello.localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: hello.localhost\r\n x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: hel\x00lo\r\n\r\n",
        "GET /x/../admin HTTP/1.1\r\nHost: counter.localhost\r\n\r\n",
        "CONNECT hello.localhost:443 HTTP/1.1\r\nHost: hello.localhost:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: hello.localhost\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: hello.localhost\r\n" + "X-A: b\r\n" * 120 + "\r\n",
    ]:
        write("ingress", head)

    # Allow-list: the rules from weft-policy's tests and from manifests.
    write("allow", "rule api.example.com:443\nrule http://127.0.0.1:8081\nrule *.svc.local\n"
          "req https api.example.com 443\nreq http API.Example.com 443\nreq https evil.com 443\n"
          "req http 127.0.0.1 8081\nreq https a.svc.local 443\nreq https svc.local 443\n"
          "req https xsvc.local 443\nuri http://127.0.0.1:8081/x\nuri api.example.com\n")
    # In-memory HTTP: the reserved NAME.weft.internal space (weft_policy::internal).
    write("allow", "rule *.weft.internal\nrule b.weft.internal:*\nrule *\nrule *.internal\n"
          "req http b.weft.internal 80\nreq https A-1.WEFT.Internal. 443\nreq http weft.internal 80\n"
          "req http a.b.weft.internal 80\nreq http xweft.internal 80\nreq http -a.weft.internal 80\n")
    write("allow", "rule 127.0.0.1:9000\nrule [::1]:9000\nuri http://127.0.0.1:9000/x\n"
          "uri http://[::1]:9000/\nuri /relative\nuri ftp://127.0.0.1:9000/\nreq http ::1 9000\n")
    write("allow", "rule \nrule ftp://x.com\nrule x.com:0\nrule x.com:99999\nrule x.com/path\n"
          "rule [::1\nrule ::1\nrule bad host.com\nrule *.\nrule *\nrule HTTPS://*.Example.COM:*/\n"
          "req https a.example.com. 1\nreq http example.com 80\n")
    for d in docs:
        m = re.search(r"allowedHosts:\s*\[([^\]]*)\]", d)
        if m:
            rules = [r.strip().strip("'\"") for r in m.group(1).split(",") if r.strip()]
            write("allow", "".join(f"rule {r}\n" for r in rules) + "req https example.com 443\n")

    # Sockets: the shapes of weft-policy's socket tests and of the manifests.
    write("sockets", "tcp 5432 15432\nudp 53\nname db.internal\nname *.svc.local\n"
          "op tcp-connect 127.0.0.1:5432\nop tcp-connect [::1]:5432\nop tcp-connect 127.0.0.2:5432\n"
          "op tcp-connect [::ffff:127.0.0.1]:5432\nop udp-send 127.0.0.1:53\nop tcp-bind 0.0.0.0:0\n"
          "op tcp-bind 127.0.0.1:8080\nop tcp-listen 127.0.0.1:0\nop udp-receive 10.0.0.1:53\n"
          "lookup localhost\nlookup db.internal.\nlookup a.svc.local\nlookup svc.local\n"
          "lookup [::1]\nlookup 169.254.169.254\nlookup EVIL.example\n")
    write("sockets", "udp 53 54\ntcp 0\nname 1.2.3.4\nname *\nname *.\nname bad name\n")
    write("sockets", "tcp 80\ntcp 80 81\nname *\nlookup anything.example\nop tcp-accept [::1]:80\n")
    for d in docs:
        for m in re.finditer(r"port: (\d+)(?:, hostPort: (\d+))?(?:, protocol: (tcp|udp))?", d):
            proto = m.group(3) or "tcp"
            rule = f"{proto} {m.group(1)}" + (f" {m.group(2)}" if m.group(2) else "")
            write("sockets", f"{rule}\nop {proto}-connect 127.0.0.1:{m.group(1)}\nlookup localhost\n")

    # Components: the WAT fixtures (wasm-tools parse) and two small Rust guest components
    # (from $WEFT_GUESTS_DIR, built by tests/fixtures/build-guests.sh) when present.
    binaries = []
    for p in sorted((ROOT / "tests/fixtures/wat").glob("*.wat")):
        out = subprocess.run(["wasm-tools", "parse", str(p)], capture_output=True, check=True)
        binaries.append(out.stdout)
    guests = pathlib.Path(os.environ.get("WEFT_GUESTS_DIR",
                                         pathlib.Path.home() / ".cache/weft/guests"))
    for name in ["http-echo.wasm", "p3-cli.wasm"]:
        if (guests / name).exists():
            binaries.append((guests / name).read_bytes())
    for b in binaries:
        write("component_inspect", b)
    # The structure-aware targets decode any bytes into shapes; seed them with fixture texts.
    for p in sorted((ROOT / "tests/fixtures/wat").glob("*.wat")):
        write("component_world", p.read_bytes())
        write("component_smith", p.read_bytes())

    # Lattice records: one valid value per bucket (byte 0: desired, 1: hosts, 2: status,
    # 3: placements, 4: lease; then KEY, newline, VALUE). The desired seed's version is the
    # manifest's template digest, so it was written by weft-scheduler's encoder and is kept in
    # fuzz/regressions/lattice_decode/ (crates/weft-scheduler/tests/decode.rs checks it still
    # decodes); copy it from there.
    for f in sorted((ROOT / "fuzz/regressions/lattice_decode").glob("*")):
        write("lattice_decode", f.read_bytes())
    host = {"name": "h1", "id": "a1b2", "labels": {"zone": "a"}, "status": "ready", "seq": 3,
            "httpAddr": "127.0.0.1:8080", "startedAtMs": 1, "weftVersion": "0.1.0"}
    write("lattice_decode", b"\x01h1\n" + json.dumps(host).encode())
    report = {"name": "h1", "id": "a1b2",
              "replicas": {"web": {"version": "0123456789ab", "ready": True}},
              "failures": {"api": {"version": "ba9876543210", "error": "trap"}}}
    write("lattice_decode", b"\x02h1\n" + json.dumps(report).encode())
    placement = {"workload": "web", "host": "h1", "version": "0123456789ab", "leaderEpoch": 4}
    write("lattice_decode", b"\x03web.h1\n" + json.dumps(placement).encode())
    lease = {"holder": "h1", "id": "a1b2", "acquiredAtMs": 9}
    write("lattice_decode", b"\x04leader\n" + json.dumps(lease).encode())
    # Reconcile: arbitrary bytes become a state; a few fixed byte strings give it a start.
    for seed in [bytes(range(64)), bytes([1, 3, 7, 15, 31, 63, 127, 255] * 8), b"\xff" * 48]:
        write("lattice_reconcile", seed)


if __name__ == "__main__":
    main()
