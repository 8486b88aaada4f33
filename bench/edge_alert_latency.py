#!/usr/bin/env python3
"""Edge-detected line -> alert in the API, measured on loopback (issue #6 target: p99 < 2 s).

Usage: bench/edge_alert_latency.py [--bin DIR] [--lines N] [--gap-ms MS]

Starts a real collector (`init` + `serve`, default configuration) and a real agent enrolled
over mTLS with `[detect] source = "collector"`; posts one Sigma rule through the API; then
appends N matching lines to the file the agent tails, one every --gap-ms, and for each line
measures the time from the write to the moment `GET /api/v1/alerts` shows it (the alert's
`occurrences` reaching the line's number). Prints p50, p90, p99 and max. Needs the binaries
built (`cargo build --release -p vigie-agent -p vigie-collector`).
"""

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

RULE = """title: Latency probe
id: 6f1d3c2e-5b4a-4c8d-9e7f-000000000042
logsource: {product: linux}
detection:
  keywords: ['VIGIE-LATENCY-PROBE']
  condition: keywords
level: high
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release"))
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--gap-ms", type=int, default=250)
    args = ap.parse_args()
    collector_bin = os.path.join(args.bin, "vigie-collector")
    agent_bin = os.path.join(args.bin, "vigie-agent")
    root = tempfile.mkdtemp(prefix="vigie-latency-")
    procs = []
    try:
        port = free_port()
        cdir = os.path.join(root, "collector")
        subprocess.run([collector_bin, "init", "--data-dir", cdir, "--listen", f"127.0.0.1:{port}",
                        "--hostname", "127.0.0.1"], check=True, capture_output=True)
        cfg = os.path.join(cdir, "collector.toml")
        procs.append(subprocess.Popen([collector_bin, "serve", "--config", cfg],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "collector.log"), "w")))
        token = open(os.path.join(cdir, "admin.token")).read().strip()
        ctx = ssl.create_default_context(cafile=os.path.join(cdir, "pki", "ca.pem"))
        base = f"https://127.0.0.1:{port}"

        def call(path, body=None, ctype="application/json"):
            req = urllib.request.Request(base + path, data=body, method="POST" if body is not None else "GET")
            req.add_header("Authorization", f"Bearer {token}")
            if body is not None:
                req.add_header("Content-Type", ctype)
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return json.loads(r.read() or b"null")

        for _ in range(100):
            try:
                call("/api/v1/health")
                break
            except Exception:
                time.sleep(0.1)
        call("/api/v1/rules", RULE.encode(), "application/yaml")
        enroll_token = subprocess.run([collector_bin, "token", "create", "--config", cfg],
                                      check=True, capture_output=True, text=True).stdout.strip().split()[-1]
        adir = os.path.join(root, "agent")
        subprocess.run([agent_bin, "enroll", "--collector", base, "--ca", os.path.join(cdir, "pki", "ca.pem"),
                        "--token", enroll_token, "--data-dir", adir], check=True, capture_output=True)
        log = os.path.join(root, "app.log")
        open(log, "w").close()
        with open(os.path.join(adir, "agent.toml"), "w") as f:
            f.write(f'data_dir = "{adir}"\n\n[collector]\nurl = "{base}"\nca_file = "{os.path.join(cdir, "pki", "ca.pem")}"\n\n'
                    f'[detect]\nsource = "collector"\n\n[[sources]]\nname = "app"\ntype = "file"\ninclude = ["{log}"]\n'
                    f'format = "syslog"\nlogsource = {{ product = "linux" }}\n')
        procs.append(subprocess.Popen([agent_bin, "run", "--config", os.path.join(adir, "agent.toml")],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "agent.log"), "w")))
        time.sleep(3)
        latencies = []
        for i in range(1, args.lines + 1):
            line = time.strftime("%b %d %H:%M:%S") + f" host-1 app[42]: VIGIE-LATENCY-PROBE n={i}\n"
            t0 = time.monotonic()
            with open(log, "a") as f:
                f.write(line)
            while True:
                items = call("/api/v1/alerts?rule=6f1d3c2e-5b4a-4c8d-9e7f-000000000042")["items"]
                if items and items[0]["occurrences"] >= i:
                    break
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"line {i} not alerted within 30 s")
                time.sleep(0.01)
            latencies.append(time.monotonic() - t0)
            time.sleep(max(0.0, args.gap_ms / 1000 - latencies[-1]))
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(f"{len(latencies)} lines: p50 {pick(0.5)*1000:.0f} ms, p90 {pick(0.9)*1000:.0f} ms, "
              f"p99 {pick(0.99)*1000:.0f} ms, max {latencies[-1]*1000:.0f} ms (write -> alert in the API, loopback)")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
