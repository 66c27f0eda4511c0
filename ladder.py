"""The accuracy ladder: every finished run recorded in results/runs.csv, the README's table regenerated from
it.

    python ladder.py [--runs runs/ladder ...] [--csv results/runs.csv] [--bench bench_out/bench_results.json]
                     [--readme README.md] [--out results/ladder.md]

Runs are grouped by everything but the seed (mean ± std over seeds, transfer-set rows, seconds per epoch,
total time) and checked against issue 10's targets, met or not, beside the peers of a bench.py run (--bench).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import corpus
import settings
import teacher as teachers
import utils
from card import teacher_members
from config import NAMED_FIELDS, SIZE_PRESETS, RunConfig
from model import is_student_dir, read_student_info
from report import human_bytes, merge_csv
from settings import setting, validate_fields


@dataclass
class LadderConfig:
    """Where the ladder's runs and records are (the ``ladder.py`` command line comes from these)."""

    runs: tuple[str, ...] = setting(
        ("runs/ladder",), "folders of the ladder's runs (distil.py student --out)"
    )
    csv: str = setting("results/runs.csv", "every run's record (one row per run folder; updated in place)")
    bench: str | None = setting(None, "a bench_results.json whose peers the targets compare with")
    readme: str | None = setting(
        None, "a file whose block between <!-- ladder:start --> and <!-- ladder:end --> is rewritten"
    )
    out: str = setting("results/ladder.md", "where the generated tables go")

    def __post_init__(self) -> None:
        validate_fields(self)


RUN_COLUMNS = [
    "run_dir",
    "dataset",
    "teacher",
    "unlabeled",
    "vocab_size",
    "student_size",
    "params",
    "size_bytes",
    "alpha",
    "temperature",
    "kd_loss",
    "seed",
    "n_train",
    "epochs_run",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_f1",
    "train_seconds",
    "device",
    "seconds_per_epoch",
    "n_transfer",
    "teacher_members",
    "teacher_test_accuracy",
    "max_epochs",
    "patience",
    "teacher_fingerprint",
    "device_name",
    "options",
]
LADDER_MARKERS = ("<!-- ladder:start -->", "<!-- ladder:end -->")
SIZE_ORDER = {name: i for i, name in enumerate(SIZE_PRESETS)}


def single_teacher_accuracy(name: str) -> float | None:
    """A single teacher's test accuracy: a fine-tuned teacher's teacher.json, or the metrics.json in or beside
    a student folder (a bundle, or runs/<dataset>/<run>/student)."""
    path = Path(name)
    if (path / teachers.TEACHER_INFO).is_file():
        return json.loads((path / teachers.TEACHER_INFO).read_text(encoding="utf-8")).get("test_accuracy")
    if is_student_dir(path):
        return (read_student_info(path)[1] or {}).get("test_accuracy")
    return None


def run_record(metrics: dict, config: dict | None = None) -> dict:
    """One results/runs.csv row from a run's metrics.json and config.json (older runs: the transfer set
    counted from the unlabeled files, as training read them)."""
    row = {key: metrics.get(key) for key in RUN_COLUMNS}
    row["max_epochs"], row["patience"] = (config or {}).get("epochs"), (config or {}).get("patience")
    row["teacher_fingerprint"] = recorded_teacher_fingerprint(config)
    row["options"] = other_settings(config)
    if row["n_transfer"] is None:
        files = metrics.get("unlabeled_files") or ([metrics["unlabeled"]] if metrics.get("unlabeled") else [])
        row["n_transfer"] = metrics["n_train"] + sum(len(corpus.read_unlabeled(f)) for f in files)
    row["teacher_members"] = teacher_members(metrics)
    if row["teacher_test_accuracy"] is None and metrics.get("teacher") and not metrics.get("teachers"):
        row["teacher_test_accuracy"] = single_teacher_accuracy(metrics["teacher"])
    return row


def recorded_teacher_fingerprint(config: dict | None) -> str | None:
    """``sha256:`` and the short hash of the teacher's file fingerprints in a run's config.json (every
    member's for an ensemble; the prefix keeps an all-digit hash a string in the CSV): a teacher of the same
    name trained again, on another machine say, gets another."""
    prints = ((config or {}).get("fingerprints") or {}).get("teacher")
    return "sha256:" + utils.short_hash(prints) if prints else None


# Settings the ladder shows in columns of their own (or the run's name, or that only repeat a run: the seed).
LADDER_COLUMNS = NAMED_FIELDS | {"teacher_weights", "epochs", "patience"}


def other_settings(config: dict | None) -> str:
    """A run's other settings that differ from their defaults, ``pooling=max dropout=0.3`` (pooling,
    dropout, lr, split, ...: rows that differ in them are not one row); "" for a run without config.json."""
    config = config or {}
    return " ".join(
        f"{f.name}={config[f.name]}"
        for f in dataclasses.fields(RunConfig)
        if f.name in config and f.name not in LADDER_COLUMNS and config[f.name] != f.default
    )


def teacher_identity(frame: pd.DataFrame) -> pd.Series:
    """What tells teachers of the same name apart: the fingerprint of their files, or, for runs recorded
    before fingerprints were (no config.json left), the teacher's test accuracy; "" without a teacher."""
    accuracy = frame["teacher_test_accuracy"].map(lambda a: f"test {a:.5f}", na_action="ignore")
    return frame["teacher_fingerprint"].astype(object).fillna(accuracy).fillna("")


def record_runs(runs_dirs: Sequence[str | Path], csv: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Add every finished run under runs_dirs to the CSV; returns the whole record and the run folders found
    now. A run recorded before (same folder and training time) is replaced; a run trained again in the same
    folder is a new row, so the CSV keeps the history (the ladder shows each folder's latest row per
    teacher)."""
    found = [path.parent for runs_dir in runs_dirs for path in sorted(Path(runs_dir).glob("**/metrics.json"))]
    records = [
        run_record(metrics, read_json(folder / "config.json"))
        for folder in found
        if (metrics := read_json(folder / "metrics.json")).get("test_accuracy") is not None
    ]
    new = pd.DataFrame(records, columns=RUN_COLUMNS)
    return merge_csv(csv, new, ["run_dir", "train_seconds"]), new["run_dir"].tolist()


def read_json(path: Path) -> dict:
    """A JSON file's content ({} when it is missing)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def transfer_set(unlabeled: object) -> str:
    """``train`` plus the stem of each unlabeled file: ``train + unlabeled + nsmc-aug30k``."""
    if pd.isna(unlabeled) or not unlabeled:
        return "train"
    return " + ".join(["train", *(Path(part).stem for part in str(unlabeled).split("+"))])


def kd_setting(run: pd.Series) -> str:
    """A distilled row's loss: ``KL T2 α0.1`` or ``MSE α0.1`` (the temperature only softens KL)."""
    if run["kd_loss"] == "mse":
        return f"MSE α{run['alpha']:g}"
    return f"{str(run['kd_loss']).upper()} T{run['temperature']:g} α{run['alpha']:g}"


def mean_std(values: pd.Series, scale: float = 100.0) -> str:
    """``86.12 ± 0.08`` (percent) over seeds; the value alone for one seed."""
    text = f"{scale * values.mean():.2f}"
    return text + (f" ± {scale * values.std():.2f}" if len(values) > 1 else "")


def ladder_rows(frame: pd.DataFrame) -> list[dict]:
    """The ladder: runs grouped by everything but the seed (a teacher by its files, not only its name),
    ordered by student size, vocabulary, teacher and transfer set size, with each row's cost (transfer rows,
    seconds per epoch, total minutes) and the frame's index of its runs (``_runs``)."""
    keys = ["dataset", "student_size", "vocab_size", "teacher_members", "teacher_identity", "unlabeled"]
    keys += ["alpha", "temperature", "kd_loss", "max_epochs", "patience", "options"]
    frame = frame.assign(teacher_identity=teacher_identity(frame), options=frame["options"].astype(object))
    several_datasets = frame["dataset"].nunique() > 1
    rows = []
    blanks = {"unlabeled": "", "max_epochs": 0, "patience": 0, "options": ""}
    for _, group in frame.fillna(blanks).groupby(keys, sort=False):
        first = group.iloc[0]
        distilled = first["teacher_members"] != "none"
        teacher_acc = group["teacher_test_accuracy"].dropna()
        rows.append(
            {
                "student": (f"{first['dataset']}: " if several_datasets else "")
                + f"{first['student_size']} v{int(first['vocab_size'])}"
                + (f" ({first['options']})" if first["options"] else ""),
                "teacher": (first["teacher"] if "×" in first["teacher_members"] else first["teacher_members"])
                + (f" ({100 * teacher_acc.iloc[0]:.2f})" if len(teacher_acc) else ""),
                "KD": kd_setting(first) if distilled else "",
                "transfer set": transfer_set(first["unlabeled"]) if distilled else "",
                "rows": f"{int(first['n_transfer']):,}",
                "seeds": len(group),
                "test acc (%)": mean_std(group["test_accuracy"]),
                "val acc (%)": mean_std(group["val_accuracy"]),
                "epochs (patience)": f"{int(first['max_epochs'])} ({int(first['patience'])})"
                if first["max_epochs"]
                else "",
                "best / last epoch": ", ".join(
                    f"{int(b)}/{int(e)}" for b, e in zip(group["best_epoch"], group["epochs_run"])
                ),
                "s / epoch": f"{group['seconds_per_epoch'].mean():.0f}",
                "total (min)": f"{group['train_seconds'].mean() / 60:.0f}",
                "_order": (
                    first["dataset"],
                    SIZE_ORDER.get(first["student_size"], 99),
                    int(first["vocab_size"]),
                    distilled,
                    first["teacher_members"],
                    int(first["n_transfer"]),
                    int(first["patience"]),
                    first["options"],
                ),
                "_size": first["student_size"],
                "_test": float(group["test_accuracy"].mean()),
                "_teacher_test": float(teacher_acc.iloc[0]) if len(teacher_acc) else None,
                "_members": first["teacher_members"],
                "_identity": first["teacher_identity"],
                "_runs": group.index.tolist(),
            }
        )
    return sorted(name_teachers_apart(rows), key=lambda r: r["_order"])


def name_teachers_apart(rows: list[dict]) -> list[dict]:
    """Rows that would read the same but for their teacher's files get the fingerprint after its name."""

    def shown(row: dict) -> tuple:
        return tuple(row[k] for k in ("student", "teacher", "KD", "transfer set", "epochs (patience)"))

    counts = collections.Counter(shown(row) for row in rows)
    for row in rows:
        if counts[shown(row)] > 1 and row["_identity"].startswith("sha256:"):
            row["teacher"] += f" [{row['_identity'].removeprefix('sha256:')}]"
    return rows


def target_row(
    target: str, value: float | None, goal: float, seeds: int | None = None, ok: bool = True
) -> dict:
    """One line of the targets table: the best value (with its seeds) and whether it meets the goal."""
    shown = (
        "not run"
        if value is None
        else f"{100 * value:.2f}" + (f" ({seeds} seed{'s' * (seeds > 1)})" if seeds else "")
    )
    return {
        "target": target,
        "best (%)": shown,
        "met": "yes" if value is not None and value >= goal and ok else "no",
    }


def ladder_targets(rows: list[dict], peers: list[dict]) -> list[dict]:
    """Issue 10's targets, met or not: an ensemble teacher >= 88.0 %, the base student >= 87.5 % and above
    the TF-IDF+LR peer of the bench run given, the tiny student >= 85.5 %; a student row counts with 3 seeds
    (mean), and a row of 3 seeds is shown before a better one of fewer."""
    tfidf = next((p["test_accuracy"] for p in peers if p["model"].startswith("tfidf-lr")), None)
    ensembles = [r["_teacher_test"] for r in rows if "×" in r["_members"] and r["_teacher_test"] is not None]
    best = {
        size: max(
            (r for r in rows if r["_size"] == size), key=lambda r: (r["seeds"] >= 3, r["_test"]), default=None
        )
        for size in ("base", "tiny")
    }
    base, tiny = best["base"], best["tiny"]
    above_peer = base is not None and tfidf is not None and base["_test"] > tfidf
    table = [
        target_row("ensemble teacher ≥ 88.0 %", max(ensembles, default=None), 0.88),
        target_row(
            "base ≥ 87.5 % (3 seeds) and > TF-IDF+LR",
            base and base["_test"],
            0.875,
            base and base["seeds"],
            above_peer and base["seeds"] >= 3,
        ),
        target_row(
            "tiny ≥ 85.5 % (3 seeds)",
            tiny and tiny["_test"],
            0.855,
            tiny and tiny["seeds"],
            tiny is not None and tiny["seeds"] >= 3,
        ),
    ]
    if tfidf is not None:
        table.append(
            {"target": "TF-IDF+LR peer (same bench run)", "best (%)": f"{100 * tfidf:.2f}", "met": ""}
        )
    return table


def peer_rows(peers: list[dict]) -> list[dict]:
    """The peers of a bench run as ladder rows: accuracy, training time, speed at batch 64, size."""
    return [
        {
            "peer (same bench run)": p["model"],
            "test acc (%)": f"{100 * p['test_accuracy']:.2f}",
            "train (s)": f"{p['train_seconds']:.0f}",
            "sentences/s, batch 64": f"{p['batch64_per_s']:,.0f}",
            "size": human_bytes(p["size_bytes"]),
        }
        for p in peers
    ]


def bench_summary(path: str | Path) -> tuple[list[dict], str]:
    """A bench_results.json's peers and the ladder's text about them (a table and the machine it ran on)."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    machine, threads = results["machine"], results["settings"]["threads"]
    load = machine["load_average_at_start"][0], machine["load_average_at_end"][0]
    text = (
        markdown(peer_rows(results["peers"]))
        + f"\n\nPeers trained and timed by `python bench.py` ({path}) on {machine['cpu']}, {threads} "
        + f"thread(s), load average {load[0]:.2f} at the start and {load[1]:.2f} at the end."
    )
    return results["peers"], text


def ensemble_legend(rows: list[dict]) -> str:
    """What each ensemble in the ladder is: its label, its members and their weights."""
    ensembles = {r["teacher"].split(" (")[0]: r["_members"] for r in rows if "×" in r["_members"]}
    return "\n".join(f"- `{label}` = {members}" for label, members in ensembles.items())


def markdown(rows: list[dict]) -> str:
    """A GitHub table of the rows' public columns (those not starting with _)."""
    columns = [c for c in rows[0] if not c.startswith("_")] if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def replace_block(path: str | Path, text: str, markers: tuple[str, str] = LADDER_MARKERS) -> None:
    """Rewrite the part of ``path`` between the markers (the ladder's unless given; both must be there)."""
    content = Path(path).read_text(encoding="utf-8")
    start, end = markers
    if content.count(start) != 1 or content.count(end) != 1 or content.index(start) > content.index(end):
        raise ValueError(f"{path}: needs one {start} line before one {end} line")
    head, rest = content.split(start)
    utils.atomic_write_text(path, head + start + "\n" + text + "\n" + end + rest.split(end)[1])


def latest_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Each run folder's latest run per teacher (a folder trained again from a rebuilt teacher keeps both)."""
    return frame[~frame.assign(t=teacher_identity(frame)).duplicated(["run_dir", "t"], keep="last")]


def ladder(cfg: LadderConfig) -> str:
    """Record the runs in --csv, print the ladder and the targets, write them to --out (and the README)."""
    frame, found = record_runs(cfg.runs, cfg.csv)
    # the runs found now (a copied run keeps its first run_dir) and those recorded before under the folders
    latest = latest_runs(frame)
    ours = [d in found or any(Path(str(d)).is_relative_to(r) for r in cfg.runs) for d in latest["run_dir"]]
    rows = ladder_rows(latest.loc[ours])
    if not rows:
        raise ValueError(
            f"no finished run under {' '.join(cfg.runs)}: train with `distil.py student --out DIR`"
        )
    peers, about_peers = bench_summary(cfg.bench) if cfg.bench else ([], "")
    legend = ensemble_legend(rows)
    text = (
        markdown(rows)
        + (f"\n\n{legend}" if legend else "")
        + "\n\n"
        + markdown(ladder_targets(rows, peers))
        + (f"\n\n{about_peers}" if about_peers else "")
        + f"\n\n_Generated by `python ladder.py --runs {' '.join(cfg.runs)}"
        + (f" --bench {cfg.bench}" if cfg.bench else "")
        + f"` from {cfg.csv}._"
    )
    utils.atomic_write_text(cfg.out, text + "\n")
    if cfg.readme:
        replace_block(cfg.readme, text)
    print(text)  # after the writes: a reader that stops early (| head) must not lose them
    return text


def main(argv: list[str] | None = None) -> str:
    """python ladder.py [--runs runs/ladder] [--csv results/runs.csv] [--bench F] [--readme F]"""
    parser = argparse.ArgumentParser(description=ladder.__doc__)
    settings.add_arguments(parser, LadderConfig)
    args = parser.parse_args(argv)
    try:
        return ladder(LadderConfig(**vars(args)))
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"ladder.py: {utils.one_line(err)}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
