"""The results pages: results/*.md written from the measurements in results/, never typed by hand.

    python results_pages.py [--results results] [--students models/nsmc-kiwi-kd models/nsmc-base-kd ...]
                            [--readme README.md]

From bench.py's bench_results.json and bench_ladder_results.json, peers.py's peers_results.json, loadtest.py's
serve_results.json, paired.py's paired.json and ladder.py's runs.csv in --results, it writes speed.md,
cache.md, peers.md, serving.md and README.md (an index of the pages and the headline table) there, each with
the machine it was measured on. A missing file is skipped with a one-line note. The headline's students
(default: the bundled distilled ones, config.BUNDLED_NAMES ending in -kd) have bench.py's timing of their
WordPiece size preset, or, for another tokenizer or a custom size, paired.py's end-to-end timing of the
student itself. The headline table also replaces the block between <!-- headline:start --> and
<!-- headline:end --> in --readme when that file has them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import settings
import utils
from config import BUNDLED_NAMES
from ladder import ensemble_legend, ladder_rows, latest_runs, read_json, replace_block, validation_mean
from manifest import ONNX_DIR
from model import ONNX_FILES
from report import human_bytes, markdown
from settings import setting, validate_fields
from timing import machine_busy


@dataclass
class PagesConfig:
    """Where the measurements are and what else the pages read (the ``results_pages.py`` command line)."""

    results: str = setting(
        "results", "folder of the measurements (bench_results.json, runs.csv, ...) and of the pages written"
    )
    students: tuple[str, ...] = setting(
        tuple(f"models/{name}" for name in BUNDLED_NAMES if name.endswith("-kd")),
        "bundled distilled students of the headline table (one without metrics.json is skipped with a note)",
    )
    readme: str = setting(
        "README.md", "a file whose block between the headline markers is rewritten (when it has them)"
    )

    def __post_init__(self) -> None:
        validate_fields(self)


BENCH_FILES = ("bench_results.json", "bench_ladder_results.json")  # bench.py runs: a section each
PEER_FILES = ("bench_ladder_results.json", "peers_results.json")  # the first with peers heads the table
SERVE_FILE = "serve_results.json"
PAIRED_FILE = "paired.json"  # paired.py: the speed of a student that no bench.py preset describes
RUNS_FILE = "runs.csv"
HEADLINE_MARKERS = ("<!-- headline:start -->", "<!-- headline:end -->")
HEADLINE_BACKEND = "onnx-int8"  # the students' speed and size in the headline: the form serve.py runs
LIBRARIES = ("python", "torch", "onnxruntime", "transformers", "tokenizers")
DASH = "—"


def note(text: str) -> None:
    """A one-line note on stderr (a file skipped, a block not written)."""
    print(f"results_pages.py: {text}", file=sys.stderr)


def read_measurements(folder: Path) -> dict[str, dict]:
    """Each JSON file the pages read that is in ``folder``, by name; a note for each one that is not."""
    data = {}
    for name in dict.fromkeys((*BENCH_FILES, *PEER_FILES, SERVE_FILE, PAIRED_FILE)):
        if (folder / name).is_file():
            data[name] = json.loads((folder / name).read_text(encoding="utf-8"))
        else:
            note(f"skipped {folder / name}: no such file")
    return data


# -----------------------------------------------------------------------------
# formatting


def significant(value: float) -> str:
    """Three significant digits without an exponent: 0.0790 -> '0.079', 14.57 -> '14.6', 1211.4 -> '1,211'."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def with_spread(row: dict, key: str) -> str:
    """``row[key]`` to three significant digits, with the spread of its repeats when the row records it."""
    spread = row.get(f"{key}_spread_pct")
    return significant(row[key]) + (f" ({spread:.0f} %)" if spread is not None else "")


def times(value: float) -> str:
    """A ratio: 515.5 -> '516×'."""
    return f"{value:,.0f}×"


def yes_no(flag: bool) -> str:
    """A verdict as the data gives it."""
    return "yes" if flag else "no"


def measured_on(path: Path) -> str:
    """When the file's measurements were taken, as far as is known: the files hold no date, so the date
    git committed the file (none for a file that is not committed as it is)."""
    git = ["git", "-C", str(path.parent)]
    try:
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", path.name], capture_output=True, text=True
        )
        date = subprocess.run(
            [*git, "log", "-1", "--format=%cs", "--", path.name], capture_output=True, text=True
        )
    except OSError:  # no git
        return "date not recorded"
    if changed.returncode or changed.stdout.strip() or not date.stdout.strip():
        return "date not recorded (the file is not committed as it is)"
    return f"date not recorded; the file was committed on {date.stdout.strip()}"


def machine_line(machine: dict, path: Path) -> str:
    """Where and when a file was measured: CPU, threads, library versions, load average, date."""
    start, end = machine["load_average_at_start"][0], machine["load_average_at_end"][0]
    busy = machine_busy(max(start, end), machine["cpus_available"])
    versions = ", ".join(f"{lib} {machine[lib]}" for lib in LIBRARIES if lib in machine)
    return (
        f"**Machine** (`{path.name}`): {machine['cpu']}, {machine['cpus_available']} of {machine['cpus']} "
        f"CPUs, {machine['threads']} thread(s), {machine['platform']}; {versions}; 1-minute load average "
        f"{start:.2f} at the start and {end:.2f} at the end"
        + (" (**BUSY**: above half the CPUs)" if busy else "")
        + f"; {measured_on(path)}."
    )


def timing_note(rows: list[dict]) -> str:
    """What the spread and warning columns mean, or that the file records neither."""
    text = "Each time is the median over the repeats"
    if not any(key.endswith("_spread_pct") for row in rows for key in row):
        return text + "; this file records no spread and no BUSY/UNSTABLE check."
    text += "; in brackets the spread, (max − min) / median."
    if any("warning" in row for row in rows):
        text += (
            " `warning`: BUSY (load above half the CPUs) or UNSTABLE (repeats that disagree), as measured."
        )
    return text


def join(*parts: str) -> str:
    """The non-empty parts, a blank line apart."""
    return "\n\n".join(part for part in parts if part)


def section(title: str, *parts: str) -> str:
    """A titled section of the non-empty parts; '' when there are none."""
    return join(title, *parts) if any(parts) else ""


def table(rows: list[dict]) -> str:
    """A GitHub table of rows that may lack some columns (shown as a dash); '' for no rows."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return markdown([{c: row.get(c, DASH) for c in columns} for row in rows]) if rows else ""


# -----------------------------------------------------------------------------
# speed.md and cache.md: bench.py


def speed_rows(rows: list[dict]) -> list[dict]:
    """bench.py's speed section: end to end (text in) and model only (token ids in), batch 64 and 1."""
    warned = any("warning" in row for row in rows)
    return [
        {
            "model": r["model"],
            "backend": r["backend"],
            "params": f"{r['params']:,}",
            "sentences/s, batch 64": with_spread(r, "end_to_end_batch64_per_s"),
            "model only, batch 64": with_spread(r, "model_only_batch64_per_s"),
            "ms, batch 1 (median)": with_spread(r, "end_to_end_batch1_median_ms"),
            "ms, batch 1 (p90)": significant(r["end_to_end_batch1_p90_ms"]),
        }
        | ({"warning": r.get("warning", "")} if warned else {})
        for r in rows
    ]


def ratio_rows(rows: list[dict]) -> list[dict]:
    """How many times faster each student is than each teacher, end to end, at batch 64 and batch 1."""
    table: dict[tuple, dict] = {}
    for r in rows:
        cells = table.setdefault(
            (r["student"], r["backend"]), {"student": r["student"], "backend": r["backend"]}
        )
        cells[f"× {r['teacher']}, batch 64"] = times(r["end_to_end_batch64_ratio"])
        cells[f"× {r['teacher']}, batch 1"] = times(r["end_to_end_batch1_ratio"])
    return list(table.values())


def size_rows(rows: list[dict]) -> list[dict]:
    """Parameters and file size of each model in each format it was saved in."""
    table: dict[str, dict] = {}
    for r in rows:
        cells = table.setdefault(r["model"], {"model": r["model"], "params": f"{r['params']:,}"})
        cells[r["format"]] = human_bytes(r["bytes"])
    return list(table.values())


def reduction_rows(rows: list[dict]) -> list[dict]:
    """How many times smaller each student is than each teacher: in parameters and in each file format."""
    table: dict[tuple, dict] = {}
    for r in rows:
        for measure, value in (
            ("parameters", r["params_reduction"]),
            (f"{r['format']} file", r["bytes_reduction"]),
        ):
            cells = table.setdefault(
                (r["student"], measure), {"student": r["student"], "smaller in": measure}
            )
            cells[f"than {r['teacher']}"] = times(value)
    return list(table.values())


def exported_rows(rows: list[dict]) -> list[dict]:
    """Test accuracy of each exported form of a run, its difference from torch in points, and whether every
    form is within bench.py's tolerance."""
    runs: dict[str, list[dict]] = {}
    for r in rows:
        runs.setdefault(r["run"], []).append(r)
    table = []
    for run, forms in runs.items():
        tolerance = next(key for key in forms[0] if key.startswith("within_"))
        cells = {"run": run, "test sentences": f"{forms[0]['test_sentences']:,}"}
        for r in forms:
            delta = "" if r["backend"] == "torch" else f" ({r['delta_points']:+.3f})"
            cells[f"{r['backend']} (%)"] = f"{100 * r['accuracy']:.3f}{delta}"
        cells[tolerance.replace("_", " ")] = "yes" if all(r[tolerance] for r in forms) else "no"
        table.append(cells)
    return table


def target_rows(rows: list[dict]) -> list[dict]:
    """bench.py's speed targets with its verdicts (its thresholds are in bench.py, not in the data)."""
    shown = []
    for r in rows:
        ratio = next(k for k in r if k.startswith("x_"))
        teacher, batch = ratio.removeprefix("x_").rsplit("_", 1)
        shown.append(
            {
                "backend": r["backend"],
                "mode": r["mode"].replace("_", " "),
                "sentences/s, batch 64": significant(r["batch64_per_s"]),
                "batch 64 met": yes_no(r["batch64_met"]),
                "ms, batch 1 (median)": significant(r["batch1_median_ms"]),
                "batch 1 met": yes_no(r["batch1_met"]),
                f"× {teacher}, {batch.replace('batch', 'batch ')}": times(r[ratio]),
                "ratio met": yes_no(r["ratio_met"]),
            }
        )
    return shown


def speed_section(path: Path, bench: dict) -> str:
    """One bench.py run's speed, size, exported accuracy and targets, under the machine it ran on."""
    sentences = bench["sentences"]
    about = (
        f"{sentences['count']:,} sentences: {sentences['source']}, mean "
        f"{sentences['mean_student_tokens']:.1f} student tokens; median of {bench['settings']['repeats']} "
        "repeats. Teachers are their architectures with random weights (timed, not trained). End to end: "
        "text in, label out; model only: token ids in."
    )
    return section(
        f"## `{path.name}`",
        machine_line(bench["machine"], path),
        about,
        table(speed_rows(bench.get("speed", []))),
        timing_note(bench.get("speed", [])),
        section(
            "### Times faster than each teacher (end to end)",
            table(ratio_rows(bench.get("speed_ratios", []))),
        ),
        section(
            "### Size",
            table(size_rows(bench.get("size", []))),
            table(reduction_rows(bench.get("size_reduction", []))),
        ),
        section(
            "### Accuracy of the exported forms", table(exported_rows(bench.get("exported_accuracy", [])))
        ),
        section("### Targets (bench.py's verdicts)", table(target_rows(bench.get("targets", [])))),
    )


def cache_rows(rows: list[dict]) -> list[dict]:
    """Seconds per distillation epoch with the logits cache and with the teacher in the training loop."""
    return [
        {
            "teacher": r["teacher"],
            "student": r["student"],
            "epoch with the cache (s)": f"{r['epoch_s_with_cache']:,.0f}",
            "epoch, teacher in the loop (s)": f"{r['epoch_s_teacher_in_loop']:,.0f}",
            "faster": f"{r['speedup']:.1f}×",
            "building the cache (s)": f"{r['cache_build_s']:,.0f}",
            "how": (
                f"{'extrapolated' if r['extrapolated'] else 'measured'}: {r['measured_student_steps']} "
                f"student steps and {r['measured_teacher_batches']} teacher batches of {r['batch_size']}, "
                f"to an epoch of {r['epoch_examples']:,} examples ({r['steps_per_epoch']:,} steps)"
            ),
        }
        for r in rows
    ]


def cache_section(path: Path, bench: dict) -> str:
    """One bench.py run's cache section under the machine it ran on."""
    return section(
        f"## `{path.name}`", machine_line(bench["machine"], path), table(cache_rows(bench["cache"]))
    )


# -----------------------------------------------------------------------------
# peers.md and serving.md


def peer_details(row: dict) -> str:
    """A peer's settings and counts beyond the table's columns: ``features 371,111``, ``dim=64 ...``."""
    shown = {"model", "kind", "test_accuracy", "train_seconds", "size_bytes"}
    details = []
    for key, value in row.items():
        if key in shown or key.startswith(("batch1_", "batch64_")):
            continue
        if isinstance(value, dict):
            details.append(" ".join(f"{k}={v}" for k, v in value.items()))
        else:
            details.append(
                f"{key.replace('_', ' ')} {value:,.0f}" if isinstance(value, float) else f"{key} {value:,}"
            )
    return "; ".join(details)


def peer_rows(rows: list[dict]) -> list[dict]:
    """The n-gram peers: accuracy, training time, speed and size."""
    return [
        {
            "model": r["model"],
            "test acc (%)": f"{100 * r['test_accuracy']:.2f}",
            "train (s)": f"{r['train_seconds']:,.0f}",
            "sentences/s, batch 64": with_spread(r, "batch64_per_s"),
            "ms, batch 1 (median)": with_spread(r, "batch1_median_ms"),
            "size": human_bytes(r["size_bytes"]),
            "details": peer_details(r),
        }
        for r in rows
    ]


def peers_section(path: Path, results: dict) -> str:
    """One file's peers under the machine they were trained and timed on."""
    return section(
        f"## `{path.name}`",
        machine_line(results["machine"], path),
        table(peer_rows(results["peers"])),
        timing_note(results["peers"]),
    )


def serve_rows(rows: list[dict]) -> list[dict]:
    """The load test: one row per batching window and request scenario."""
    return [
        {
            "window (ms)": f"{r['window_ms']:g}",
            "scenario": r["scenario"],
            "texts / request": r["texts_per_request"],
            "concurrency": r["concurrency"],
            "requests (all repeats)": f"{r['requests']:,}",
            "errors": r["errors"],
            "req/s": with_spread(r, "req_per_s"),
            "sentences/s": significant(r["sentences_per_s"]),
            "p50 ms": significant(r["p50_ms"]),
            "p99 ms": significant(r["p99_ms"]),
            "warning": r.get("warning", ""),
        }
        for r in rows
    ]


def serve_section(path: Path, results: dict) -> str:
    """loadtest.py's rows and its verdicts on the targets, under the machine it ran on."""
    s = results["settings"]
    student = results.get("student") or s["student"]  # older files recorded only a --student given
    about = (
        f"serve.py ({s['backend']}) with "
        + (f"`{student}`" if student else "its default student of the time (not recorded)")
        + f", requests drawn from {results['sentences']:,} sentences: up to {s['requests']:,} requests "
        f"per repeat within {s['time_cap_s']:g} s, median of {s['repeats']} repeats (`requests`: all repeats "
        "together); the client and the server share the machine."
    )
    targets = [
        {
            "window (ms)": f"{t['window_ms']:g}",
            "target": t["target"],
            "measured": t["value"],
            "met": yes_no(t["met"]),
        }
        for t in results.get("targets", [])
    ]
    return join(
        machine_line(results["machine"], path),
        about,
        table(serve_rows(results["rows"])),
        timing_note(results["rows"]),
        section("## Targets (loadtest.py's verdicts)", table(targets)),
    )


# -----------------------------------------------------------------------------
# the headline table: peers, students without and with a teacher, the teacher


def mark(footnotes: dict[str, int], text: str) -> str:
    """``[n]``: the number of the footnote ``text`` (a new one the first time)."""
    return f"[{footnotes.setdefault(text, len(footnotes) + 1)}]"


def seeds_text(row: dict) -> str:
    """A ladder row's test accuracy over its seeds: ``86.59 ± 0.17 (3 seeds)``."""
    return f"{row['test acc (%)']} ({row['seeds']} seed{'s' * (row['seeds'] > 1)})"


def peer_headline(folder: Path, data: dict, footnotes: dict[str, int]) -> list[dict]:
    """The peers of the first file that has them, its machine in a footnote."""
    name = next((n for n in PEER_FILES if data.get(n, {}).get("peers")), None)
    if name is None:
        return []
    where = mark(footnotes, machine_line(data[name]["machine"], folder / name))
    return [
        {
            "model": p["model"],
            "test acc (%)": f"{100 * p['test_accuracy']:.2f}",
            "params": f"{p['features']:,} features" if "features" in p else DASH,
            "size": human_bytes(p["size_bytes"]),
            "sentences/s, batch 64": f"{p['batch64_per_s']:,.0f} {where}",
        }
        for p in data[name]["peers"]
    ]


def is_preset(metrics: dict) -> bool:
    """Whether bench.py's timings describe the student: a size preset over a WordPiece tokenizer."""
    return (
        metrics.get("student_size", "custom") != "custom"
        and metrics.get("tokenizer", "wordpiece") == "wordpiece"
    )


def student_speed(student: Path, metrics: dict, folder: Path, data: dict, footnotes: dict[str, int]) -> str:
    """The student's end-to-end sentences/s with its footnote: paired.py's timing of the student itself when
    paired.json has it, else bench.py's first measurement of its size preset in HEADLINE_BACKEND (WordPiece
    presets only: a preset's layers over another tokenizer run at another speed)."""
    speed = paired_speed(student, folder, data, footnotes)
    if speed != DASH or not is_preset(metrics):
        return speed
    for name in BENCH_FILES:
        for r in data.get(name, {}).get("speed", []):
            if r["model"] == f"student-{metrics['student_size']}" and r["backend"] == HEADLINE_BACKEND:
                about = (
                    f"Students: bench.py timed its size presets at vocab "
                    f"{data[name]['tokenizers']['student_vocab']:,} (the students' layers with a smaller "
                    f"embedding table), {HEADLINE_BACKEND}, text in, label out. "
                )
                where = mark(footnotes, about + machine_line(data[name]["machine"], folder / name))
                return f"{r['end_to_end_batch64_per_s']:,.0f} {where}"
    return DASH


def paired_speed(student: Path, folder: Path, data: dict, footnotes: dict[str, int]) -> str:
    """paired.py's test sentences/s of the row of ``student``'s folder, with its footnote; DASH if none."""
    results = data.get(PAIRED_FILE, {})
    row = next(
        (
            r
            for r in results.get("rows", [])
            if Path(r["model"]).resolve() == student.resolve() and r.get("test_sentences_per_s")
        ),
        None,
    )
    if row is None:
        return DASH
    s = results["settings"]
    about = (
        "Students: paired.py's one pass of the bundled student (for a row without a teacher: the bundle of "
        "its architecture) over the "
        f"{row['splits']['test']['examples']:,} test reviews, {s['backend']}, "
        f"{s.get('threads', results['machine']['threads'])} thread(s), batches of 64, text in, label out. "
    )
    where = mark(footnotes, about + machine_line(results["machine"], folder / PAIRED_FILE))
    return f"{row['test_sentences_per_s']:,.0f} {where}"


def ladder_groups(path: Path) -> tuple[pd.DataFrame, list[dict]]:
    """runs.csv and ladder.py's rows of it (each folder's latest run per teacher, grouped over seeds)."""
    if not path.is_file():
        note(f"skipped {path}: no such file (the headline shows the bundled students' own accuracy)")
        return pd.DataFrame(), []
    frame = pd.read_csv(path, dtype={"unlabeled": object, "options": object})  # text, even when all empty
    return frame, ladder_rows(latest_runs(frame))


def bundled_group(metrics: dict, frame: pd.DataFrame, groups: list[dict]) -> dict | None:
    """The ladder row of the run a bundled student comes from (same folder and training time), if any."""
    if frame.empty:
        return None
    same = frame.index[
        (frame["run_dir"] == metrics.get("run_dir"))
        & (frame["train_seconds"] == metrics.get("train_seconds"))
    ]
    return next((g for g in groups if set(same) & set(g["_runs"])), None)


def no_teacher_row(group: dict, frame: pd.DataFrame, groups: list[dict], speed: str) -> dict | None:
    """The same student trained without a teacher: the ladder row with the most seeds (then the best
    validation mean; test is shown, never chosen on)."""
    same = [g for g in groups if g["student"] == group["student"] and g["_members"] == "none"]
    if not same:
        return None
    best = max(same, key=lambda g: (g["seeds"], validation_mean(g)))
    run = frame.loc[best["_runs"][0]]
    return {
        "model": f"{best['student']}, no teacher",
        "test acc (%)": seeds_text(best),
        "params": f"{int(run['params']):,}",
        "size": f"{human_bytes(run['size_bytes'])} (safetensors)",
        "sentences/s, batch 64": speed,
    }


def distilled_row(path: Path, metrics: dict, group: dict | None, speed: str) -> dict:
    """A bundled distilled student: its ladder row's accuracy over seeds (and its own), its int8 ONNX size."""
    own = f"{100 * metrics['test_accuracy']:.2f}"
    int8 = path / ONNX_DIR / ONNX_FILES[HEADLINE_BACKEND]
    size = f"{human_bytes(int8.stat().st_size)} (int8 ONNX)" if int8.is_file() else DASH
    return {
        "model": f"`{path}`"
        + (f": {group['student']}, {group['KD']}, {group['transfer set']}" if group else ""),
        "test acc (%)": f"{seeds_text(group)}; this file {own}" if group else own,
        "params": f"{metrics['params']:,}",
        "size": size,
        "sentences/s, batch 64": speed,
    }


def teacher_row(metrics: dict, group: dict | None) -> dict:
    """The teacher a bundled student was distilled from (the ladder's name and test accuracy)."""
    name = group["teacher"].split(" (")[0] if group else Path(str(metrics.get("teacher"))).name
    ensemble = group is not None and "×" in group["_members"]
    accuracy = metrics.get("teacher_test_accuracy")
    return {
        "model": f"{'ensemble ' if ensemble else ''}teacher `{name}`",
        "test acc (%)": f"{100 * accuracy:.2f}" if accuracy is not None else DASH,
        "params": DASH,
        "size": DASH,
        "sentences/s, batch 64": DASH,
    }


def headline(cfg: PagesConfig, data: dict) -> str:
    """The headline table (peers, the bundled students without and with their teacher, the teacher) with its
    footnotes: where each speed was measured; '' when there is nothing to show."""
    folder, footnotes = Path(cfg.results), {}
    frame, groups = ladder_groups(folder / RUNS_FILE)
    peers, plain, distilled, teachers, used = peer_headline(folder, data, footnotes), [], [], {}, []
    for student in map(Path, cfg.students):
        metrics = read_json(student / "metrics.json")
        if metrics.get("test_accuracy") is None:
            note(f"skipped {student}: no metrics.json with a test accuracy")
            continue
        group = bundled_group(metrics, frame, groups)
        speed = student_speed(student, metrics, folder, data, footnotes)
        if group:
            plain.append(no_teacher_row(group, frame, groups, speed))
            used.append(group)
        distilled.append(distilled_row(student, metrics, group, speed))
        teacher = teacher_row(metrics, group)
        teachers.setdefault(teacher["model"], teacher)
    rows = peers + [r for r in plain if r] + distilled + list(teachers.values())
    about = (
        "Test accuracy: mean ± std over the seeds of the run's ladder row (ladder.py's grouping); the "
        "peers and the teacher are single fits."
    )
    notes = "\n".join(f"- [{n}] {text}" for text, n in footnotes.items())
    return join(table(rows), ensemble_legend(used), about, notes) if rows else ""


# -----------------------------------------------------------------------------
# the pages


def speed_page(folder: Path, data: dict) -> tuple[str, list[str]]:
    """speed.md's body and the files it comes from: a section per bench.py run."""
    names = [name for name in BENCH_FILES if data.get(name, {}).get("speed")]
    return join(*(speed_section(folder / name, data[name]) for name in names)), names


def cache_page(folder: Path, data: dict) -> tuple[str, list[str]]:
    """cache.md's body and the files it comes from: a section per bench.py run with a cache section."""
    names = [name for name in BENCH_FILES if data.get(name, {}).get("cache")]
    why = (
        "Distillation reads the teacher's logits from a cache built once, instead of running the teacher in "
        "every training step: the cache costs one pass of the teacher and is reused by every epoch and every "
        "student trained from it. bench.py times the student's training steps and the teacher's batches on "
        "the same CPU and compares one epoch each way."
    )
    sections = [cache_section(folder / name, data[name]) for name in names]
    return (join(why, *sections) if names else ""), names


def peers_page(folder: Path, data: dict) -> tuple[str, list[str]]:
    """peers.md's body and the files it comes from: the n-gram peers of each file that has them."""
    names = [name for name in PEER_FILES if data.get(name, {}).get("peers")]
    about = (
        "The cheap models a user would try first, trained on the students' train split and evaluated on the "
        "same test set (peers.py, also bench.py's section 6), each file under the machine it ran on."
    )
    sections = [peers_section(folder / name, data[name]) for name in names]
    return (join(about, *sections) if names else ""), names


def serving_page(folder: Path, data: dict) -> tuple[str, list[str]]:
    """serving.md's body and its file: loadtest.py's run of serve.py."""
    if SERVE_FILE not in data:
        return "", []
    return serve_section(folder / SERVE_FILE, data[SERVE_FILE]), [SERVE_FILE]


# file name -> (title, one line for the index, the page's body and sources)
PAGES: dict[str, tuple[str, str, Callable[[Path, dict], tuple[str, list[str]]]]] = {
    "speed.md": (
        "Size and CPU speed",
        "students and teacher architectures, per backend (bench.py)",
        speed_page,
    ),
    "cache.md": (
        "Why the cache matters",
        "an epoch with the logits cache and with the teacher in the loop",
        cache_page,
    ),
    "peers.md": (
        "Peers",
        "TF-IDF + LogisticRegression and fastText next to the students (peers.py)",
        peers_page,
    ),
    "serving.md": ("Serving", "serve.py under load, and the targets' verdicts (loadtest.py)", serving_page),
}
# pages of results/ written by something else, listed in the index when they are there
OTHER_PAGES = {
    "ladder.md": (
        "every ladder run grouped over seeds, ordered by validation (with --reference, the paired test "
        "difference to it and its 95 % interval), and the targets (`python ladder.py`)"
    ),
    "paired.md": "each model against TF-IDF+LR on the same examples, with intervals (`python paired.py`)",
    "history.md": "dated record of earlier measurements and how to read them (hand-written)",
}


def command(cfg: PagesConfig) -> str:
    """The command that writes the pages again: the settings that differ from their defaults."""
    parts = ["python results_pages.py"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value != f.default:
            parts.append(
                f"{settings.setting_flag(f)} {' '.join(value) if isinstance(value, tuple) else value}"
            )
    return " ".join(parts)


def generated_line(cfg: PagesConfig, sources: list[str]) -> str:
    """The first line of a page: that it is generated, from what, and the command that writes it again."""
    files = ", ".join(f"`{source}`" for source in sources)
    return f"_Generated by `{command(cfg)}` from {files}: do not edit by hand, run it again._"


def headline_sources(cfg: PagesConfig, data: dict) -> list[str]:
    """The files the headline table reads (paired.json when a student has no bench.py preset)."""
    folder = Path(cfg.results)
    metrics = [read_json(Path(student) / "metrics.json") for student in cfg.students]
    read = (*PEER_FILES, *BENCH_FILES) + (
        (PAIRED_FILE,) if any(m and not is_preset(m) for m in metrics) else ()
    )
    names = [name for name in read if name in data]
    return [str(folder / name) for name in dict.fromkeys(names)] + [str(folder / RUNS_FILE), *cfg.students]


def index_page(cfg: PagesConfig, written: list[str], headline_text: str, sources: list[str]) -> str:
    """results/README.md: a line per page and the headline table."""
    folder = Path(cfg.results)
    lines = [f"- [{name}]({name}): {PAGES[name][0]}: {PAGES[name][1]}" for name in written]
    lines += [
        f"- [{name}]({name}): {about}" for name, about in OTHER_PAGES.items() if (folder / name).is_file()
    ]
    return join(
        generated_line(cfg, sources), "# Results", "\n".join(lines), section("## Headline", headline_text)
    )


def write_readme_block(cfg: PagesConfig, text: str) -> None:
    """The headline between the markers of --readme, when the file has them (else a note)."""
    path = Path(cfg.readme)
    if not path.is_file() or HEADLINE_MARKERS[0] not in path.read_text(encoding="utf-8"):
        note(f"headline not written to {path}: no {HEADLINE_MARKERS[0]} line there")
        return
    replace_block(path, text, HEADLINE_MARKERS)


def write_pages(cfg: PagesConfig) -> list[Path]:
    """Write every page there is data for, the index and the README's headline block; returns the pages."""
    folder = Path(cfg.results)
    data = read_measurements(folder)
    written = []
    for name, (title, _, make) in PAGES.items():
        body, sources = make(folder, data)
        if not body:
            note(f"skipped {folder / name}: none of the files it is made from is there")
            continue
        page = join(generated_line(cfg, [str(folder / s) for s in sources]), f"# {title}", body)
        utils.atomic_write_text(folder / name, page + "\n")
        written.append(name)
    sources = headline_sources(cfg, data)
    text = headline(cfg, data)
    if text:
        write_readme_block(cfg, join(generated_line(cfg, sources), text))
    utils.atomic_write_text(folder / "README.md", index_page(cfg, written, text, sources) + "\n")
    return [folder / name for name in (*written, "README.md")]


def main(argv: list[str] | None = None) -> list[Path]:
    """python results_pages.py [--results results] [--students DIR ...] [--readme README.md]"""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings.add_arguments(parser, PagesConfig)
    try:
        paths = write_pages(PagesConfig(**vars(parser.parse_args(argv))))
    except (ValueError, OSError) as err:
        raise SystemExit(f"results_pages.py: {utils.one_line(err)}") from None
    for path in paths:
        print(f"wrote {path} ({len(path.read_text(encoding='utf-8').splitlines())} lines)")
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
