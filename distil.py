"""Distil a fine-tuned Korean transformer into a tiny BiLSTM: the command line, and the stages the notebook
calls too.

    python distil.py download  --dataset nsmc [--data-dir DIR]
    python distil.py tokenizer --dataset nsmc --vocab-size 3000 [--tokenizer kiwi]
    python distil.py teacher   --dataset nsmc --model NAME_OR_DIR
    python distil.py cache     --dataset nsmc --teacher DIR_OR_NAME
    python distil.py student   --dataset nsmc --teacher DIR_OR_NAME --vocab-size 3000 --size base --alpha 0.1
    python distil.py run       ... (all stages)
    python distil.py predict   "재밌어요" [--student runs/nsmc/<run>/student] (default: the bundled student)
    python distil.py predict   --input reviews.csv [--text-column review] [--output predictions.jsonl]

Every stage is idempotent: what is already done and valid is reused. The options are generated from the
settings dataclasses (config.py: the single source of every option, its help, choices and allowed range);
a student is trained by train.py. torch and transformers load once a stage runs (the functions that need
them import them), so --help and a refused setting answer at once.
Expected errors are printed as one line (exit code 2: a bad setting, 1: a file or run state); --debug shows
the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import augment
import batch_predict
import corpus
import utils
import vocab
from card import display_name
from config import (
    BACKENDS,
    BUNDLED_NAMES,
    SKLEARN_MODELS,
    DataConfig,
    Paths,
    RunConfig,
    SklearnTeacherConfig,
    TeacherConfig,
    configs_from_params,
)
from settings import add_arguments, from_args

if TYPE_CHECKING:
    import torch


# -------------------------------------------------------------------------------------------------------
# Stages the notebook calls too: plain values in, torch and transformers imported where they are needed
# -------------------------------------------------------------------------------------------------------


def make_tokenizers(
    vocab_sizes: int | Sequence[int],
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths,
    kinds: str | Sequence[str] = vocab.DEFAULT_KIND,
) -> dict[tuple[str, int], Any]:
    """The students' tokenizers by kind (vocab.TOKENIZER_KINDS) and vocabulary size: trained on the training
    split once, then reused."""
    root = paths.tokenizer_root
    return {
        (kind, size): vocab.get_tokenizer(splits["train"], size, dataset, root, kind)
        for kind, size in itertools.product(utils.as_list(kinds), utils.as_list(vocab_sizes))
    }


def transfer_files(
    unlabeled: str | Sequence[str] | None,
    augment_cfg: augment.AugmentConfig | None,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths,
) -> list[str]:
    """The unlabeled text files the teachers label for the students: ``unlabeled``, and with ``augment_cfg``
    an augmented copy of the training texts (written once per settings and data)."""
    files = [str(path) for path in utils.as_list(unlabeled)]
    if augment_cfg is not None:
        files.append(str(augment.augmented_file(augment_cfg, splits, paths.data_root, dataset)))
    return files


def finetune(
    cfg: TeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths | None = None,
    device: str = "auto",
) -> Path:
    """The ``teacher`` stage: ``finetune.finetune_teacher`` under ``paths`` (logs under the runs root)."""
    from finetune import finetune_teacher

    paths = paths or Paths()
    return finetune_teacher(cfg, splits, dataset, paths.teacher_root, device, log_root=paths.out)


def make_teacher(
    model: str,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths,
    device: str = "auto",
    cfg: TeacherConfig | None = None,
    sklearn_cfg: SklearnTeacherConfig | None = None,
) -> Path:
    """A teacher made from ``model``, reused by its identity: a Hugging Face model fine-tuned with ``cfg``'s
    settings, or the scikit-learn pipeline (tfidf-lr) fitted with ``sklearn_cfg``'s (prints its valid/test
    accuracy)."""
    if model not in SKLEARN_MODELS:
        return finetune(
            dataclasses.replace(cfg or TeacherConfig(), model=model), splits, dataset, paths, device
        )
    import teacher as teachers
    from finetune import fit_sklearn_teacher

    out_dir = fit_sklearn_teacher(sklearn_cfg or SklearnTeacherConfig(), splits, dataset, paths.teacher_root)
    info = json.loads((out_dir / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
    print(f"teacher {out_dir}: valid accuracy {info['val_accuracy']}, test accuracy {info['test_accuracy']}")
    return out_dir


def prepare_teachers(
    given: str | Sequence[str] | None,
    models: str | Sequence[str] | None,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths,
    device: str = "auto",
    cfg: TeacherConfig | None = None,
    sklearn_cfg: SklearnTeacherConfig | None = None,
) -> list[str]:
    """The students' teachers: the ``given`` ones as they are (fine-tuned folders, Hub classifiers, student
    folders; a scikit-learn model name is fitted), then one made from each of ``models``
    (``make_teacher``)."""

    def make(name: str) -> str:
        return str(make_teacher(name, splits, dataset, paths, device, cfg, sklearn_cfg))

    made = [make(name) if name in SKLEARN_MODELS else str(name) for name in utils.as_list(given)]
    return made + [make(model) for model in utils.as_list(models)]


def cache_all(
    teacher: str | Sequence[str],
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths | None = None,
    weights: Sequence[float] | None = None,
    **options,
) -> dict[str, dict[str, torch.Tensor]]:
    """The ``cache`` stage: each teacher's logits of every split (and each unlabeled file), computed once and
    cached (``logits_cache.cache_teacher`` under ``paths.teacher_root``; options: device, batch_size,
    max_length, unlabeled); prints an ensemble's own accuracy, that of the (weighted) mean of its members'
    logits. Returns each member's logits by split."""
    import logits_cache

    paths = paths or Paths()
    members = [str(member) for member in utils.as_list(teacher)]
    caches = {
        m: logits_cache.cache_teacher(m, splits, dataset, teacher_root=paths.teacher_root, **options)
        for m in members
    }
    if len(members) > 1:
        for split, df in splits.items():
            logits = logits_cache.mean_logits([c[split] for c in caches.values()], weights)
            if (score := logits_cache.accuracy(logits, df)) is not None:
                print(f"ensemble teacher ({len(members)} members) {split} accuracy: {score:.4f}")
    return caches


def summary_table(results: list[dict]) -> pd.DataFrame:
    """One row per run: the columns a user compares (short names) and the run's folder, which names the rest
    (temperature, KD loss, transfer set, ...)."""
    frame = pd.DataFrame(
        {
            "size": [r["student_size"] if r["student_size"] != "custom" else size_text(r) for r in results],
            "vocab": [r["vocab_size"] for r in results],
            "teacher": [display_name(r["teacher"]) if r["teacher"] else "none" for r in results],
            "alpha": [r["alpha"] for r in results],
            "seed": [r["seed"] for r in results],
            "params": [r["params"] for r in results],
            "epoch": [r["best_epoch"] for r in results],
            "val_acc": [r["val_accuracy"] for r in results],
            "test_acc": [r["test_accuracy"] for r in results],
            "test_f1": [r["test_f1"] for r in results],
            "seconds": [r["train_seconds"] for r in results],
            "run": [r["run_dir"] for r in results],
        }
    )
    if any("test_within_one" in r for r in results):  # labels that are ordered numbers (stars)
        within = [r.get("test_within_one") for r in results]
        frame.insert(frame.columns.get_loc("test_f1") + 1, "within_one", within)
    return frame


def size_text(metrics: dict) -> str:
    """A custom size as in run names: ``e<embedding>h<hidden>``."""
    return f"e{metrics['embedding_dim']}h{metrics['hidden_dim']}"


def summary_text(results: list[dict], teacher_width: int = 16) -> str:
    """The summary table as printed after a run, within 100 columns: numbered rows without the test F1 (in
    metrics.json), then each row's run folder on its own line (it names a teacher cut to teacher_width)."""
    table = summary_table(results).drop(columns="test_f1")
    folders = table.pop("run")
    table.index = range(1, len(table) + 1)
    table["teacher"] = [t if len(t) <= teacher_width else t[: teacher_width - 1] + "…" for t in table.teacher]
    text = table.to_string(
        formatters={"alpha": "{:g}".format, "params": "{:,}".format, "seconds": "{:.0f}".format},
        float_format="{:.4f}".format,
    )
    return "\n".join([text, *(f"{i}  {folder}" for i, folder in zip(table.index, folders))])


# -------------------------------------------------------------------------------------------------------
# Command line: generated from the settings dataclasses
# -------------------------------------------------------------------------------------------------------


STAGES = {
    "download": "download (or read) and parse the dataset, print its splits",
    "tokenizer": "train the student's tokenizers (WordPiece, SentencePiece, Kiwi) on the training split",
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
    p = sub.add_parser(
        "predict", help="classify sentences with a trained student, or score it on --data's test split"
    )
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
    # --data scores the student on that data's test split (--text-column is predict_arguments', for both)
    add_arguments(p, DataConfig, skip=["dataset", "max_train", "text_column"])
    common_args(p, device="cpu")
    predict_arguments(p)
    return parser


def predict_arguments(p: argparse.ArgumentParser) -> None:
    """predict's sentences, or --input and the options of classifying a file (batch_predict.py)."""
    p.add_argument("texts", nargs="*", help="sentences to classify (or --input FILE)")
    p.add_argument(
        "--input",
        metavar="FILE",
        help="classify many texts, streamed in batches: a .txt file or - (stdin) with one text a line, or a "
        ".csv/.tsv/.jsonl table (its text column); empty texts keep their row, unlabelled, and are counted",
    )
    p.add_argument(
        "--text-column",
        metavar="NAME",
        help="with a table (--input or --data): its text column (default: the first of "
        f"{', '.join(batch_predict.TEXT_COLUMNS)})",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="with --input: write a .csv or .jsonl file (atomically) instead of CSV on stdout; the input's "
        "columns plus label and prob_<label> per class",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="with --input: rows read, classified and written at a time "
        f"(default {batch_predict.DEFAULT_BATCH_SIZE})",
    )


def stage_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    """The options of one stage beyond the paths, the data and the common ones."""
    if stage == "augment":
        p.add_argument("--out", dest="augment_out", metavar="FILE", required=True, help="text file to write")
        add_arguments(p, augment.AugmentConfig, dest_prefix="augment_")
        return
    if stage == "tokenizer":
        add_arguments(p, RunConfig, only=["vocab_size", "tokenizer"])
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
    except Exception as err:
        if args.debug or not expected_error(err):
            raise
        print(f"error: {utils.one_line(err)}", file=sys.stderr)
        bad_setting = isinstance(err, ValueError) and not isinstance(err, corpus.DataFormatError)
        raise SystemExit(2 if bad_setting else 1) from None


def expected_error(err: Exception) -> bool:
    """A bad setting, a file or a run state: printed as one line. The modules whose errors these are were
    loaded by whatever raised them, so checking costs no import when a setting was refused before torch."""
    if isinstance(err, (ValueError, OSError)):
        return True
    import logits_cache
    import train

    return isinstance(err, (logits_cache.CacheMismatch, train.RunStateError, train.TrainingDiverged))


def run_stage(args: argparse.Namespace) -> list[dict] | None:
    """Run the chosen stage (and the ones before it); every setting is checked before any work starts, and
    before torch loads."""
    if args.stage == "predict":
        utils.get_device(args.device)
        if args.data is None:
            return predict(
                args.student,
                args.texts,
                args.device,
                args.backend,
                input_path=args.input,
                text_column=args.text_column,
                output=args.output,
                batch_size=args.batch_size,
                quiet=args.quiet,
            )
        if args.texts or args.input is not None:
            raise ValueError("--data scores the student on its test split: give no sentences nor --input")
        return [score_student(args.student, from_args(DataConfig, args), args.device, args.backend)]
    paths, data = from_args(Paths, args), from_args(DataConfig, args)
    augment_cfg, teacher_cfg, sklearn_cfg = stage_configs(args)
    utils.get_device(args.device)
    import train

    splits, name = train.load_splits(data, paths), data.data_name()
    for split, df in splits.items():
        print(f"{name} {split}: {len(df):,} examples, {label_shares(df, splits.labels)}")
    if args.stage in ("tokenizer", "run"):
        make_tokenizers(args.vocab_size, splits, name, paths, args.tokenizer)
    if args.stage == "augment":
        augment.augment_dataset(augment_cfg, splits, args.augment_out)
        return None
    if args.stage in ("download", "tokenizer"):
        return None
    args.unlabeled = transfer_files(args.unlabeled, augment_cfg, splits, name, paths)
    model = getattr(args, "model", None)
    teacher = prepare_teachers(
        getattr(args, "teacher", None), model, splits, name, paths, args.device, teacher_cfg, sklearn_cfg
    )
    if teacher and args.stage in ("teacher", "cache", "run"):
        weights = getattr(args, "teacher_weights", None)
        options = dict(batch_size=args.teacher_batch_size, max_length=args.teacher_max_length)
        cache_all(
            teacher, splits, name, paths, weights, device=args.device, unlabeled=args.unlabeled, **options
        )
    if args.stage in ("teacher", "cache"):
        return None
    results = [
        train.train_student(cfg, paths, args.device, args.overwrite, splits=splits)
        for cfg in student_configs(args, teacher)
    ]
    print(summary_text(results))
    return results


def stage_configs(
    args: argparse.Namespace,
) -> tuple[augment.AugmentConfig | None, TeacherConfig | None, SklearnTeacherConfig | None]:
    """The stage's augmentation and teacher settings (None where the stage makes no use of them), every
    option checked: the student grid's too, with the teachers' names standing in for teachers to be made."""
    augmenting = args.stage == "augment" or getattr(args, "augment", False)
    augment_cfg = augment_config(args) if augmenting else None
    if getattr(args, "teacher_batch_size", None) is not None:
        TeacherConfig(batch_size=args.teacher_batch_size)  # its bounds
    model = getattr(args, "model", None)
    members = [*(getattr(args, "teacher", None) or []), *([model] if model else [])]
    if getattr(args, "augment", False) and not members:
        raise ValueError(
            "--augment: the augmented texts are learnt from a teacher; give --teacher or --finetune"
        )
    student_configs(args, members)
    teacher_cfg = teacher_config(args) if model and model not in SKLEARN_MODELS else None
    sklearn_cfg = sklearn_config(args) if set(members) & set(SKLEARN_MODELS) else None
    return augment_cfg, teacher_cfg, sklearn_cfg


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


def sklearn_config(args: argparse.Namespace) -> SklearnTeacherConfig:
    """The SklearnTeacherConfig the stage's --tfidf-* and --lr-* options describe (the defaults in a stage
    without them)."""
    names = [f.name for f in dataclasses.fields(SklearnTeacherConfig) if hasattr(args, "sklearn_" + f.name)]
    return SklearnTeacherConfig(**{name: getattr(args, "sklearn_" + name) for name in names})


def student_configs(args: argparse.Namespace, teacher: str | list[str] | None) -> list[RunConfig]:
    """The grid the stage's RunConfig options describe (every combination of the grid fields' values), as
    ``config.configs_from_params`` builds the notebook's."""
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig) if hasattr(args, f.name)}
    return configs_from_params(options, teacher)[1]


def predict(
    student_dir: str | None,
    texts: list[str],
    device: str,
    backend: str,
    *,
    input_path: str | None = None,
    text_column: str | None = None,
    output: str | None = None,
    batch_size: int | None = None,
    quiet: bool = False,
) -> None:
    """Print ``label<TAB>probability<TAB>text`` for each text (an empty text too), or classify the texts of
    ``input_path`` (batch_predict.predict_file). Without ``student_dir`` the bundled student
    (``model.bundled_student``); which student answered goes to stderr (unless ``quiet``)."""
    check_predict_args(texts, input_path, text_column, output, batch_size)
    from model import Student, bundled_student

    directory = student_dir or bundled_student()
    student = Student.from_pretrained(directory, device=device, backend=backend)
    if not quiet:
        print(batch_predict.student_line(student, directory, bundled=student_dir is None), file=sys.stderr)
    if input_path is None:
        for text, proba in zip(texts, student.predict_proba(texts)):
            label = int(proba.argmax())
            print(f"{student.labels[label]}\t{proba[label]:.3f}\t{text}")
        return
    report = batch_predict.predict_file(
        student,
        input_path,
        output,
        text_column=text_column,
        batch_size=batch_size or batch_predict.DEFAULT_BATCH_SIZE,
        progress=not quiet,
    )
    if not quiet or report.empty or report.invalid:
        print(report.summary() + (f"; written to {output}" if output else ""), file=sys.stderr)


def check_predict_args(
    texts: list[str],
    input_path: str | None,
    text_column: str | None,
    output: str | None,
    batch_size: int | None,
) -> None:
    """predict's one-line errors, before the student loads: sentences or --input (not both, not a file
    given as a sentence); the file options only with --input."""
    if input_path is not None:
        if texts:
            raise ValueError("give sentences or --input FILE, not both")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        batch_predict.input_format(input_path)
        batch_predict.output_format(output)
        batch_predict.check_input_exists(input_path)
        return
    if not texts:
        raise ValueError(
            "give sentences to classify, --input FILE (one text a line, or a CSV/TSV/JSONL table), or --data "
            "FILE to score the student on that data's test split"
        )
    given = {"--text-column": text_column, "--output": output, "--batch-size": batch_size}
    for flag, value in given.items():
        if value is not None:
            raise ValueError(f"{flag} needs --input FILE (the file to classify)")
    for text in texts:
        if _is_file(text):
            raise ValueError(
                f"{text!r} is a file, not a sentence: to classify its lines (or a table's text column) "
                f"use --input {shlex.quote(text)}"
            )


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # too long for a path, or a NUL character
        return False


def score_student(student_dir: str | None, data: DataConfig, device: str, backend: str) -> dict:
    """``train.classification_metrics`` of a student on the test split of ``data`` (split as for training),
    printed with the F1 of each class and the confusion matrix; a student of other labels is refused."""
    from model import Student, bundled_student
    from train import classification_metrics, load_splits

    student = Student.from_pretrained(student_dir or bundled_student(), device=device, backend=backend)
    splits = load_splits(data)
    if sorted(student.labels) != sorted(splits.labels):
        raise ValueError(
            f"the student predicts {' / '.join(student.labels)}, but {data.data} has the labels "
            f"{' / '.join(splits.labels)}: score it on data with its labels"
        )
    test, index = splits["test"], {name: i for i, name in enumerate(splits.labels)}
    predicted = [index[name] for name in student.predict_labels(test["text"].tolist())]
    metrics = classification_metrics(test["label"].to_numpy(), np.array(predicted), splits.labels)
    within = f", within one class {metrics['within_one']:.4f}" if "within_one" in metrics else ""
    print(
        f"{data.data_name()} test: {len(test):,} examples, accuracy {metrics['accuracy']:.4f}, "
        f"macro F1 {metrics['f1']:.4f}{within}"
    )
    print("F1 per class: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["f1_per_class"].items()))
    matrix = pd.DataFrame(metrics["confusion_matrix"], index=splits.labels, columns=splits.labels)
    print(f"confusion matrix (rows: true, columns: predicted):\n{matrix.to_string()}")
    return metrics


def label_shares(df: pd.DataFrame, labels: Sequence[str]) -> str:
    """``"49.8% positive"`` for the built-in labels, else each label's share."""
    shares = df["label"].value_counts(normalize=True)
    if tuple(labels) == corpus.BINARY_LABELS:
        return f"{shares.get(1, 0.0):.1%} positive"
    return ", ".join(f"{name} {shares.get(i, 0.0):.1%}" for i, name in enumerate(labels))


if __name__ == "__main__":
    main(sys.argv[1:])
