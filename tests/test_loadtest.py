"""loadtest.py: the load test of serve.py against a real server, its statistics and targets, and when a
timing counts as busy."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

import loadtest
import timing


def test_spread_and_busy_or_unstable_warnings():
    assert timing.spread_pct([100.0, 110.0, 90.0]) == pytest.approx(20.0)
    assert timing.spread_pct([5.0]) == 0.0
    assert timing.timing_warning(0.0, 0.1, [1.0, 2.0]) == ""
    cpus = len(os.sched_getaffinity(0))
    assert timing.timing_warning(cpus, 0.1, [1.0]).startswith("BUSY")
    assert "UNSTABLE: repeats differ by 25%" in timing.timing_warning(0.0, 0.0, [25.0])


def test_serving_targets_compare_with_the_health_ceiling():
    passes = [
        {"requests": 100, "errors": 0, "seconds": 0.5, "latencies": [0.01] * 90 + [0.2] * 10},
        {"requests": 100, "errors": 1, "seconds": 1.0, "latencies": [0.02] * 90 + [0.1] * 10},
    ]
    row = loadtest.scenario_row("single", 1, 64, passes)
    assert row["req_per_s"] == pytest.approx(150)
    assert row["req_per_s_spread_pct"] == pytest.approx(100 * 100 / 150)
    assert row["requests"] == 200 and row["errors"] == 1 and row["sentences_per_s"] == row["req_per_s"]
    assert row["p50_ms"] == pytest.approx(15) and row["p99_ms"] == pytest.approx(150)
    health = {"window_ms": 2.0, "scenario": "health", "concurrency": 64, "req_per_s": 250.0}
    batch = {"window_ms": 2.0, "scenario": "batch64", "concurrency": 4, "sentences_per_s": 6000.0}
    targets = loadtest.serve_targets([health, {"window_ms": 2.0, **row}, batch])
    assert [t["met"] for t in targets] == [False, True]  # 150 / 250 = 60 % of the ceiling, but p99 > 50 ms
    assert "60% of 250 req/s" in targets[0]["value"]


def test_load_test_runs_against_a_real_server(run_dir, tmp_path):
    load = loadtest.LoadTest(
        student=str(run_dir / "student"),
        backend="onnx",
        windows_ms=(2.0,),
        requests=24,
        time_cap_s=5,
        repeats=2,
        out=str(tmp_path),
        scenarios=(("health", 0, 4), ("single", 1, 4), ("batch64", 64, 2)),
    )
    results = loadtest.serve_load_test(load)
    rows = {row["scenario"]: row for row in results["rows"]}
    assert set(rows) == {"health", "single", "batch64"} and all(r["errors"] == 0 for r in rows.values())
    assert rows["single"]["requests"] == 48
    assert rows["batch64"]["requests"] == 12  # a quarter as many 64-text requests
    assert rows["batch64"]["sentences_per_s"] == pytest.approx(64 * rows["batch64"]["req_per_s"])
    assert 0 < rows["single"]["p50_ms"] <= rows["single"]["p99_ms"]
    written = json.loads((tmp_path / "serve_results.json").read_text())
    assert written["rows"] == results["rows"] and written["student"] == str(run_dir / "student")
    with pytest.raises(SystemExit, match="requests and repeats must be >= 1"):
        loadtest.main(["--requests", "0"])
    with pytest.raises(SystemExit, match="^loadtest.py: student directory not found: "):
        loadtest.main(["--student", str(tmp_path / "nope"), "--out", str(tmp_path / "no-server")])
    assert not (tmp_path / "no-server").exists()  # refused before any server started
    with pytest.raises(SystemExit, match="^loadtest.py: .*ratings_train.txt not found: --data-dir must"):
        loadtest.main(["--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "no-data")])
    assert not (tmp_path / "no-data" / "serve_server.log").exists()


def test_a_server_that_exits_at_start_is_reported_in_one_line(run_dir, tmp_path, monkeypatch):
    start_server = loadtest.start_server

    def student_gone(load, window_ms, log):  # the student vanishes between our check and serve.py's start
        return start_server(dataclasses.replace(load, student=str(tmp_path / "gone")), window_ms, log)

    monkeypatch.setattr(loadtest, "start_server", student_gone)
    argv = ["--student", str(run_dir / "student"), "--backend", "onnx", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        loadtest.main(argv)
    message = str(exc.value)
    assert message.startswith("loadtest.py: serve.py did not start on http://127.0.0.1:")
    assert "\n" not in message
    assert "(exit code 1): serve.py: student directory not found: " in message
    assert message.endswith(f"(log: {tmp_path / 'serve_server.log'})")


def test_busy_counts_only_the_load_beyond_the_measurements_own():
    # the load test runs the server's worker and the load generator: their own load of 2 is not busy
    assert loadtest.OWN_PROCESSES == loadtest.SERVER_WORKERS + 1 == 2
    assert not timing.machine_busy(2.0, cpus=2, own_processes=loadtest.OWN_PROCESSES)
    assert not timing.machine_busy(3.0, cpus=2, own_processes=loadtest.OWN_PROCESSES)  # others: half the CPUs
    assert timing.machine_busy(3.5, cpus=2, own_processes=loadtest.OWN_PROCESSES)
    assert not timing.machine_busy(10.0, cpus=16, own_processes=loadtest.OWN_PROCESSES)
    assert timing.machine_busy(10.5, cpus=16, own_processes=loadtest.OWN_PROCESSES)
    # the speed bench counts every process, as before: busy above half the CPUs
    assert not timing.machine_busy(1.0, cpus=2) and timing.machine_busy(1.5, cpus=2)
    cpus = timing.available_cpus()
    assert timing.timing_warning(cpus / 2 + 2, 0.0, [1.0], own_processes=2) == ""
    warning = timing.timing_warning(0.0, cpus / 2 + 2.5, [1.0], own_processes=2)
    assert warning == f"BUSY: load 0.0 -> {cpus / 2 + 2.5:.1f} on {cpus} CPUs, 2 of it our own"


def test_a_scenario_is_not_busy_under_its_own_load(monkeypatch):
    async def drive(url, bodies, concurrency, requests, time_cap_s):
        return {"requests": 10, "errors": 0, "seconds": 1.0, "latencies": [0.001] * 10}

    def scenario_under(load: float) -> dict:
        monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
        spec = ("single", 1, 1)
        return loadtest.scenario(loadtest.LoadTest(repeats=2), "http://127.0.0.1:1", 0.0, spec, [b"{}"], [])

    monkeypatch.setattr(loadtest, "drive", drive)
    cpus = timing.available_cpus()
    assert scenario_under(cpus / 2 + loadtest.OWN_PROCESSES)["warning"] == ""
    assert scenario_under(cpus / 2 + loadtest.OWN_PROCESSES + 1)["warning"].startswith("BUSY: ")
