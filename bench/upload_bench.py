#!/usr/bin/env python3
"""Resumable upload benchmark: one large file over loopback to our uploader
(`airlock uploader`, which also computes the file's SHA-256 and makes every
acknowledged byte durable) and to two peers, tusd (the reference tus server,
Go) and @tus/server (Node.js, FileStore), each storing to the same disk, with
the same client. Started by bench/upload.sh, which builds and installs the
peers first; see there for the knobs.

The client is the same for every server: one connection, a creation POST
(Upload-Length, Upload-Metadata), then the file as PATCH requests of CHUNK
bytes (0 = the whole file in one PATCH), each body sent with sendfile(2) so
the client costs little CPU. Throughput is bytes / wall time from the first
PATCH to the last answer. Peak RSS is the server process's VmHWM, read from
/proc just before it is stopped. Between runs the stored data is deleted and
`sync` is run, so no run pays for the previous one's writeback.

Prints each run and the medians per server; the last line is JSON.
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

SECRET = "bench-proxy-secret-0123456789abcdef"


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v else default


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("OPTIONS", "/")
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} in time")


def vm_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def upload(port, create_path, path_prefix, src, size, chunk):
    """Creation then PATCHes; returns (seconds, location, last headers)."""
    headers = {
        "Tus-Resumable": "1.0.0",
        "X-Airlock-Proxy-Secret": SECRET,
        "X-Airlock-User": "bench",
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    meta = "filename " + base64.b64encode(b"bench.bin").decode()
    conn.request("POST", create_path, headers={**headers, "Upload-Length": str(size), "Upload-Metadata": meta,
                                               "Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        raise SystemExit(f"creation answered {r.status}")
    loc = r.getheader("Location")
    if loc.startswith("http"):
        loc = "/" + loc.split("/", 3)[3]
    step = chunk or size
    offset = 0
    t0 = time.perf_counter()
    with open(src, "rb") as f:
        while offset < size:
            n = min(step, size - offset)
            conn.putrequest("PATCH", loc, skip_accept_encoding=True)
            for k, v in {**headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                         "Content-Length": str(n)}.items():
                conn.putheader(k, v)
            conn.endheaders()
            sent = 0
            while sent < n:
                sent += conn.sock.sendfile(f, offset + sent, n - sent)
            r = conn.getresponse()
            r.read()
            if r.status != 204:
                raise SystemExit(f"PATCH at {offset} answered {r.status}")
            new = int(r.getheader("Upload-Offset"))
            if new != offset + n:
                raise SystemExit(f"PATCH at {offset}: the server says {new}, expected {offset + n}")
            offset = new
    secs = time.perf_counter() - t0
    conn.close()
    return secs, loc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    airlock = os.environ["AIRLOCK_BIN"]
    tusd = os.environ["TUSD_BIN"]
    node_dir = os.environ["TUS_NODE_DIR"]
    work = Path(os.environ["BENCH_WORK"])
    size = env_int("SIZE", 2 << 30)
    chunk = env_int("CHUNK", 0)
    reps = env_int("REPS", 3)
    servers = os.environ.get("SERVERS", "airlock tusd tus-node").split()
    src = work / f"source-{size}.bin"

    if not src.exists() or src.stat().st_size != size:
        print(f"writing a {size}-byte random source file to {src} ...", file=sys.stderr)
        with open(src, "wb") as f:
            left = size
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
    h = hashlib.sha256()
    with open(src, "rb") as f:
        while b := f.read(8 << 20):
            h.update(b)
    want_sha = h.hexdigest()
    (work / "secret").write_text(SECRET + "\n")

    def start(name, store, port):
        log = open(work / f"{name}.log", "ab")
        if name == "airlock":
            p = subprocess.Popen([airlock, "uploader", "--dir", str(store), "--listen", f"127.0.0.1:{port}",
                                  "--base-path", "/files", "--proxy-secret-file", str(work / "secret"),
                                  "--max-file-bytes", str(size), "--quota-bytes", str(size)],
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        elif name == "tusd":
            p = subprocess.Popen([tusd, "-host", "127.0.0.1", "-port", str(port), "-upload-dir", str(store),
                                  "-base-path", "/files/", "-disable-download"],
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        else:
            # ESM imports resolve from the script's own directory (upload.sh copies it there).
            p = subprocess.Popen(["node", str(Path(node_dir) / "tus_node_server.mjs"), str(store), str(port)], cwd=node_dir,
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_port(port, p, name)
        return p

    results = {s: [] for s in servers}
    port = env_int("PORT_BASE", 18180)
    for rep in range(reps):
        for name in servers:
            store = work / f"store-{name}"
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            subprocess.run(["sync"], check=True)
            port += 1
            proc = start(name, store, port)
            try:
                secs, loc = upload(port, "/files" + ("/" if name == "tusd" else ""), "/files", src, size, chunk)
                rss = vm_hwm_kib(proc.pid)
            finally:
                stop(proc)
            check = ""
            if name == "airlock":
                info = json.loads((store / ".uploads" / loc.rsplit("/", 1)[1] / "info.json").read_text())
                if info.get("sha256") != want_sha or (store / "bench.bin").stat().st_size != size:
                    raise SystemExit(f"airlock stored a wrong file: sha256 {info.get('sha256')} != {want_sha}")
                check = " sha256 verified"
            mbps = size / secs / 1e6
            results[name].append({"seconds": secs, "mb_per_s": mbps, "peak_rss_kib": rss})
            print(f"rep {rep + 1} {name:8s} {mbps:8.1f} MB/s  {secs:6.2f} s  peak RSS {rss / 1024:6.1f} MiB{check}",
                  flush=True)
            shutil.rmtree(store, ignore_errors=True)
    summary = {"size": size, "chunk": chunk, "reps": reps, "servers": {}}
    for name, runs in results.items():
        summary["servers"][name] = {
            "median_mb_per_s": statistics.median(r["mb_per_s"] for r in runs),
            "median_peak_rss_kib": statistics.median(r["peak_rss_kib"] for r in runs),
            "max_peak_rss_kib": max(r["peak_rss_kib"] for r in runs),
            "runs": runs,
        }
    print("\nmedians:")
    for name, s in summary["servers"].items():
        print(f"  {name:8s} {s['median_mb_per_s']:8.1f} MB/s  peak RSS {s['median_peak_rss_kib'] / 1024:6.1f} MiB "
              f"(max {s['max_peak_rss_kib'] / 1024:.1f})")
    ours = summary["servers"].get("airlock")
    for peer in ("tusd", "tus-node"):
        if ours and peer in summary["servers"]:
            ratio = ours["median_mb_per_s"] / summary["servers"][peer]["median_mb_per_s"]
            summary[f"ratio_vs_{peer}"] = ratio
            print(f"  airlock / {peer}: {ratio:.2f}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
