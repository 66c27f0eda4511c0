"""Load test of serve.py: a bounded load on 127.0.0.1, one server per batching window (--batch-window-ms).

    python loadtest.py [--student DIR] [--backend onnx-int8] [--windows-ms 0 2] [--requests 2000]
                       [--time-cap 10] [--repeats 3] [--data-dir DIR] [--out bench_out]

Requests/s, sentences/s and p50/p99 latency for single sentences at concurrency 1/16/64, 64-text requests and
GET /health as the ceiling, for each window (<out>/serve_results.json). Every figure is the median over
repeats with its spread; rows measured while other processes kept the machine busy, or whose repeats
disagree, are flagged in a "warning" column.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import corpus
import utils
from config import BACKENDS
from model import Student, bundled_student
from report import show
from settings import add_arguments, from_args, setting, validate_fields
from synthetic import synthetic_reviews
from timing import machine_info, spread_pct, timing_warning

SERVER_WORKERS = 1  # serve.py's worker processes
OWN_PROCESSES = SERVER_WORKERS + 1  # what the test itself runs: the server's workers and the load generator


@dataclass
class LoadTest:
    """One server per batching window; every scenario runs `repeats` times against each."""

    student: str | None = setting(None, "student folder or Hub id; None: serve.py's bundled student")
    backend: str = setting("onnx-int8", "inference backend", choices=BACKENDS)
    windows_ms: tuple[float, ...] = setting(
        (0.0, 2.0),
        "serve.py --batch-window-ms values, one server each: how long a request waits for others to join its "
        "model call (0: no extra wait; requests that arrive while the model runs share its next call anyway)",
    )
    scenarios: tuple[tuple[str, int, int], ...] = setting(  # not an option of the command line
        (("health", 0, 64), ("single", 1, 1), ("single", 1, 16), ("single", 1, 64), ("batch64", 64, 4)),
        "(name, texts per request (0: GET /health), concurrency)",
    )
    requests: int = setting(2000, "requests per scenario and repeat (a quarter of it for 64-text requests)")
    time_cap_s: float = setting(
        10.0, "seconds per scenario and repeat: no new request after this", flag="--time-cap"
    )
    repeats: int = setting(3, "passes per scenario")
    out: str = setting("bench_out", "folder for serve_results.json")
    data_dir: str | None = setting(None, "NSMC folder whose test reviews are sent (None: synthetic reviews)")
    data: str | None = setting(None, "or your own reviews, whose test split is sent (distil.py --data)")

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.requests < 1 or self.repeats < 1 or self.time_cap_s <= 0:
            raise ValueError(
                "requests and repeats must be >= 1 and time_cap_s > 0, got "
                f"{self.requests}, {self.repeats}, {self.time_cap_s}"
            )
        if any(w < 0 for w in self.windows_ms):
            raise ValueError(f"windows_ms must be >= 0, got {self.windows_ms}")


async def drive(
    url: str, bodies: list[bytes | None], concurrency: int, requests: int, time_cap_s: float
) -> dict:
    """`concurrency` clients on keep-alive connections send up to `requests` requests in total (POST /predict
    with each body, or GET /health for None) until the time cap; latencies in seconds. The client is aiohttp:
    httpx's AsyncClient costs several times more CPU per request under concurrency (encode/httpx#3215), CPU
    that the server on the same machine would miss."""
    import aiohttp

    latencies, errors, issued = [], 0, 0
    headers = {"content-type": "application/json"}
    connector, timeout = aiohttp.TCPConnector(limit=concurrency), aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def one(body: bytes | None) -> int:
            if body is None:
                async with session.get("/health") as response:
                    await response.read()
            else:
                async with session.post("/predict", data=body, headers=headers) as response:
                    await response.read()
            return response.status

        await asyncio.gather(*(one(bodies[i % len(bodies)]) for i in range(2 * concurrency)))  # warm up
        stop_at = time.perf_counter() + time_cap_s

        async def worker() -> None:
            nonlocal errors, issued
            while issued < requests and time.perf_counter() < stop_at:
                body = bodies[issued % len(bodies)]
                issued += 1
                start = time.perf_counter()
                errors += await one(body) != 200
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed, "latencies": latencies}


def scenario_row(name: str, texts_per_request: int, concurrency: int, passes: list[dict]) -> dict:
    """Median and spread over the repeated passes of one scenario."""
    per_s = [p["requests"] / p["seconds"] for p in passes]
    p50 = [1e3 * float(np.percentile(p["latencies"], 50)) for p in passes]
    p99 = [1e3 * float(np.percentile(p["latencies"], 99)) for p in passes]
    return {
        "scenario": name,
        "concurrency": concurrency,
        "texts_per_request": texts_per_request,
        "requests": sum(p["requests"] for p in passes),
        "errors": sum(p["errors"] for p in passes),
        "req_per_s": statistics.median(per_s),
        "req_per_s_spread_pct": spread_pct(per_s),
        "sentences_per_s": statistics.median(per_s) * max(texts_per_request, 0),
        "p50_ms": statistics.median(p50),
        "p99_ms": statistics.median(p99),
    }


def start_server(load: LoadTest, window_ms: float, log: Path) -> tuple[subprocess.Popen, str]:
    """serve.py in its own process on a free 127.0.0.1 port; returns it once /health answers."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        str(Path(__file__).resolve().parent / "serve.py"),
        "--port",
        str(port),
        "--workers",
        str(SERVER_WORKERS),
        "--backend",
        load.backend,
        "--batch-window-ms",
        str(window_ms),
        "--log-level",
        "warning",
    ]
    if load.student:
        command += ["--student", load.student]
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a", encoding="utf-8") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    process.wait(timeout=30)
    reason = f"(exit code {process.returncode}): {last_line(log, start)}"
    raise ServerStartError(f"serve.py did not start on {url} {reason} (log: {log})")


class ServerStartError(RuntimeError):
    """serve.py exited or did not answer /health in time; the message ends with its last log line."""


def last_line(log: Path, start: int) -> str:
    """The last non-empty line written to log after byte offset start."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def serve_targets(rows: list[dict]) -> list[dict]:
    """Issue targets per window: single sentences at concurrency 64 >= 50 % of GET /health's requests/s with
    p99 <= 50 ms; 64-text requests >= 5,000 sentences/s."""
    targets = []
    for window in sorted({r["window_ms"] for r in rows}):
        mine = {(r["scenario"], r["concurrency"]): r for r in rows if r["window_ms"] == window}
        ceiling, single = mine.get(("health", 64)), mine.get(("single", 64))
        if ceiling and single:
            ratio = single["req_per_s"] / ceiling["req_per_s"]
            value = f"{100 * ratio:.0f}% of {ceiling['req_per_s']:,.0f} req/s, p99 {single['p99_ms']:.1f} ms"
            targets.append(
                {
                    "window_ms": window,
                    "target": "single c=64: >= 50% of /health, p99 <= 50 ms",
                    "value": value,
                    "met": ratio >= 0.5 and single["p99_ms"] <= 50,
                }
            )
        for (name, _), row in mine.items():
            if name == "batch64":
                targets.append(
                    {
                        "window_ms": window,
                        "target": "64-text requests: >= 5,000 sentences/s",
                        "value": f"{row['sentences_per_s']:,.0f} sentences/s",
                        "met": row["sentences_per_s"] >= 5000,
                    }
                )
    return targets


def scenario(
    load: LoadTest, url: str, window: float, spec: tuple, single: list[bytes], batches: list[bytes]
) -> dict:
    """One scenario (name, texts per request, concurrency) against a running server, ``load.repeats`` passes;
    its printed row."""
    name, size, concurrency = spec
    bodies = [None] if size == 0 else single if size == 1 else batches
    requests = load.requests // 4 if size > 1 else load.requests
    load_before = os.getloadavg()[0]
    passes = [
        asyncio.run(drive(url, bodies, concurrency, requests, load.time_cap_s)) for _ in range(load.repeats)
    ]
    row = {"window_ms": window, **scenario_row(name, size, concurrency, passes)}
    spreads = [row["req_per_s_spread_pct"]]
    row["warning"] = timing_warning(load_before, os.getloadavg()[0], spreads, OWN_PROCESSES)
    print(
        f"  window {window:g} ms  {name:<8} c={concurrency:<3} {row['req_per_s']:>8,.0f} req/s "
        f"{row['sentences_per_s']:>8,.0f} sentences/s  p50 {row['p50_ms']:.1f} ms  "
        f"p99 {row['p99_ms']:.1f} ms {row['warning']}",
        flush=True,
    )
    return row


def serve_load_test(load: LoadTest) -> dict:
    """Every scenario against one server per window; prints the table and writes <out>/serve_results.json."""
    out = Path(load.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = corpus.load_reviews(load.data, load.data_dir)
    if splits is not None:
        texts = splits["test"]["text"].tolist()[:4096]
    else:
        texts = synthetic_reviews(1024, seed=0)["text"].tolist()
    single = [json.dumps({"text": t}).encode() for t in texts]
    batches = [json.dumps({"texts": (texts * 2)[i : i + 64]}).encode() for i in range(0, len(texts), 64)]
    machine = machine_info(1)
    rows = []
    for window in load.windows_ms:
        process, url = start_server(load, window, out / "serve_server.log")
        try:
            rows += [scenario(load, url, window, spec, single, batches) for spec in load.scenarios]
        finally:
            process.terminate()
            process.wait(timeout=30)
    targets = serve_targets(rows)
    show(
        "serving: serve.py under load on 127.0.0.1 (median over repeats; spread = (max - min) / median)",
        rows,
        [
            "window_ms",
            "scenario",
            "concurrency",
            "texts_per_request",
            "req_per_s",
            "req_per_s_spread_pct",
            "sentences_per_s",
            "p50_ms",
            "p99_ms",
            "errors",
            "warning",
        ],
    )
    show("serving targets", targets)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {
        "machine": machine,
        "settings": dataclasses.asdict(load),
        "student": load.student or f"models/{bundled_student().name}",  # serve.py's default: the bundled one
        "sentences": len(texts),
        "rows": rows,
        "targets": targets,
    }
    utils.atomic_write_json(out / "serve_results.json", results)
    print(f"wrote {out / 'serve_results.json'}")
    return results


def main(argv: list[str] | None = None) -> dict:
    """python loadtest.py [--student DIR] [--backend B] [--requests N] [--time-cap S] [--repeats R] ..."""
    parser = argparse.ArgumentParser(description=serve_load_test.__doc__)
    add_arguments(parser, LoadTest, skip=["scenarios"])
    args = parser.parse_args(argv)
    try:
        load = from_args(LoadTest, args)
        # a missing or broken student fails here, before a server starts
        Student.from_pretrained(load.student or bundled_student(), backend=load.backend)
        return serve_load_test(load)  # a --data-dir without the NSMC files fails before a server starts too
    except (ValueError, FileNotFoundError, ServerStartError) as err:
        raise SystemExit(f"loadtest.py: {utils.one_line(err)}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
