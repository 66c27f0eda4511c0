"""Compare the student's tokenizer kinds from finished runs: accuracy, [UNK] rate, length and speed.

    python tools/tokenizer_table.py --data-dir /work/shared/data/nsmc [--runs runs/tok] [--out results]

Reads every finished no-teacher run under ``--runs`` (``<dataset>/<run>/metrics.json``, e.g. trained with
``python distil.py student --tokenizer KIND --vocab-size N --size S --alpha 1 --epochs 3 --out runs/tok``)
and writes ``tokenizers.md`` and ``tokenizers.json`` into ``--out``: per run its test accuracy, the [UNK]
share of the test split's tokens, tokens per test review, and end-to-end sentences/s of ``Student.predict``
(batch 64, int8 ONNX, one thread), timed in this one process, interleaved, best of ``--repeats``, with the
ratio to WordPiece base at the same vocabulary size beside it. Prints the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import settings
import train
import utils
import vocab
from config import DataConfig, Paths
from model import Student, StudentEncoder

KINDS = vocab.TOKENIZER_KINDS
SIZES = ("tiny", "base")
VOCAB_SIZES = (3000, 9000)
BACKEND = "onnx-int8"
BATCH = 64


def finished_runs(root: Path, dataset: str) -> list[dict]:
    """The finished no-teacher runs of ``dataset`` under ``root``, by kind, vocab size and size."""
    runs = []
    for path in sorted((root / dataset).glob("*/metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        config = json.loads((path.parent / "config.json").read_text(encoding="utf-8"))
        if metrics.get("teacher") is not None:
            continue
        runs.append(
            {
                "run": path.parent.name,
                "kind": metrics.get("tokenizer", vocab.DEFAULT_KIND),
                "vocab_size": metrics["vocab_size"],
                "size": metrics["student_size"],
                "epochs": config["epochs"],
                "epochs_run": metrics["epochs_run"],
                "seed": metrics["seed"],
                "test_accuracy": metrics["test_accuracy"],
                "train_seconds": metrics["train_seconds"],
                "dir": path.parent,
            }
        )
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(runs, key=lambda r: (r["vocab_size"], order.get(r["kind"], 99), r["size"] != "tiny"))


def tokenizer_stats(tokenizer, texts: list[str]) -> dict:
    """[UNK] share of the tokens and tokens per text (no truncation), and texts/s of tokenization alone."""
    encoder = StudentEncoder.of(tokenizer)
    encoder.ids(texts[:BATCH])  # warm-up: Kiwi loads its model on first use
    start = time.perf_counter()
    ids = encoder.ids(texts)
    seconds = time.perf_counter() - start
    tokens = sum(map(len, ids))
    unk = sum(seq.count(tokenizer.unk_token_id) for seq in ids)
    return {
        "unk_rate": unk / tokens,
        "tokens_per_review": tokens / len(texts),
        "tokenize_per_s": len(texts) / seconds,
    }


def predict_speed(students: dict[str, Student], texts: list[str], repeats: int) -> dict[str, float]:
    """End-to-end sentences/s of each student's predict (batch 64), best of ``repeats`` rounds that each
    time every student once (so that a busy moment of a shared machine hits them alike)."""
    best = dict.fromkeys(students, 0.0)
    for student in students.values():
        student.predict(texts[:BATCH], batch_size=BATCH)  # warm-up: sessions, Kiwi, caches
    for _ in range(repeats):
        for run, student in students.items():
            start = time.perf_counter()
            student.predict(texts, batch_size=BATCH)
            best[run] = max(best[run], len(texts) / (time.perf_counter() - start))
    return best


def measure(runs: list[dict], test: list[str], sample: int, repeats: int) -> list[dict]:
    """Each run's row: its metrics, its tokenizer's statistics on ``test`` and its prediction speed."""
    stats: dict[tuple[str, int], dict] = {}
    for run in runs:
        key = (run["kind"], run["vocab_size"])
        if key not in stats:
            stats[key] = tokenizer_stats(vocab.load_tokenizer(run["dir"] / "tokenizer"), test)
            print(f"{key[0]} v{key[1]}: {stats[key]}", flush=True)
    students = {r["run"]: Student.from_pretrained(r["dir"] / "student", backend=BACKEND) for r in runs}
    speed = predict_speed(students, test[:sample], repeats)
    rows = []
    for run in runs:
        reference = next(
            (
                r
                for r in runs
                if (r["kind"], r["size"], r["vocab_size"]) == ("wordpiece", "base", run["vocab_size"])
            ),
            None,
        )
        row = {k: v for k, v in run.items() if k != "dir"} | stats[(run["kind"], run["vocab_size"])]
        row["sentences_per_s"] = speed[run["run"]]
        row["speed_vs_wordpiece_base"] = speed[run["run"]] / speed[reference["run"]] if reference else None
        rows.append(row)
    return rows


def missing_runs(rows: list[dict]) -> list[str]:
    """The kind x vocab x size points of the planned grid without a finished run."""
    done = {(r["kind"], r["vocab_size"], r["size"]) for r in rows}
    return [f"{s} v{v} {k}" for v in VOCAB_SIZES for k in KINDS for s in SIZES if (k, v, s) not in done]


def markdown(result: dict) -> str:
    """The table as Markdown, with how it was made."""
    epochs = sorted({r["epochs"] for r in result["rows"]})
    lines = [
        "# Tokenizer kinds on NSMC",
        "",
        f"Written by `tools/tokenizer_table.py` on {result['machine']} ({result['threads']} thread; load "
        f"average {result['load_average']:.1f} after timing: a shared machine). Each student: one seed, no "
        f"teacher (α = 1), `--epochs {', '.join(map(str, epochs))}` (not the README's 12-epoch schedule, so "
        "accuracies are below its figures), trained with",
        "",
        "    python distil.py student --data-dir /work/shared/data/nsmc --tokenizer KIND --vocab-size N \\",
        f"        --size S --alpha 1 --epochs {epochs[-1]} --device cpu --out runs/tok",
        "",
        f"[UNK] and tokens per review: the {result['test_reviews']:,} test reviews, untruncated. Speed: "
        f"`Student.predict` end to end (tokenizer included) on {result['sample']:,} test reviews, batch "
        f"{BATCH}, {BACKEND}, one thread, best of {result['repeats']}; × WordPiece base: the ratio to "
        "WordPiece base at the same vocabulary size, timed in the same process. Tokenize/s: the tokenizer "
        "alone (Kiwi included).",
        "",
        "| kind | vocab | size | test acc. % | [UNK] % | tokens / review | sentences/s | × WordPiece base "
        "| tokenize/s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ratio = f"{r['speed_vs_wordpiece_base']:.2f}" if r["speed_vs_wordpiece_base"] else "–"
        lines.append(
            f"| {r['kind']} | {r['vocab_size']} | {r['size']} | {100 * r['test_accuracy']:.2f} | "
            f"{100 * r['unk_rate']:.2f} | {r['tokens_per_review']:.1f} | {r['sentences_per_s']:,.0f} | "
            f"{ratio} | {r['tokenize_per_s']:,.0f} |"
        )
    if result["missing"]:
        lines += ["", f"Not finished (missing from the table): {', '.join(result['missing'])}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings.add_arguments(parser, DataConfig, only=["dataset"])
    settings.add_arguments(parser, Paths, only=["data_dir", "data_root"])
    parser.add_argument("--runs", default="runs/tok", help="the runs' root (default: %(default)s)")
    parser.add_argument("--out", default="results", help="where the table goes (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=5000, help="test reviews timed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    machine = utils.cpu_name()
    print(f"machine: {machine}, {os.cpu_count()} CPUs, timing on one thread", flush=True)
    data, paths = DataConfig(dataset=args.dataset), settings.from_args(Paths, args)
    test = train.load_splits(data, paths)["test"]["text"].tolist()
    runs = finished_runs(Path(args.runs), args.dataset)
    if not runs:
        raise SystemExit(f"error: no finished no-teacher runs under {Path(args.runs) / args.dataset}")
    rows = measure(runs, test, args.sample, args.repeats)
    result = {
        "machine": machine,
        "threads": 1,
        "load_average": os.getloadavg()[0],
        "test_reviews": len(test),
        "sample": min(args.sample, len(test)),
        "repeats": args.repeats,
        "rows": rows,
        "missing": missing_runs(rows),
    }
    out = Path(args.out)
    utils.atomic_write_json(out / "tokenizers.json", result)
    utils.atomic_write_text(out / "tokenizers.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
