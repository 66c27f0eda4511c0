"""Distil a fine-tuned Korean transformer into a tiny BiLSTM: the command line, and the stages the notebook
calls too.

    python distil.py download  --dataset nsmc [--data-dir DIR]
    python distil.py tokenizer --dataset nsmc --vocab-size 3000
    python distil.py teacher   --dataset nsmc --model NAME_OR_DIR
    python distil.py cache     --dataset nsmc --teacher DIR_OR_NAME
    python distil.py student   --dataset nsmc --teacher DIR_OR_NAME --vocab-size 3000 --size base --alpha 0.1
    python distil.py run       ... (all stages)
    python distil.py predict   "재밌어요" [--student runs/nsmc/<run>/student] (default: the bundled student)

Every stage is idempotent: what is already done and valid is reused. The options are generated from the
settings dataclasses (config.py: the single source of every option, its help, choices and allowed range);
a student is trained by train.py.
Expected errors are printed as one line (exit code 2: a bad setting, 1: a file or run state); --debug shows
the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

import pandas as pd
import torch

import augment
import corpus
import logits_cache
import teacher as teachers
import utils
import vocab
from config import (
    BACKENDS,
    BUNDLED_NAMES,
    SKLEARN_MODELS,
    DataConfig,
    Paths,
    RunConfig,
    SklearnTeacherConfig,
    TeacherConfig,
    grid,
)
from finetune import finetune_teacher, fit_sklearn_teacher
from model import Student, bundled_student
from settings import add_arguments, from_args
from train import RunStateError, TrainingDiverged, load_splits, train_student

logger = utils.logger


# -------------------------------------------------------------------------------------------------------
# Stages the notebook calls too
# -------------------------------------------------------------------------------------------------------


def finetune(
    cfg: TeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths | None = None,
    device: str = "auto",
) -> Path:
    """The ``teacher`` stage: ``finetune.finetune_teacher`` under ``paths`` (logs under the runs root)."""
    paths = paths or Paths()
    return finetune_teacher(cfg, splits, dataset, paths.teacher_root, device, log_root=paths.out)


def cache_all(
    teacher: str | typing.Sequence[str],
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths | None = None,
    weights: typing.Sequence[float] | None = None,
    **options,
) -> dict[str, torch.Tensor]:
    """The ``cache`` stage: ``logits_cache.cache_teacher`` under ``paths.teacher_root`` (device, batch_size,
    max_length, unlabeled) for one teacher or each member of an ensemble (each with its own cache); returns
    the (weighted) mean logits and prints an ensemble's own accuracy."""
    paths = paths or Paths()
    members = [teacher] if isinstance(teacher, str) else list(teacher)
    caches = [
        logits_cache.cache_teacher(m, splits, dataset, teacher_root=paths.teacher_root, **options)
        for m in members
    ]
    logits = {split: logits_cache.mean_logits([c[split] for c in caches], weights) for split in caches[0]}
    if len(members) > 1:
        for split, df in splits.items():
            if (score := logits_cache.accuracy(logits[split], df)) is not None:
                print(f"ensemble teacher ({len(members)} members) {split} accuracy: {score:.4f}")
    return logits


def summary_table(results: list[dict]) -> pd.DataFrame:
    """One row per run: the columns a user compares."""
    columns = [
        "student_size",
        "vocab_size",
        "teacher",
        "alpha",
        "temperature",
        "kd_loss",
        "seed",
        "params",
        "size_bytes",
        "best_epoch",
        "val_accuracy",
        "test_accuracy",
        "test_f1",
        "train_seconds",
    ]
    return pd.DataFrame(results)[columns]


# -------------------------------------------------------------------------------------------------------
# Command line: generated from the settings dataclasses
# -------------------------------------------------------------------------------------------------------


STAGES = {
    "download": "download (or read) and parse the dataset, print its splits",
    "tokenizer": "train WordPiece tokenizers on the training split",
    "teacher": "fine-tune a pretrained HF model (or fit tfidf-lr) as the teacher, then cache its logits",
    "cache": "compute the teacher's logits once for train/valid/test (and --unlabeled)",
    "student": "distil students from the cached logits (a grid for list values)",
    "run": "all stages: download, tokenizer, [teacher], cache, student",
    "augment": "write a Korean transfer set (masking, POS-guided replacement, n-grams) for --unlabeled",
}
DATA_FIELDS = [f.name for f in dataclasses.fields(DataConfig)]


# TeacherConfig fields the CLI sets elsewhere: --model/--finetune, and the two the cache stage shares
TEACHER_CLI_SKIP = ("model", "max_length", "batch_size")


def finetune_args(p: argparse.ArgumentParser, required: bool) -> None:
    """The teacher's fine-tuning options, from TeacherConfig (its max length is --teacher-max-length and its
    inference batch --teacher-batch-size, added with the stage's other teacher options)."""
    p.add_argument(
        "--model" if required else "--finetune",
        dest="model",
        required=required,
        help="pretrained HF model to fine-tune as teacher (e.g. monologg/koelectra-small-v3-discriminator), "
        f"or {', '.join(SKLEARN_MODELS)}: scikit-learn, fitted on train (--tfidf-*, --lr-*)",
    )
    add_arguments(p, TeacherConfig, skip=TEACHER_CLI_SKIP, dest_prefix="teacher_")
    add_arguments(p, SklearnTeacherConfig, dest_prefix="sklearn_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    for stage, help in STAGES.items():
        p = sub.add_parser(stage, help=help)
        add_arguments(p, Paths, skip=["out"] if stage == "augment" else ())
        add_arguments(p, DataConfig)
        common_args(p)
        stage_arguments(p, stage)
    p = sub.add_parser("predict", help="classify sentences with a trained student")
    p.add_argument(
        "--student",
        help="student directory (runs/<dataset>/<run>/student; default: the best bundled student, "
        f"models/{BUNDLED_NAMES[0]})",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="torch, onnx or onnx-int8 (ONNX Runtime, CPU; fastest)",
    )
    common_args(p, device="cpu")
    p.add_argument("texts", nargs="+", help="sentences to classify")
    return parser


def stage_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    """The options of one stage beyond the paths, the data and the common ones."""
    if stage == "augment":
        p.add_argument("--out", dest="augment_out", metavar="FILE", required=True, help="text file to write")
        add_arguments(p, augment.AugmentConfig, dest_prefix="augment_")
        return
    if stage == "tokenizer":
        add_arguments(p, RunConfig, only=["vocab_size"])
    if stage in ("teacher", "run"):
        finetune_args(p, required=stage == "teacher")
    if stage == "teacher":
        add_arguments(p, RunConfig, only=["teacher_max_length", "unlabeled"])
    if stage == "cache":
        add_arguments(
            p,
            RunConfig,
            only=["teacher", "teacher_weights", "teacher_max_length", "unlabeled"],
            required=["teacher"],
        )
    if stage == "run":
        p.add_argument(
            "--augment",
            action="store_true",
            help="add an augmented copy of the training texts (augment.py; options below) to the "
            "transfer set, written once per settings and data and labelled by the teacher(s)",
        )
        add_arguments(p, augment.AugmentConfig, skip=["seed"], dest_prefix="augment_")
    if stage in ("student", "run"):
        add_arguments(p, RunConfig, skip=DATA_FIELDS)
        p.add_argument(
            "--overwrite", action="store_true", help="train again even if the run directory is finished"
        )
    if stage not in ("tokenizer", "download"):
        add_arguments(p, TeacherConfig, only=["batch_size"], dest_prefix="teacher_")


def common_args(p: argparse.ArgumentParser, device: str = "auto") -> None:
    p.add_argument(
        "--device",
        default=device,
        help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps (default: %(default)s)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def main(argv: list[str] | None = None) -> list[dict] | None:
    """The command line. Expected errors are one line on stderr, exit code 2 for a bad setting and 1 for a
    file or run state (--debug: the traceback)."""
    args = build_parser().parse_args(argv)
    utils.setup_logging(args.quiet)
    try:
        return run_stage(args)
    except (ValueError, OSError, logits_cache.CacheMismatch, RunStateError, TrainingDiverged) as err:
        if args.debug:
            raise
        print(f"error: {utils.one_line(err)}", file=sys.stderr)
        bad_setting = isinstance(err, ValueError) and not isinstance(err, corpus.DataFormatError)
        raise SystemExit(2 if bad_setting else 1) from None


def run_stage(args: argparse.Namespace) -> list[dict] | None:
    """Run the chosen stage (and the ones before it); every setting is checked before any work starts."""
    utils.get_device(args.device)
    if args.stage == "predict":
        return predict(args.student, args.texts, args.device, args.backend)
    paths, data = from_args(Paths, args), from_args(DataConfig, args)
    # Refuse bad settings before any work: the stage's RunConfig options (student grid, --vocab-size, ...).
    if args.stage == "augment" or getattr(args, "augment", False):
        config = augment_config(args)
    if getattr(args, "teacher_batch_size", None) is not None:
        TeacherConfig(batch_size=args.teacher_batch_size)  # its bounds
    model = getattr(args, "model", None)
    members = [*(getattr(args, "teacher", None) or []), *([model] if model else [])]
    if getattr(args, "augment", False) and not members:
        raise ValueError(
            "--augment: the augmented texts are learnt from a teacher; give --teacher or --finetune"
        )
    student_configs(args, members)
    splits = load_splits(data, paths)
    for name, df in splits.items():
        print(f"{data.dataset} {name}: {len(df):,} examples, {df['label'].mean():.1%} positive")
    if args.stage in ("tokenizer", "run"):
        for vocab_size in args.vocab_size:
            vocab.get_tokenizer(splits["train"], vocab_size, data.dataset, paths.tokenizer_root)
    if args.stage == "augment":
        augment.augment_dataset(config, splits, args.augment_out)
        return None
    if getattr(args, "augment", False):
        augmented = augment.augmented_file(config, splits, paths.data_root, data.dataset)
        args.unlabeled = [*(args.unlabeled or []), str(augmented)]
    if args.stage in ("download", "tokenizer"):
        return None
    teacher = list(getattr(args, "teacher", None) or [])
    if getattr(args, "model", None):
        teacher.append(str(make_teacher(args, splits, data.dataset, paths)))
    if teacher and args.stage in ("teacher", "cache", "run"):
        cache_all(
            teacher,
            splits,
            data.dataset,
            paths,
            device=args.device,
            batch_size=args.teacher_batch_size,
            max_length=args.teacher_max_length,
            unlabeled=args.unlabeled,
            weights=getattr(args, "teacher_weights", None),
        )
    if args.stage in ("teacher", "cache"):
        return None
    results = [
        train_student(cfg, paths, args.device, args.overwrite, splits=splits)
        for cfg in student_configs(args, teacher)
    ]
    print(summary_table(results).to_string(index=False))
    return results


def make_teacher(args: argparse.Namespace, splits: dict, dataset: str, paths: Paths) -> Path:
    """The ``--model`` teacher: fine-tuned (Hugging Face) or fitted (scikit-learn), reused by its identity;
    prints its valid/test accuracy."""
    if args.model not in SKLEARN_MODELS:
        return finetune(teacher_config(args), splits, dataset, paths, args.device)
    fields = [f.name for f in dataclasses.fields(SklearnTeacherConfig)]
    cfg = SklearnTeacherConfig(**{name: getattr(args, "sklearn_" + name) for name in fields})
    out_dir = fit_sklearn_teacher(cfg, splits, dataset, paths.teacher_root)
    info = json.loads((out_dir / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
    print(f"teacher {out_dir}: valid accuracy {info['val_accuracy']}, test accuracy {info['test_accuracy']}")
    return out_dir


def augment_config(args: argparse.Namespace) -> augment.AugmentConfig:
    """The AugmentConfig the options describe (``run --augment`` keeps the default augmentation seed)."""
    names = [f.name for f in dataclasses.fields(augment.AugmentConfig) if hasattr(args, "augment_" + f.name)]
    return augment.AugmentConfig(**{name: getattr(args, "augment_" + name) for name in names})


def teacher_config(args: argparse.Namespace) -> TeacherConfig:
    """The TeacherConfig the stage's options describe."""
    fields = {f.name for f in dataclasses.fields(TeacherConfig)} - set(TEACHER_CLI_SKIP)
    values = {name: getattr(args, "teacher_" + name) for name in fields}
    return TeacherConfig(
        model=args.model, max_length=args.teacher_max_length, batch_size=args.teacher_batch_size, **values
    )


def student_configs(args: argparse.Namespace, teacher: str | list[str] | None) -> list[RunConfig]:
    """The grid the stage's RunConfig options describe (every combination of the grid fields' values)."""
    fields = [f for f in dataclasses.fields(RunConfig) if hasattr(args, f.name)]
    fixed = {f.name: getattr(args, f.name) for f in fields if not f.metadata["grid"]}
    return grid(
        {**fixed, "teacher": teacher}, **{f.name: getattr(args, f.name) for f in fields if f.metadata["grid"]}
    )


def predict(student_dir: str | None, texts: list[str], device: str, backend: str) -> None:
    """Print ``label<TAB>probability<TAB>text`` for each text (an empty text too); without ``student_dir``
    the bundled student (``model.bundled_student``)."""
    student = Student.from_pretrained(student_dir or bundled_student(), device=device, backend=backend)
    for text, proba in zip(texts, student.predict_proba(texts)):
        label = int(proba.argmax())
        print(f"{student.labels[label]}\t{proba[label]:.3f}\t{text}")


if __name__ == "__main__":
    main(sys.argv[1:])
