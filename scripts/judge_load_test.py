"""A bounded loopback load test of `janus-rig judge serve`: throughput, latency percentiles, errors.

    python scripts/judge_load_test.py                       # starts `judge serve --judge shapeworld` on a free port
    python scripts/judge_load_test.py --requests 5000 --concurrency 32
    python scripts/judge_load_test.py --url http://127.0.0.1:8000/v1   # a server you started (loopback only)

Requests are the four structured questions the http judge sends (semantic, spatial with the drawn layout,
prompt_image, ground) built from a small ShapeWorld world, pre-encoded so the client spends little CPU. The run
is bounded in count (--requests <= 100000) and time (--max-seconds <= 600) and only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MAX_REQUESTS, MAX_SECONDS = 100_000, 600
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_bodies(records: int) -> list[bytes]:
    from PIL import Image

    from data_prep.shapeworld.world import write_world
    from janus_rig.chain import draw_boxes, parse_chain
    from reward_models.judges.base import GroundRequest, RubricRequest
    from reward_models.judges.http import chat_body
    from reward_models.terms import SPATIAL_CANVAS

    bodies = []
    with tempfile.TemporaryDirectory() as tmp:
        write_world(tmp, 0, records, 1, progress=False)
        for line in (Path(tmp) / "val.jsonl").read_text().splitlines():
            r = json.loads(line)
            image = Image.open(Path(tmp) / r["image"]).convert("RGB")
            objects = [o for o in parse_chain(r["chain"]).objects if o.box is not None]
            layout = draw_boxes(None, objects, size=(SPATIAL_CANVAS, SPATIAL_CANVAS))
            requests = [
                RubricRequest("semantic", r["prompt"], chain=r["chain"], metadata=r["metadata"]),
                RubricRequest("spatial", r["prompt"], chain=r["chain"], image=layout, metadata=r["metadata"]),
                RubricRequest("prompt_image", r["prompt"], image=image, metadata=r["metadata"]),
                GroundRequest(image, objects[0].name),
            ]
            bodies += [json.dumps(chat_body("shapeworld", q, structured=True, max_tokens=64)).encode() for q in requests]
    return bodies


def start_server() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "janus_rig.cli", "judge", "serve", "--judge", "shapeworld",
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("serving judge"):
        process.terminate()
        raise RuntimeError(f"judge serve did not start: {line!r}")
    return process, line.split()[-1]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def run(url: str, bodies: list[bytes], n: int, concurrency: int, max_seconds: float) -> dict:
    parsed = urllib.parse.urlparse(url)
    host, port, path = parsed.hostname, parsed.port, parsed.path.rstrip("/") + "/chat/completions"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds

    def one(i: int) -> None:
        if time.perf_counter() > deadline:
            with lock:
                errors["skipped (time bound)"] = errors.get("skipped (time bound)", 0) + 1
            return
        start = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            conn.close()
            kind = None if response.status == 200 and b'"choices"' in payload else f"HTTP {response.status}"
        except OSError as err:
            kind = type(err).__name__
        elapsed = time.perf_counter() - start
        with lock:
            if kind is None:
                latencies.append(elapsed)
            else:
                errors[kind] = errors.get(kind, 0) + 1

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(n)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": n, "ok": len(latencies), "errors": errors, "concurrency": concurrency,
        "seconds": round(seconds, 2), "throughput_rps": round(len(latencies) / seconds, 1),
        "latency_ms": {f"p{q}": round(1000 * percentile(latencies, q), 2) for q in (50, 90, 99)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running judge server on loopback; default: start one")
    parser.add_argument("--requests", type=int, default=2000, help=f"requests to send (<= {MAX_REQUESTS})")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--max-seconds", type=float, default=300, help=f"stop sending after this (<= {MAX_SECONDS})")
    parser.add_argument("--records", type=int, default=25, help="world records the request bodies come from")
    parser.add_argument("--out", default=None, help="also write the report (JSON) here")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS or not 0 < args.max_seconds <= MAX_SECONDS or args.concurrency < 1:
        parser.error(f"need 1 <= --requests <= {MAX_REQUESTS}, 0 < --max-seconds <= {MAX_SECONDS}, --concurrency >= 1")
    if args.url is not None and urllib.parse.urlparse(args.url).hostname not in LOOPBACK:
        parser.error("the load test only targets loopback (127.0.0.1, localhost, ::1)")
    bodies = build_bodies(args.records)
    process, url = (None, args.url) if args.url else start_server()
    try:
        report = run(url, bodies, args.requests, args.concurrency, args.max_seconds)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
    report["distinct_bodies"] = len(bodies)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
