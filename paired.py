"""Models compared on the same examples: each model's accuracy and its paired difference to a reference, with
a bootstrap interval, on the validation and the test split.

    python paired.py [--dataset nsmc] [--data-dir DIR] [--valid-fraction 0.05] [--reference DIR]
                     [--models DIR ...] [--backend torch] [--threads 1] [--out results]

The splits are those a run with the same data settings trains on (--valid-fraction as distil.py's). A model is
a student folder, a run folder (runs/<dataset>/<run>: its student/) or a teacher folder; by default the
bundled ones, models/<name> for each of config.BUNDLED_NAMES that is there. Every model predicts
every valid and test example; the difference to the reference is the mean, over the
examples, of (model right) − (reference right), and its interval comes from resampling the examples (the
same resamples for every model). Rows are ordered by validation accuracy, the split a choice may look at;
test is shown beside it. Each student's prediction of the test split is timed end to end (text in, label out,
on --threads threads, after it predicted valid): its sentences per second. Writes paired.json (the numbers,
machine, date and command) and paired.md to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import corpus
import logits_cache
import settings
import utils
from config import BACKENDS, BUNDLED_NAMES, DataConfig, SklearnTeacherConfig
from finetune import fit_sklearn_teacher
from model import Student, is_student_dir
from report import markdown
from settings import setting, shared_setting, validate_fields
from timing import machine_info

SPLITS = ("valid", "test")  # the split the rows are ordered by first
BUNDLED = tuple(f"models/{name}" for name in BUNDLED_NAMES)  # the default models, those that are there
RESULTS_JSON, RESULTS_MD = "paired.json", "paired.md"
PERCENT = 100.0
RESAMPLES, CONFIDENCE = 1000, 0.95  # the bootstrap's defaults (ladder.py's paired columns use them too)


@dataclass
class PairedConfig:
    """What is compared, on which examples, and how the interval is drawn (the ``paired.py`` command line)."""

    dataset: str = setting("nsmc", "dataset", choices=corpus.DATASET_NAMES)
    data_dir: str | None = setting(None, "folder of the dataset's files (default: data/<dataset>)")
    valid_fraction: float = shared_setting(DataConfig, "valid_fraction")
    test_fraction: float = shared_setting(DataConfig, "test_fraction")
    reference: str | None = setting(
        None,
        "the reference model's folder (default: the TF-IDF+LR teacher of config.SklearnTeacherConfig, fitted "
        "on train into --teacher-root, reused when it is there)",
    )
    models: tuple[str, ...] = setting(
        BUNDLED,
        "student, run (its student/) or teacher folders compared with the reference (default: the bundled "
        "students of config.BUNDLED_NAMES that are in models/)",
    )
    teacher_root: str = setting("teacher_model", "folder of the default reference")
    backend: str = setting("torch", "how the students run", choices=BACKENDS)
    threads: int = setting(
        1, "CPU threads of the students (torch's and ONNX Runtime's intra-op threads)", bounds="[1, inf)"
    )
    resamples: int = setting(RESAMPLES, "bootstrap resamples of the examples", bounds="[1, inf)")
    confidence: float = setting(CONFIDENCE, "coverage of the bootstrap interval", bounds="(0, 1)")
    seed: int = setting(0, "seed of the bootstrap resamples")
    out: str = setting("results", f"folder of {RESULTS_JSON} and {RESULTS_MD}")

    def __post_init__(self) -> None:
        validate_fields(self)


def check_folders(paths: Sequence[str]) -> None:
    """A one-line FileNotFoundError naming the first path that is not a folder."""
    for path in paths:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"model folder {path} not found")


def compared_models(cfg: PairedConfig) -> list[str]:
    """--models; for the default (the bundled students), those that are there, a note for each that is not."""
    if cfg.models != BUNDLED:
        return list(cfg.models)
    missing = [path for path in cfg.models if not Path(path).is_dir()]
    for path in missing:
        print(f"paired.py: skipped bundled {path}: no such folder", file=sys.stderr)
    return [path for path in cfg.models if path not in missing]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` within the block, as they were after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference_folder(cfg: PairedConfig, splits: dict[str, pd.DataFrame]) -> str:
    """--reference, or the default TF-IDF+LR teacher (fitted now unless a folder of its identity exists)."""
    if cfg.reference:
        return cfg.reference
    return str(fit_sklearn_teacher(SklearnTeacherConfig(), splits, cfg.dataset, cfg.teacher_root))


def model_folder(path: str) -> str:
    """The folder that predicts for ``path``: a run folder's student/, any other folder itself."""
    student = Path(path) / "student"
    return str(student) if not is_student_dir(path) and is_student_dir(student) else path


def predict_labels(
    path: str,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    teacher_root: str = "teacher_model",
    backend: str = "torch",
) -> dict[str, np.ndarray]:
    """The model's predicted label of each example of each split: a student (or a run's) run by ``backend``,
    any other folder as a teacher through its logits cache under ``dataset`` (the teacher runs once per
    split and example)."""
    return predict_timed(path, splits, dataset, teacher_root, backend)[0]


def predict_timed(
    path: str,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    teacher_root: str = "teacher_model",
    backend: str = "torch",
    threads: int = 1,
) -> tuple[dict[str, np.ndarray], float | None]:
    """predict_labels, and a student's sentences per second on the test split (None for a teacher, which
    predicts through its logits cache); ``threads``: ONNX Runtime's (torch's are the caller's)."""
    path = model_folder(path)
    if is_student_dir(path):
        return student_predictions(Student.from_pretrained(path, backend=backend, threads=threads), splits)
    labels = {
        split: logits_cache.teacher_logits(path, splits[split], dataset, split, teacher_root=teacher_root)
        .argmax(-1)
        .numpy()
        for split in SPLITS
    }
    return labels, None


def student_predictions(
    student: Student, splits: dict[str, pd.DataFrame]
) -> tuple[dict[str, np.ndarray], float]:
    """The student's label of each example of each split, and its sentences per second end to end (text in,
    label out) on the test split, timed after it predicted valid."""
    labels, seconds = {}, {}
    for split in SPLITS:
        texts = splits[split]["text"].tolist()
        start = time.perf_counter()
        labels[split] = np.asarray(student.predict(texts))
        seconds[split] = time.perf_counter() - start
    return labels, len(splits["test"]) / seconds["test"]


def paired_difference(
    correct: np.ndarray, reference_correct: np.ndarray, resamples: int, confidence: float, seed: int
) -> dict[str, float]:
    """Mean of (correct − reference_correct) over the examples and its percentile bootstrap interval: the
    examples resampled with replacement ``resamples`` times (the same resamples for the same seed and
    count)."""
    delta = correct.astype(np.float64) - reference_correct.astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.array([np.mean(delta[rng.integers(0, len(delta), len(delta))]) for _ in range(resamples)])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"difference": float(np.mean(delta)), "low": float(low), "high": float(high)}


def compare(
    predicted: np.ndarray, reference: np.ndarray, labels: np.ndarray, cfg: PairedConfig
) -> dict[str, float]:
    """One model on one split against the reference: accuracy, paired difference with its interval and the
    share of examples where the two predict differently."""
    correct, reference_correct = predicted == labels, reference == labels
    return {
        "examples": len(labels),
        "accuracy": float(np.mean(correct)),
        **paired_difference(correct, reference_correct, cfg.resamples, cfg.confidence, cfg.seed),
        "disagreement": float(np.mean(predicted != reference)),
    }


def ordered(rows: list[dict]) -> list[dict]:
    """Rows by validation accuracy, best first (test never decides the order); ties by name."""
    return sorted(rows, key=lambda row: (-row["splits"][SPLITS[0]]["accuracy"], row["model"]))


def command(cfg: PairedConfig) -> str:
    """The command that computes the results again: the settings that differ from their defaults."""
    parts = ["python paired.py"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value != f.default:
            shown = " ".join(value) if isinstance(value, tuple) else value
            parts.append(f"{settings.setting_flag(f)} {shown}")
    return " ".join(parts)


def run_comparison(cfg: PairedConfig) -> dict:
    """Predict every split with the reference and each model, compare them; the results as paired.json holds
    them (rows ordered by validation accuracy)."""
    models = compared_models(cfg)
    check_folders([*models, *([cfg.reference] if cfg.reference else [])])
    machine = machine_info(torch.get_num_threads())
    fractions = {"valid_fraction": cfg.valid_fraction, "test_fraction": cfg.test_fraction}
    splits = corpus.load_dataset(cfg.dataset, data_dir=cfg.data_dir, **fractions)
    splits = {name: df[df["label"] >= 0].reset_index(drop=True) for name, df in splits.items()}
    reference = reference_folder(cfg, splits)
    options = (cfg.dataset, cfg.teacher_root, cfg.backend, cfg.threads)
    reference_labels, reference_speed = predict_timed(reference, splits, *options)
    rows = []
    for name in dict.fromkeys([reference, *models]):
        predicted, speed = (
            (reference_labels, reference_speed)
            if name == reference
            else predict_timed(name, splits, *options)
        )
        stats = {
            split: compare(predicted[split], reference_labels[split], splits[split]["label"].to_numpy(), cfg)
            for split in SPLITS
        }
        rows.append(
            {"model": name, "reference": name == reference, "splits": stats, "test_sentences_per_s": speed}
        )
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "command": command(cfg),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": dataclasses.asdict(cfg) | {"reference": reference, "models": models},
        "rows": ordered(rows),
    }


def points(value: float) -> str:
    """A difference of accuracies in percentage points, signed: ``+0.11``."""
    return f"{PERCENT * value:+.2f}"


def excludes_zero(stats: dict[str, float]) -> str:
    """Whether the interval lies wholly on one side of 0: "yes" or "no"."""
    return "yes" if stats["low"] > 0 or stats["high"] < 0 else "no"


def sentences_per_s(row: dict) -> str:
    """A row's test sentences per second (``1,234``), "—" for a teacher (and in files from before it)."""
    speed = row.get("test_sentences_per_s")
    return "—" if speed is None else f"{speed:,.0f}"


def table_rows(results: dict) -> list[dict]:
    """The page's table: accuracies, the test difference to the reference with its interval, disagreement
    and a student's sentences per second."""
    s = results["settings"]
    level = f"{PERCENT * s['confidence']:g} %"
    speed = f"sentences/s (test, {s.get('threads', 1)} thread(s), {s['backend']})"
    rows = []
    for row in results["rows"]:
        valid, test = (row["splits"][split] for split in SPLITS)
        interval = f"{points(test['difference'])} [{points(test['low'])}, {points(test['high'])}]"
        rows.append(
            {
                "model": f"`{row['model']}`" + (" (reference)" if row["reference"] else ""),
                "valid acc (%)": f"{PERCENT * valid['accuracy']:.2f}",
                "test acc (%)": f"{PERCENT * test['accuracy']:.2f}",
                f"test − reference (points, {level} interval)": "—" if row["reference"] else interval,
                "interval excludes 0": "—" if row["reference"] else excludes_zero(test),
                "test disagreement (%)": f"{PERCENT * test['disagreement']:.2f}",
                speed: sentences_per_s(row),
            }
        )
    return rows


def page(results: dict) -> str:
    """paired.md: the command, what the numbers are, the table and the machine."""
    s, m = results["settings"], results["machine"]
    test = results["rows"][0]["splits"][SPLITS[1]]["examples"]
    valid = results["rows"][0]["splits"][SPLITS[0]]["examples"]
    about = (
        f"Every model on the same {s['dataset']} examples ({valid:,} valid, {test:,} test). The difference "
        f"to the reference `{s['reference']}` is the mean over test examples of (model right) − (reference "
        f"right); its interval is the {PERCENT * s['confidence']:g} % percentile bootstrap over "
        f"{s['resamples']:,} resamples of the examples (seed {s['seed']}, the same for every model). "
        "Disagreement: the share of test examples where the two predict differently. Rows are ordered by "
        f"validation accuracy; test is shown, not chosen on. Students ran with the {s['backend']} backend; "
        "sentences/s: a student's one pass over the test texts end to end (text in, label out, batches of "
        "64, after it predicted valid) on a machine that may be busy (its load average below); a teacher "
        "predicts through its logits cache and is not timed."
    )
    where = (
        f"Machine: {m['cpu']}, {m['threads']} thread(s), {m['platform']}; torch {m['torch']}, onnxruntime "
        f"{m.get('onnxruntime', 'not recorded')}; 1-minute load "
        f"average {m['load_average_at_start'][0]:.2f} at the start, {m['load_average_at_end'][0]:.2f} at the "
        f"end; computed {results['date']}."
    )
    first = f"_Generated by `{results['command']}` (numbers in `{RESULTS_JSON}`): do not edit by hand._"
    return "\n\n".join([first, "# Paired comparison", about, markdown(table_rows(results)), where])


def main(argv: list[str] | None = None) -> dict:
    """python paired.py [--dataset nsmc] [--data-dir DIR] [--reference DIR] [--models DIR ...] [--threads N]
    [--out DIR]"""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings.add_arguments(parser, PairedConfig)
    try:
        cfg = settings.from_args(PairedConfig, parser.parse_args(argv))
        with torch_threads(cfg.threads):
            results = run_comparison(cfg)
    except (ValueError, OSError, logits_cache.CacheMismatch) as err:
        raise SystemExit(f"paired.py: {utils.one_line(err)}") from None
    utils.atomic_write_json(Path(cfg.out) / RESULTS_JSON, results)
    text = page(results)
    utils.atomic_write_text(Path(cfg.out) / RESULTS_MD, text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
