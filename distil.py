"""Distil a fine-tuned Korean transformer into a tiny BiLSTM: settings, the trainer and the command line.

    python distil.py download  --dataset nsmc [--data-dir DIR]
    python distil.py tokenizer --dataset nsmc --vocab-size 3000
    python distil.py teacher   --dataset nsmc --model NAME_OR_DIR
    python distil.py cache     --dataset nsmc --teacher DIR_OR_NAME
    python distil.py student   --dataset nsmc --teacher DIR_OR_NAME --vocab-size 3000 --size base --alpha 0.1
    python distil.py run       ... (all stages)
    python distil.py predict   "재밌어요" [--student runs/nsmc/<run>/student] (default: the bundled student)
    python distil.py predict   --input reviews.csv [--text-column review] [--output predictions.jsonl]

Every stage is idempotent: what is already done and valid is reused. Read top to bottom: settings (the
dataclasses below are the single source of every option, its help, choices and allowed range; the CLI and
the notebook are generated from / checked against them) -> the trainer -> the command line.
Expected errors are printed as one line (exit code 2: a bad setting, 1: a file or run state); --debug shows
the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import numbers
import os
import pickle
import random
import re
import shlex
import shutil
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import filelock
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from tensorboard.plugins.hparams import summary_v2 as hp  # what hparams.api exports, without its Keras import
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm
from transformers import get_scheduler

import augment
import batch_predict
import corpus
import logits_cache
import reader
import settings
import teacher as teachers
import utils
import vocab
from model import (
    BACKENDS,
    BUNDLED_NAMES,
    POOLINGS,
    SIZE_PRESETS,
    BiLSTMClassifier,
    Student,
    StudentConfig,
    bundled_student,
    count_parameters,
    display_name,
    encode,
    load_student,
    pad_batch,
    save_student,
)
from settings import add_arguments, from_args, setting, shared_setting, validate_fields

logger = utils.logger

DEFAULT_ALPHA = 0.1  # Tang et al. weigh the label loss lightly
KD_LOSSES = ("kl", "mse")
OPTIMIZERS = ("adamw", "adam")
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)


# -------------------------------------------------------------------------------------------------------
# Settings: dataclass fields carry help, choices, bounds, CLI flag and grid; __post_init__ validates them
# -------------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Which examples are used: shared by the teacher stage and every student of a grid."""

    dataset: str = setting("nsmc", "built-in dataset (--data replaces it)", choices=corpus.DATASET_NAMES)
    data: str | None = setting(
        None,
        "your own reviews: a CSV, TSV, JSON Lines or Parquet file, a folder of train/valid/test files or a "
        "datasets save_to_disk folder (split by a hash of each row's id, or text, unless it has the splits)",
    )
    text_column: str | None = setting(
        None, f"--data's text column (default: the first of {', '.join(reader.GUESSES['text'])})"
    )
    label_column: str | None = setting(
        None, f"--data's label column (default: the first of {', '.join(reader.GUESSES['label'])})"
    )
    id_column: str | None = setting(None, "--data's id column (default: id if there is one, else the text)")
    labels: tuple[str, ...] | None = setting(
        None,
        "--data's label names in the order of their ids, e.g. 부정 긍정 (default: the labels found, sorted, "
        "numbers numerically)",
    )
    max_train: int | None = setting(
        None, "train on a random subset of this many training examples", bounds="[1, inf)"
    )
    valid_fraction: float = setting(0.05, "share of train held out for validation", bounds="(0, 1)")
    test_fraction: float = setting(
        0.2, "share held out for test (datasets without a test file)", bounds="(0, 1)"
    )
    skip_bad_rows: bool = setting(False, "skip (and count) malformed rows instead of stopping")

    def __post_init__(self) -> None:
        if isinstance(self.data, Path):
            self.data = str(self.data)
        if isinstance(self.labels, (list, tuple)):  # numbers in the notebook's PARAMS are names too
            self.labels = tuple(str(name) for name in self.labels)
        validate_fields(self)
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1: {self.valid_fraction} + {self.test_fraction}"
            )
        self._check_data_options()

    def _check_data_options(self) -> None:
        """--data replaces --dataset; the column and label options read --data only; two labels at least."""
        given = [f for f in ("text_column", "label_column", "id_column", "labels") if getattr(self, f)]
        if self.data is None and given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ValueError(f"{flags} describe --data (your own file): pass --data PATH, or leave them out")
        if self.data is not None and self.dataset != _default(DataConfig, "dataset"):
            raise ValueError(f"--dataset {self.dataset} and --data {self.data}: give one of them")
        if self.labels is not None and (len(self.labels) < 2 or len(set(self.labels)) < len(self.labels)):
            raise ValueError(f"labels (--labels) must be two or more distinct names, got {list(self.labels)}")

    def data_config(self) -> DataConfig:
        """Just the data settings (e.g. of a RunConfig)."""
        return DataConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataConfig)})

    def data_name(self) -> str:
        """The name runs, tokenizers, teachers and caches are filed under: the dataset, or --data's file stem
        (or folder name)."""
        return corpus.data_name(self.data) if self.data else self.dataset

    def read_settings(self) -> corpus.ReadSettings:
        """How --data is read: its columns and labels."""
        columns = (self.text_column, self.label_column, self.id_column)
        return corpus.ReadSettings(reader.Layout(), *columns, labels=self.labels)


# Settings a baseline (alpha = 1) leaves at their defaults: it learns from the labels only.
KD_FIELDS = ("teacher", "teacher_weights", "temperature", "kd_loss", "teacher_max_length", "unlabeled")


@dataclass
class RunConfig(DataConfig):
    """Everything that defines one distillation run (saved in the run's config.json).

    ``alpha`` None means 0.1 with a teacher and 1 (the no-teacher baseline) without. A baseline has no
    teacher and no distillation settings: passing them with alpha 1 is an error, never silently dropped
    (``grid`` builds the alpha = 1 points of a grid as baselines explicitly).
    """

    teacher: str | tuple[str, ...] | None = setting(
        None,
        "fine-tuned HF sequence-classification model (directory or hub name), scikit-learn teacher or "
        "student directory; several distil from the (weighted) mean of their logits",
    )
    teacher_weights: tuple[float, ...] | None = setting(
        None, "weights of several teachers' logits in their mean (default: equal)"
    )
    vocab_size: int = setting(
        3000, "WordPiece vocab size(s); several run a grid", bounds="[50, inf)", grid=True
    )
    size: str = setting("base", "student preset(s)", choices=SIZE_PRESETS, grid=True)
    embedding_dim: int | None = setting(
        None, "custom embedding size (overrides the preset)", bounds="[1, inf)"
    )
    hidden_dim: int | None = setting(
        None, "custom LSTM hidden size per direction (overrides the preset)", bounds="[1, inf)"
    )
    pooling: str = setting("last", "how the BiLSTM states become one vector", choices=POOLINGS)
    fc_dim: int = setting(0, "width of an extra ReLU layer (0: none)", bounds="[0, inf)")
    dropout: float = setting(0.2, "dropout before the output layer", bounds="[0, 1)")
    alpha: float | None = setting(
        None,
        "weight of the label loss; 1 trains the no-teacher baseline (default: 0.1 with a teacher, else 1)",
        bounds="[0, 1]",
        grid=True,
    )
    temperature: float = setting(2.0, "softmax temperature of the KL loss", bounds="(0, inf)", grid=True)
    kd_loss: str = setting(
        "kl", "kl (Hinton, x T^2) or mse on logits (Tang et al.)", choices=KD_LOSSES, grid=True
    )
    teacher_max_length: int = shared_setting(teachers.TeacherConfig, "max_length")
    epochs: int = setting(10, "training epochs", bounds="[1, inf)")
    batch_size: int = setting(64, "training batch size", bounds="[1, inf)")
    lr: float = setting(2e-3, "peak learning rate", bounds="(0, 1]")
    weight_decay: float = setting(0.01, "weight decay", bounds="[0, 1]")
    optimizer: str = setting("adamw", "optimizer", choices=OPTIMIZERS)
    scheduler: str = setting(
        "linear", "learning-rate schedule (transformers.get_scheduler)", choices=SCHEDULERS
    )
    warmup_ratio: float = setting(0.05, "share of the steps spent warming up", bounds="[0, 1)")
    grad_clip: float = setting(1.0, "max gradient norm (0: off)", bounds="[0, inf)")
    patience: int = setting(
        3, "early stopping: epochs without a better validation accuracy", bounds="[1, inf)"
    )
    max_length: int = setting(128, "tokens kept per text", bounds="[1, inf)")
    unlabeled: str | tuple[str, ...] | None = setting(
        None, "extra text file(s), one review per line, that the teacher labels for the student"
    )
    seed: int = setting(42, "random seed(s)", bounds="[0, 4294967295]", grid=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.teacher = _one_or_several(self.teacher, "teacher (--teacher)")
        self.unlabeled = _one_or_several(self.unlabeled, "unlabeled (--unlabeled)")
        stems = [Path(f).stem for f in self.unlabeled_files()]
        if len(set(stems)) < len(stems):
            raise ValueError(f"unlabeled (--unlabeled) files need distinct names (their caches): got {stems}")
        self._check_weights()
        if self.alpha is None:
            self.alpha = DEFAULT_ALPHA if self.teacher else 1.0
        if self.alpha == 1.0:
            given = [k for k in KD_FIELDS if getattr(self, k) != _default(RunConfig, k)]
            if given:
                raise ValueError(
                    "alpha 1 is the baseline: it has no teacher and no distillation settings; "
                    f"got {', '.join(given)} (use alpha < 1 to distil, or leave them out)"
                )
        elif self.teacher is None:
            raise ValueError(
                "without a teacher only the baseline can be trained: pass --alpha 1 or --teacher"
            )
        self.student_config()  # the model's own checks (e.g. preset and custom sizes)

    def teacher_members(self) -> tuple[str, ...]:
        """The teachers: none, one, or the members of an ensemble."""
        return _as_tuple(self.teacher)

    def unlabeled_files(self) -> tuple[str, ...]:
        """The unlabeled text files (transfer sets)."""
        return _as_tuple(self.unlabeled)

    def teacher_label(self) -> str:
        """One teacher's short name, or ``ens<n>-<hash8>`` of an ensemble's member list."""
        members = self.teacher_members()
        if len(members) == 1:
            return display_name(members[0])
        return f"ens{len(members)}-{utils.short_hash(list(members))}"

    def unlabeled_label(self) -> str:
        """``u-<stem>``, ``u-<stem1>+<stem2>``, or ``u<n>-<hash8>`` when the stems are long."""
        stems = [Path(f).stem for f in self.unlabeled_files()]
        label = "u-" + "+".join(stems)
        return label if len(stems) == 1 or len(label) <= 40 else f"u{len(stems)}-{utils.short_hash(stems)}"

    def _check_weights(self) -> None:
        if self.teacher_weights is None:
            return
        weights, members = self.teacher_weights, self.teacher_members()
        if len(members) < 2 or len(weights) != len(members):
            raise ValueError(
                f"teacher_weights (--teacher-weights) needs one weight per teacher of several: "
                f"got {len(weights)} weight(s) for {len(members)} teacher(s)"
            )
        if not all(isinstance(w, numbers.Real) and math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"teacher_weights (--teacher-weights) must be finite numbers > 0, got {weights}")
        self.teacher_weights = tuple(float(w) for w in weights)

    def student_config(self) -> StudentConfig:
        """The model's config: the preset, custom dimensions, and every field StudentConfig shares with this
        one (pooling, fc_dim, dropout, max_length, ...: a new model option needs only the two fields)."""
        dims = {k: getattr(self, k) for k in ("embedding_dim", "hidden_dim") if getattr(self, k) is not None}
        shared = {f.name for f in dataclasses.fields(StudentConfig)} & {
            f.name for f in dataclasses.fields(self)
        }
        options = {
            k: getattr(self, k) for k in shared - {"vocab_size", "embedding_dim", "hidden_dim", "size"}
        }
        preset = StudentConfig.from_size(self.size, self.vocab_size, **options)
        return dataclasses.replace(preset, size=None, **dims) if dims else preset

    def run_name(self) -> str:
        """Directory name: readable, e.g. ``base-v3000-koelectra-nsmc-a0.1-T2``, plus ``-h<hash>`` of the
        other settings that differ from their defaults (pooling, dropout, lr, ...): a change is a new run."""
        parts = [self.size_label(), f"v{self.vocab_size}"]
        if self.teacher is None:
            parts += ["none", "a1"]
        else:
            parts += [self.teacher_label(), f"a{self.alpha:g}", f"T{self.temperature:g}"]
            parts += ["mse"] if self.kd_loss == "mse" else []
            parts += [self.unlabeled_label()] if self.unlabeled else []
        parts += [f"n{self.max_train}"] if self.max_train else []
        parts += [f"s{self.seed}"] if self.seed != 42 else []
        rest = {k: v for k, v in self.changed_settings().items() if k not in NAMED_FIELDS}
        if rest:
            parts.append("h" + utils.short_hash(rest))
        return "-".join(parts)

    def size_label(self) -> str:
        """The preset's name, or ``e<embedding>h<hidden>`` when custom dimensions differ from it."""
        cfg = self.student_config()
        dims = (cfg.embedding_dim, cfg.hidden_dim)
        return self.size if dims == SIZE_PRESETS[self.size] else f"e{dims[0]}h{dims[1]}"

    def changed_settings(self) -> dict:
        """The settings that differ from their defaults."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != _default(RunConfig, f.name)
        }


# Shown in the readable part of a run's name (the dataset or --data's name is its parent folder); the rest go
# into the hash.
NAMED_FIELDS = {
    "dataset",
    "data",
    "teacher",
    "vocab_size",
    "size",
    "embedding_dim",
    "hidden_dim",
    "alpha",
    "temperature",
    "kd_loss",
    "unlabeled",
    "max_train",
    "seed",
}


def _one_or_several(value: object, name: str) -> str | tuple[str, ...] | None:
    """One value stays a str (as it always was), several a tuple of distinct non-empty strs; [] is None."""
    items = list(value) if isinstance(value, (list, tuple)) else [value] if value is not None else []
    if not all(isinstance(v, (str, Path)) and str(v).strip() for v in items):
        raise ValueError(f"{name} must be directories, names or files, got {value!r}")
    items = [str(v) for v in items]
    if len(set(items)) < len(items):
        raise ValueError(f"{name} lists the same value twice: {items}")
    return None if not items else items[0] if len(items) == 1 else tuple(items)


def _as_tuple(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    return () if value is None else (value,) if isinstance(value, str) else tuple(value)


def _default(cls: type, name: str) -> object:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@dataclass
class Paths:
    """Where data, tokenizers, teachers and runs live (one working directory, e.g. on Google Drive)."""

    data_dir: str | None = setting(
        None, "folder with local copies of the dataset files instead of downloading them"
    )
    data_root: str = setting("data", "where downloads go")
    tokenizer_root: str = setting("tokenizer", "where vocabularies go")
    teacher_root: str = setting("teacher_model", "where teachers and their logits caches go")
    out: str = setting("runs", "where student runs go")

    def __post_init__(self) -> None:
        validate_fields(self)


def grid(base: RunConfig | dict, **lists: list) -> list[RunConfig]:
    """Every combination of the listed values (e.g. vocab_size=[2000, 3000], alpha=[0.1, 1]), no repeats.

    A point with alpha = 1 is built as the baseline: no teacher and default distillation settings.
    """
    fixed = dataclasses.asdict(base) if isinstance(base, RunConfig) else dict(base)
    keys = list(lists)
    configs = {}
    for values in itertools.product(*(lists[k] for k in keys)):
        point = {**fixed, **dict(zip(keys, values))}
        if point.get("alpha") == 1.0:
            point.update({k: _default(RunConfig, k) for k in KD_FIELDS})
        cfg = RunConfig(**point)
        configs.setdefault(json.dumps(dataclasses.asdict(cfg), sort_keys=True), cfg)
    return list(configs.values())


def check_keys(given: typing.Iterable[str], valid: typing.Iterable[str], what: str) -> None:
    """ValueError for an unknown key, naming the nearest valid one (a typo such as ``patiance``)."""
    valid = sorted(set(valid))
    for key in given:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
            raise ValueError(f"unknown {what} {key!r}: {hint}")


# Notebook parameters that are not RunConfig/Paths fields: the teacher's fine-tuning settings (until they
# live in a teacher config dataclass) and the notebook's own switches.
TEACHER_PARAMS = (
    "teacher_base_model",
    "teacher_epochs",
    "teacher_max_steps",
    "teacher_batch_size",
    "teacher_lr",
)


def configs_from_params(
    params: dict,
    teacher: str | None = None,
    alphas: list[float] | None = None,
    extra_keys: typing.Iterable[str] = (),
) -> tuple[DataConfig, list[RunConfig]]:
    """The notebook's PARAMS -> (data settings, one RunConfig per grid point); every key and value checked.

    A list value is a grid axis, but for the fields that take several values (teacher, teacher_weights,
    unlabeled). ``teacher`` (one or a list) replaces PARAMS' teacher; ``alphas`` replaces PARAMS' alpha
    (alpha = 1 points are baselines). Keys other than RunConfig / Paths fields, TEACHER_PARAMS and
    ``extra_keys`` are refused with the nearest valid key.
    """
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    check_keys(
        params,
        run_fields | {f.name for f in dataclasses.fields(Paths)} | set(TEACHER_PARAMS) | set(extra_keys),
        "parameter",
    )
    values = {k: v for k, v in params.items() if k in run_fields}
    values["teacher"] = teacher
    if alphas is not None:
        values["alpha"] = list(alphas)
    hints = typing.get_type_hints(RunConfig)
    # teacher, unlabeled: a list is one value
    several = {k for k in values if settings.takes_several(hints[k])}
    fixed = {k: v for k, v in values.items() if k in several or not isinstance(v, (list, tuple))}
    axes = {k: list(v) for k, v in values.items() if k not in fixed}
    for key in axes:
        if not _meta(RunConfig, key).get("grid"):
            grid_keys = [f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("grid")]
            raise ValueError(
                f"parameter {key!r} takes one value, not a list (grid axes: {', '.join(grid_keys)})"
            )
    configs = grid(fixed, **axes)
    return configs[0].data_config(), configs


def _meta(cls: type, name: str) -> typing.Mapping:
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == name)


# -------------------------------------------------------------------------------------------------------
# Losses and batching
# -------------------------------------------------------------------------------------------------------


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    alpha: float,
    temperature: float = 2.0,
    kd_loss: str = "kl",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``alpha * CE(student, label) + (1 - alpha) * KD`` -> (total, ce, kd).

    KD is ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` (Hinton) or the MSE between logits
    (Tang et al.). Rows labelled -1 (unlabeled text) count in KD only.
    """
    labelled = labels >= 0
    zero = student_logits.new_zeros(())
    ce = F.cross_entropy(student_logits[labelled], labels[labelled]) if labelled.any() else zero
    if teacher_logits is None or alpha == 1.0:
        kd = zero
    elif kd_loss == "kl":
        log_p = F.log_softmax(student_logits / temperature, dim=-1)
        q = F.log_softmax(teacher_logits / temperature, dim=-1)
        kd = F.kl_div(log_p, q, log_target=True, reduction="batchmean") * temperature**2
    else:
        kd = F.mse_loss(student_logits, teacher_logits)
    return alpha * ce + (1 - alpha) * kd, ce, kd


def bucket_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: int = 50
) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort in chunks of ``bucket`` batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def classification_metrics(labels: np.ndarray, preds: np.ndarray, names: typing.Sequence[str]) -> dict:
    """Accuracy, macro F1, F1 per class (by name), the confusion matrix (rows: true class) and, for labels
    that are ordered numbers (stars), the share predicted within one class of the truth."""
    ids = list(range(len(names)))
    per_class = f1_score(labels, preds, labels=ids, average=None, zero_division=0)
    metrics = {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average="macro")),
        "f1_per_class": {name: round(float(f1), 6) for name, f1 in zip(names, per_class)},
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
    }
    if corpus.is_ordinal(names):
        metrics["within_one"] = float(np.mean(np.abs(np.asarray(labels) - np.asarray(preds)) <= 1))
    return metrics


@torch.inference_mode()
def evaluate(
    model: BiLSTMClassifier,
    sequences: list[list[int]],
    labels: np.ndarray,
    device: torch.device,
    batch_size: int = 512,
) -> dict:
    """``classification_metrics`` (with the model's label names) and the mean CE loss on encoded examples."""
    model.eval()
    order = np.argsort([len(s) for s in sequences], kind="stable")
    preds = np.empty(len(sequences), dtype=np.int64)
    loss = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, lengths = pad_batch([sequences[i] for i in idx], model.config.pad_id)
        logits = model(ids.to(device), lengths)
        loss += F.cross_entropy(logits, torch.as_tensor(labels[idx], device=device), reduction="sum").item()
        preds[idx] = logits.argmax(-1).cpu().numpy()
    return {
        **classification_metrics(labels, preds, model.config.label_names()),
        "loss": loss / len(sequences),
    }


# -------------------------------------------------------------------------------------------------------
# Training one student: open or resume the run -> prepare the data -> fit epochs -> finish
# -------------------------------------------------------------------------------------------------------


class RunStateError(RuntimeError):
    """A run folder that cannot be used as it is: other settings or data, in progress, or a corrupt file."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or non-finite weights."""


LOCK_NAME = ".lock"  # held (flock) while a process works on the run; released when that process dies
PID_NAME = ".lock.pid"  # which process holds it, for the error message
CONFIG_JSON = "config.json"  # written with the first checkpoint: a run that failed before it blocks nothing


def train_student(
    cfg: RunConfig,
    paths: Paths | None = None,
    device: str = "auto",
    overwrite: bool = False,
    log_every: int = 50,
    splits: dict[str, pd.DataFrame] | None = None,
) -> dict:
    """Train (or resume, or reuse) one student and return its metrics (also saved as metrics.json).

    ``splits`` (from ``load_splits``) are loaded here when not given; a grid passes them in once. The run
    directory holds config.json (the settings plus fingerprints of the data and the teacher), checkpoint.pt
    (for resuming), tokenizer/, student/ (the best epoch by validation accuracy), the TensorBoard events
    and, once finished, metrics.json. A run is reused or resumed only when settings and fingerprints match.
    """
    paths = paths or Paths()
    dev = utils.get_device(device)
    splits = splits if splits is not None else load_splits(cfg, paths)
    train = training_rows(cfg, splits)
    identity = run_identity(cfg, paths, splits, train)
    run_dir = Path(paths.out) / cfg.data_name() / cfg.run_name()
    for folder in (Path(paths.out), run_dir.parent):  # temporaries left by runs killed mid-write
        utils.remove_stale_temporaries(folder)
    with run_lock(run_dir):
        utils.remove_stale_temporaries(run_dir)
        finished = open_run(run_dir, cfg, identity, overwrite)
        if finished is not None:
            return finished
        utils.set_seed(cfg.seed)
        data = prepare(cfg, paths, run_dir, splits, train, dev, device)
        fit = start_fit(cfg, run_dir, data, dev)
        record = {**dataclasses.asdict(cfg), "fingerprints": identity}
        write_hparams_config(Path(paths.out))
        writer = SummaryWriter(str(run_dir), purge_step=fit.global_step() if fit.state["epoch"] else None)
        try:
            while fit.state["epoch"] < cfg.epochs and fit.state["bad_epochs"] < cfg.patience:
                start = time.perf_counter()
                fit_epoch(cfg, fit, data, writer, log_every)
                end_epoch(cfg, run_dir, fit, data, writer, start, record)
            ensemble = ensemble_accuracy(cfg, paths, splits, device)
            return finish_run(cfg, run_dir, splits, fit, dev, writer, extra=ensemble)
        finally:
            writer.close()


def load_splits(cfg: DataConfig, paths: Paths | None = None) -> corpus.Splits:
    """The train/valid/test splits of the data settings and their label names (load them once for a whole
    grid): --data's file or folder, else the built-in dataset (from --data-dir, or downloaded)."""
    paths = paths or Paths()
    options = dict(
        valid_fraction=cfg.valid_fraction,
        test_fraction=cfg.test_fraction,
        skip_bad_rows=cfg.skip_bad_rows,
        max_train=cfg.max_train,
    )
    if cfg.data:
        return corpus.load_file(cfg.data, cfg.read_settings(), **options)
    return corpus.load_dataset(cfg.dataset, paths.data_dir, paths.data_root, **options)


def training_rows(cfg: RunConfig, splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The training split, plus each unlabeled text file's rows (label -1, in file order), if any."""
    if not cfg.unlabeled:
        return splits["train"]
    parts = [corpus.read_unlabeled(path) for path in cfg.unlabeled_files()]
    return pd.concat([splits["train"], *parts], ignore_index=True)


def run_identity(cfg: RunConfig, paths: Paths, splits: dict[str, pd.DataFrame], train: pd.DataFrame) -> dict:
    """Fingerprints of what a run learns from: its examples (ids, texts and labels of every split, the label
    names, and the unlabeled text) and its teacher's files (config and weights; a student teacher's too; None
    without a teacher). A teacher that predicts other labels than the data's is refused here."""
    labels = corpus.label_names(splits)
    digest = hashlib.sha256()
    for name, df in [*splits.items(), ("train+unlabeled", train)]:
        digest.update(f"{name}:{corpus.data_fingerprint(df, labels)}\n".encode())
    resolved = [teachers.resolve_teacher(member, paths.teacher_root) for member in cfg.teacher_members()]
    for member in resolved:
        teachers.check_labels(member, labels)
    prints = [teachers.teacher_fingerprint(member) for member in resolved]
    teacher = None if not prints else prints[0] if len(prints) == 1 else prints  # an ensemble: every member
    return {"data": digest.hexdigest(), "teacher": teacher}


@contextlib.contextmanager
def run_lock(run_dir: Path) -> typing.Iterator[None]:
    """Hold the run folder for this process; a second process stops with "run in progress (pid N)".

    An OS file lock (flock) is released by the kernel when its process dies: a stale lock never blocks.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(run_dir / LOCK_NAME, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        pid_file = run_dir / PID_NAME
        pid = pid_file.read_text(encoding="utf-8").strip() if pid_file.is_file() else "unknown"
        raise RunStateError(
            f"{run_dir}: run in progress (pid {pid}); wait for it to finish or stop it"
        ) from None
    try:
        (run_dir / PID_NAME).write_text(str(os.getpid()), encoding="utf-8")
        yield
    finally:
        (run_dir / PID_NAME).unlink(missing_ok=True)
        lock.release()


def open_run(run_dir: Path, cfg: RunConfig, identity: dict, overwrite: bool) -> dict | None:
    """The finished run's metrics to reuse, or None to train (resuming from checkpoint.pt if there is one).

    Refuses (RunStateError) a run folder whose settings or fingerprints differ. Leftovers of a start that
    never finished an epoch (no config.json) are removed.
    """
    config_path = run_dir / CONFIG_JSON
    if overwrite or not config_path.is_file():
        clear_run(run_dir)
        return None
    saved = read_run_json(config_path)
    current = json.loads(json.dumps({**dataclasses.asdict(cfg), "fingerprints": identity}))  # tuples: lists
    changed = sorted(k for k in current if k != "fingerprints" and saved.get(k) != current[k])
    changed += [
        f"{k} fingerprint" for k in identity if (saved.get("fingerprints") or {}).get(k) != identity[k]
    ]
    if changed:
        raise RunStateError(
            f"{run_dir} holds a run with other settings ({', '.join(changed)}; e.g. another --data-dir, "
            "data or teacher): pass --overwrite to replace it or --out to write elsewhere"
        )
    if (run_dir / "metrics.json").is_file():
        logger.info(f"{run_dir} is finished: reusing its metrics (pass --overwrite to train again)")
        return read_run_json(run_dir / "metrics.json", SUMMARY_COLUMNS)
    return None


def read_run_json(path: Path, required: typing.Iterable[str] = ()) -> dict:
    """A run file holding a JSON object with the ``required`` keys; else a one-line RunStateError naming the
    file and the remedy (--overwrite)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = f"is unreadable ({utils.one_line(err)})"
    else:
        missing = [key for key in required if key not in value] if isinstance(value, dict) else []
        if isinstance(value, dict) and not missing:
            return value
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        problem = f"lacks {listed}" if missing else f"holds a {type(value).__name__}, not a JSON object"
    raise RunStateError(f"{path} {problem}; pass --overwrite to train the run again")


def clear_run(run_dir: Path) -> None:
    """Empty a run folder (but for the lock this process holds)."""
    for path in run_dir.iterdir():
        if path.name in (LOCK_NAME, PID_NAME):
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@dataclass
class Prepared:
    """A run's encoded data: what every epoch reads."""

    tokenizer: typing.Any
    train_seqs: list[list[int]]
    lengths: np.ndarray
    train_labels: torch.Tensor
    teacher_train: torch.Tensor | None  # teacher logits aligned with the training rows
    valid_seqs: list[list[int]]
    valid_labels: np.ndarray
    labels: tuple[str, ...]  # the label names of the label ids


def prepare(
    cfg: RunConfig,
    paths: Paths,
    run_dir: Path,
    splits: dict,
    train: pd.DataFrame,
    dev: torch.device,
    device: str,
) -> Prepared:
    """Tokenizer (the run's own copy, so that resuming never meets a retrained vocabulary), sequences and
    the cached teacher logits."""
    tokenizer_dir = run_dir / "tokenizer"
    if (tokenizer_dir / "tokenizer.json").is_file():
        try:
            tokenizer = vocab.load_tokenizer(tokenizer_dir)
        except Exception as err:  # a truncated or foreign file: name it and the remedy
            raise RunStateError(
                f"{tokenizer_dir} is corrupt ({type(err).__name__}); pass --overwrite"
            ) from None
    else:
        tokenizer = vocab.get_tokenizer(
            splits["train"], cfg.vocab_size, cfg.data_name(), paths.tokenizer_root
        )
        utils.atomic_dir(tokenizer_dir, lambda tmp: vocab.save_tokenizer_files(tokenizer, tmp))
    teacher_train, labels = None, corpus.label_names(splits)
    if cfg.teacher is not None and cfg.alpha < 1.0:
        teacher_train = teacher_logits_for(cfg, paths, train, device, labels).to(dev)
    train_seqs = encode(tokenizer, train["text"].tolist(), cfg.max_length)
    return Prepared(
        tokenizer=tokenizer,
        train_seqs=train_seqs,
        lengths=np.array([len(s) for s in train_seqs]),
        train_labels=torch.tensor(train["label"].to_numpy(), device=dev),
        teacher_train=teacher_train,
        valid_seqs=encode(tokenizer, splits["valid"]["text"].tolist(), cfg.max_length),
        valid_labels=splits["valid"]["label"].to_numpy(),
        labels=labels,
    )


def teacher_logits_for(
    cfg: RunConfig, paths: Paths, train: pd.DataFrame, device: str, labels: typing.Sequence[str]
) -> torch.Tensor:
    """Cached teacher logits (an ensemble's weighted mean) aligned with the training rows: the labelled rows
    and each unlabeled file (``training_rows`` order) are separate cache splits."""
    n_labelled = int((train["label"] >= 0).sum())
    chunks = [("train", train.iloc[:n_labelled])]
    for path in cfg.unlabeled_files():
        n = len(corpus.read_unlabeled(path))
        start = sum(len(df) for _, df in chunks)
        chunks.append((teachers.unlabeled_split(path), train.iloc[start : start + n]))
    return torch.cat([ensemble_logits(cfg, paths, df, split, device, labels) for split, df in chunks])


def ensemble_logits(
    cfg: RunConfig, paths: Paths, df: pd.DataFrame, split: str, device: str, labels: typing.Sequence[str]
) -> torch.Tensor:
    """The run's teacher logits of ``df`` from the cache(s): one teacher's, or an ensemble's weighted mean;
    every teacher and cache must predict ``labels``."""
    options = dict(teacher_root=paths.teacher_root, device=device, max_length=cfg.teacher_max_length)
    members, name = cfg.teacher_members(), cfg.data_name()
    return teachers.ensemble_logits(members, df, name, split, cfg.teacher_weights, labels=labels, **options)


def ensemble_accuracy(cfg: RunConfig, paths: Paths, splits: dict, device: str) -> dict:
    """An ensemble's own valid/test accuracy from its members' caches (printed); {} for one teacher."""
    if len(cfg.teacher_members()) < 2:
        return {}
    result = {}
    for split in ("valid", "test"):
        logits = ensemble_logits(cfg, paths, splits[split], split, device, corpus.label_names(splits))
        result[f"teacher_{'val' if split == 'valid' else split}_accuracy"] = teachers.accuracy(
            logits, splits[split]
        )
    print(
        f"ensemble teacher {cfg.teacher_label()} ({len(cfg.teacher_members())} members): valid accuracy "
        f"{result['teacher_val_accuracy']:.4f}, test accuracy {result['teacher_test_accuracy']:.4f}"
    )
    return result


@dataclass
class Fit:
    """The model in training, its optimizer, schedule, shuffling RNG and progress (checkpoint.pt)."""

    model: BiLSTMClassifier
    optimizer: torch.optim.Optimizer
    scheduler: typing.Any
    rng: np.random.Generator
    state: dict
    steps_per_epoch: int
    rows: int  # training rows per epoch: the labelled ones and every unlabeled file's

    def global_step(self) -> int:
        return self.state["epoch"] * self.steps_per_epoch


def start_fit(cfg: RunConfig, run_dir: Path, data: Prepared, dev: torch.device) -> Fit:
    """A fresh model and optimizer, or the state after the last finished epoch from checkpoint.pt."""
    labels = dict(enumerate(data.labels))
    model = BiLSTMClassifier(
        dataclasses.replace(cfg.student_config(), num_labels=len(labels), id2label=labels)
    )
    model = model.to(dev)
    logger.info(f"student {cfg.run_name()}: {count_parameters(model):,} parameters on {dev}")
    steps_per_epoch = -(-len(data.train_seqs) // cfg.batch_size)
    optimizer = make_optimizer(cfg, model)
    total = steps_per_epoch * cfg.epochs
    scheduler = get_scheduler(
        cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total), num_training_steps=total
    )
    rng = np.random.default_rng(cfg.seed)
    state = {
        "epoch": 0,
        "best_accuracy": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "train_seconds": 0.0,
        "history": [],
    }
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, rng)
        logger.info(f"resuming {run_dir} after epoch {state['epoch']}")
    return Fit(model, optimizer, scheduler, rng, state, steps_per_epoch, len(data.train_seqs))


def fit_epoch(cfg: RunConfig, fit: Fit, data: Prepared, writer: SummaryWriter, log_every: int) -> None:
    """One pass over the training data. Losses are summed on the device (no sync per step) and checked for
    NaN/Inf at each log interval: a non-finite loss stops training naming the epoch and the first bad step."""
    epoch, dev = fit.state["epoch"] + 1, data.train_labels.device
    fit.model.train()
    sums = torch.zeros(3, device=dev)  # loss, ce, kd since the last log
    first_bad = torch.zeros((), dtype=torch.long, device=dev)  # first step with a non-finite loss (0: none)
    batches = bucket_batches(data.lengths, cfg.batch_size, fit.rng)
    for step, idx in enumerate(
        tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=None), start=1
    ):
        ids, lens = pad_batch([data.train_seqs[i] for i in idx], fit.model.config.pad_id)
        index = torch.as_tensor(idx, device=dev)
        logits = fit.model(ids.to(dev), lens)
        target = data.teacher_train[index] if data.teacher_train is not None else None
        loss, ce, kd = distillation_loss(
            logits, data.train_labels[index], target, cfg.alpha, cfg.temperature, cfg.kd_loss
        )
        fit.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(fit.model.parameters(), cfg.grad_clip)
        fit.optimizer.step()
        fit.scheduler.step()
        sums += torch.stack([loss.detach(), ce.detach(), kd.detach()])
        first_bad += ((first_bad == 0) & ~torch.isfinite(loss.detach())).long() * step
        if step % log_every == 0 or step == len(batches):
            if bad := int(first_bad):
                raise TrainingDiverged(
                    f"non-finite loss (NaN/Inf) at epoch {epoch}, step {bad} of {len(batches)}: "
                    "lower --lr, keep --grad-clip on, or check the data and the teacher's logits"
                )
            global_step = fit.global_step() + step
            n = log_every if step % log_every == 0 else step % log_every
            for name, value in zip(("loss", "ce", "kd"), (sums / n).tolist()):
                writer.add_scalar(f"train/{name}", value, global_step)
            writer.add_scalar("train/lr", fit.scheduler.get_last_lr()[0], global_step)
            sums.zero_()


def end_epoch(
    cfg: RunConfig, run_dir: Path, fit: Fit, data: Prepared, writer: SummaryWriter, start: float, record: dict
) -> None:
    """Validate, keep the best student, write config.json (first epoch) and the checkpoint."""
    state, epoch = fit.state, fit.state["epoch"] + 1
    state["train_seconds"] += time.perf_counter() - start
    val = evaluate(fit.model, data.valid_seqs, data.valid_labels, data.train_labels.device)
    write_valid_scalars(writer, val, fit.global_step() + fit.steps_per_epoch)
    state["epoch"] = epoch
    seconds = time.perf_counter() - start
    state["history"].append(
        {"epoch": epoch, "val_accuracy": val["accuracy"], "val_f1": val["f1"], "seconds": seconds}
        | ({"val_within_one": val["within_one"]} if "within_one" in val else {})
    )
    if val["accuracy"] > state["best_accuracy"]:
        state.update(best_accuracy=val["accuracy"], best_f1=val["f1"], best_epoch=epoch, bad_epochs=0)
        save_best(
            fit.model,
            data.tokenizer,
            run_dir / "student",
            {"run": cfg.run_name(), "epoch": epoch, "val_accuracy": val["accuracy"]},
        )
    else:
        state["bad_epochs"] += 1
    if not (run_dir / CONFIG_JSON).is_file():
        utils.atomic_write_json(run_dir / CONFIG_JSON, record)
    save_checkpoint(run_dir / "checkpoint.pt", fit.model, fit.optimizer, fit.scheduler, fit.rng, state)
    logger.info(f"epoch {epoch}: val accuracy {val['accuracy']:.4f}, f1 {val['f1']:.4f} ({seconds:.1f}s)")


def write_valid_scalars(writer: SummaryWriter, val: dict, step: int) -> None:
    """Validation accuracy, macro F1 and loss on the global step (the x axis of the train curves); with more
    than two classes also the F1 of each class and, for ordered numbers (stars), the within-one accuracy."""
    scalars = {name: val[name] for name in ("accuracy", "f1", "loss", "within_one") if name in val}
    if len(val["f1_per_class"]) > 2:
        scalars |= {f"f1/{name}": f1 for name, f1 in val["f1_per_class"].items()}
    for name, value in scalars.items():
        writer.add_scalar(f"valid/{name}", value, step)
    writer.flush()


def save_best(model: BiLSTMClassifier, tokenizer: typing.Any, directory: Path, extra: dict) -> None:
    """Save the student, refusing non-finite weights (they would predict NaN)."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(
            f"the student's weights are not finite ({', '.join(bad)}) at epoch {extra.get('epoch')}:"
            " not saved; lower --lr"
        )
    save_student(model, tokenizer, directory, extra=extra)


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def save_checkpoint(path: Path, model, optimizer, scheduler, rng: np.random.Generator, state: dict) -> None:
    """Everything needed to resume after the last finished epoch, written atomically (tensors and plain data
    only: it loads with ``torch.load(weights_only=True)``)."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python_rng": random.getstate(),
        "state": state,
    }
    utils.atomic_save(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, model, optimizer, scheduler, rng: np.random.Generator) -> dict:
    """Restore a checkpoint written by ``save_checkpoint``. Never runs code from the file (weights_only):
    a crafted, truncated or foreign file is a RunStateError naming the file and the remedy."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        rng.bit_generator.state = payload["rng"]
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        random.setstate(payload["python_rng"])
        return payload["state"]
    except Exception as err:  # pickle, zip, key and shape errors alike: one line, no code run
        raise RunStateError(f"{path} {_checkpoint_problem(err)}; pass --overwrite to train again") from None


def _checkpoint_problem(err: Exception) -> str:
    """Why torch.load(weights_only=True) refused a checkpoint, in this program's words (torch's own message
    spans lines and suggests loading the file unsafely)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "weights_only" in text:
        named = re.search(r"GLOBAL (\S+)", text)
        asks = f" (it asks for {named.group(1)})" if named else ""
        return (
            f"holds Python objects besides tensors and plain data{asks}: loading them could run arbitrary "
            "code, so it is refused"
        )
    reason = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
    return f"is corrupt or not a checkpoint of this program ({reason})"


def load_best(run_dir: Path, dev: torch.device) -> tuple[BiLSTMClassifier, typing.Any]:
    """The run's best student; a missing or corrupt one is a RunStateError naming it and the remedy."""
    try:
        return load_student(run_dir / "student", device=dev)
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise RunStateError(
            f"{run_dir / 'student'} is unusable ({reason}); pass --overwrite to train again"
        ) from None


def finish_run(
    cfg: RunConfig,
    run_dir: Path,
    splits: dict,
    fit: Fit,
    dev: torch.device,
    writer,
    extra: dict | None = None,
) -> dict:
    """Evaluate the best checkpoint once on test, write metrics.json (with ``extra``, e.g. an ensemble's own
    accuracy) and the TensorBoard HParams entry."""
    state = fit.state
    model, tokenizer = load_best(run_dir, dev)
    test_seqs = encode(tokenizer, splits["test"]["text"].tolist(), cfg.max_length)
    test = evaluate(model, test_seqs, splits["test"]["label"].to_numpy(), dev)
    metrics = {
        "dataset": cfg.data_name(),
        "labels": model.config.label_names(),
        "teacher": cfg.teacher if isinstance(cfg.teacher, str | None) else cfg.teacher_label(),
        "vocab_size": cfg.vocab_size,
        "student_size": cfg.size if cfg.size_label() == cfg.size else "custom",
        "embedding_dim": model.config.embedding_dim,
        "hidden_dim": model.config.hidden_dim,
        "params": count_parameters(model),
        "size_bytes": (run_dir / "student" / "model.safetensors").stat().st_size,
        "alpha": cfg.alpha,
        "temperature": cfg.temperature,
        "kd_loss": cfg.kd_loss,
        "unlabeled": (
            cfg.unlabeled
            if isinstance(cfg.unlabeled, str | None)
            else "+".join(Path(f).name for f in cfg.unlabeled)
        ),
        "seed": cfg.seed,
        "n_train": len(splits["train"]),
        "n_transfer": fit.rows,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "val_accuracy": state["best_accuracy"],
        "val_f1": state["best_f1"],
        "test_accuracy": test["accuracy"],
        "test_f1": test["f1"],
        **{f"test_{k}": test[k] for k in ("confusion_matrix", "f1_per_class", "within_one") if k in test},
        "train_seconds": round(state["train_seconds"], 2),
        "seconds_per_epoch": round(state["train_seconds"] / max(state["epoch"], 1), 2),
        "device": str(dev),
        "device_name": utils.device_name(dev),
        "history": state["history"],
        "run_dir": str(run_dir),
        **({"teachers": list(cfg.teacher)} if isinstance(cfg.teacher, tuple) else {}),
        **({"teacher_weights": list(cfg.teacher_weights)} if cfg.teacher_weights else {}),
        **({"unlabeled_files": list(cfg.unlabeled)} if isinstance(cfg.unlabeled, tuple) else {}),
        **(extra or {}),
    }
    write_hparams(writer, cfg, metrics, fit.global_step())
    utils.atomic_write_json(run_dir / "metrics.json", metrics)
    within = f", within one class {test['within_one']:.4f}" if "within_one" in test else ""
    logger.info(
        f"{run_dir}: test accuracy {test['accuracy']:.4f}, macro F1 {test['f1']:.4f}{within} "
        f"(best epoch {state['best_epoch']})"
    )
    return metrics


# The HParams table's columns, in this order. The dashboard sorts the declared hyperparameters by name and
# ticks the first five, so each name starts with its position ("01 teacher"); the headers show the key.
HPARAM_COLUMNS = {
    "teacher": "the teacher's short name (ens<n>-<hash>: several; none: the no-teacher baseline)",
    "size": "student preset, or e<embedding>h<hidden> for a custom size",
    "vocab_size": "WordPiece vocabulary size",
    "alpha": "weight of the label loss (1: the baseline)",
    "seed": "random seed",
    "temperature": "softmax temperature of the KD loss (-: a baseline)",
    "kd_loss": "kl or mse (-: a baseline)",
    "unlabeled": "extra unlabeled texts labelled by the teacher (none, or as in the run's name)",
    "max_train": "training examples used (all: the whole training split)",
    "params": "the student's parameters",
    "embedding_dim": "embedding size",
    "hidden_dim": "LSTM hidden size per direction",
    "dataset": "dataset",
}
HPARAMS = {
    key: hp.HParam(f"{position:02d} {key}", display_name=key, description=text)
    for position, (key, text) in enumerate(HPARAM_COLUMNS.items(), start=1)
}
# A run's final numbers, logged once as scalars under a group that sorts after train/ and valid/ (the first
# screen shows the learning curves) and declared as the HParams table's metrics.
FINAL_GROUP = "zfinal"
FINAL_METRICS = {
    "val_accuracy": "valid accuracy (best epoch)",
    "test_accuracy": "test accuracy",
    "test_f1": "test macro F1",
}
HPARAMS_CONFIG_SUFFIX = ".hparams-"  # events file of the declaration, at the log root: <suffix><hash8>


def write_hparams_config(log_root: Path) -> None:
    """Declare the HParams table's columns and metrics once per log root (TensorBoard reads the declaration
    from the root's run, "."); one written by another version of this program is replaced."""
    metrics = [hp.Metric(f"{FINAL_GROUP}/{key}", display_name=text) for key, text in FINAL_METRICS.items()]
    config = hp.hparams_config_pb(list(HPARAMS.values()), metrics, time_created_secs=0)
    suffix = HPARAMS_CONFIG_SUFFIX + hashlib.sha256(config.SerializeToString()).hexdigest()[:8]
    if list(log_root.glob(f"events.out.tfevents.*{suffix}")):
        return
    older = list(log_root.glob(f"events.out.tfevents.*{HPARAMS_CONFIG_SUFFIX}*"))
    with SummaryWriter(str(log_root), filename_suffix=suffix) as writer:
        writer.file_writer.add_summary(config)
    for path in older:
        path.unlink(missing_ok=True)


def hparam_values(cfg: RunConfig, metrics: dict) -> dict[str, str]:
    """The run's HParams row, every value a string as in the run's name (TensorBoard prints numbers with five
    significant digits: 3000 as 3000.0, 146430 as 1.4643e+5); a baseline's KD settings are "-"."""
    baseline = cfg.teacher is None
    return {
        "teacher": "none" if baseline else display_name(metrics["teacher"]),  # ens<n>-<hash>
        "size": cfg.size_label(),
        "vocab_size": str(cfg.vocab_size),
        "alpha": f"{cfg.alpha:g}",
        "seed": str(cfg.seed),
        "temperature": "-" if baseline else f"{cfg.temperature:g}",
        "kd_loss": "-" if baseline else cfg.kd_loss,
        "unlabeled": cfg.unlabeled_label() if cfg.unlabeled else "none",
        "max_train": "all" if cfg.max_train is None else str(cfg.max_train),
        "params": str(metrics["params"]),
        "embedding_dim": str(metrics["embedding_dim"]),
        "hidden_dim": str(metrics["hidden_dim"]),
        "dataset": cfg.data_name(),
    }


def write_hparams(writer: SummaryWriter, cfg: RunConfig, metrics: dict, step: int) -> None:
    """The run's final numbers (``zfinal/*`` scalars, the table's metrics) and its HParams row, named by the
    run's folder relative to the log root (as TensorBoard names the run)."""
    for key in FINAL_METRICS:
        writer.add_scalar(f"{FINAL_GROUP}/{key}", metrics[key], step)
    row = {HPARAMS[key]: value for key, value in hparam_values(cfg, metrics).items()}
    writer.file_writer.add_summary(hp.hparams_pb(row, trial_id=f"{cfg.data_name()}/{cfg.run_name()}"))


def finetune(
    cfg: teachers.TeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths | None = None,
    device: str = "auto",
) -> Path:
    """The ``teacher`` stage: ``teacher.finetune_teacher`` under ``paths`` (logs under the runs root)."""
    paths = paths or Paths()
    return teachers.finetune_teacher(cfg, splits, dataset, paths.teacher_root, device, log_root=paths.out)


def cache_all(
    teacher: str | typing.Sequence[str],
    splits: dict[str, pd.DataFrame],
    dataset: str,
    paths: Paths | None = None,
    weights: typing.Sequence[float] | None = None,
    **options,
) -> dict[str, torch.Tensor]:
    """The ``cache`` stage: ``teacher.cache_all`` under ``paths.teacher_root`` (device, batch_size,
    max_length, unlabeled) for one teacher or each member of an ensemble (each with its own cache); returns
    the (weighted) mean logits and prints an ensemble's own accuracy."""
    paths = paths or Paths()
    members = [teacher] if isinstance(teacher, str) else list(teacher)
    caches = [
        teachers.cache_all(m, splits, dataset, teacher_root=paths.teacher_root, **options) for m in members
    ]
    logits = {split: teachers.mean_logits([c[split] for c in caches], weights) for split in caches[0]}
    if len(members) > 1:
        for split, df in splits.items():
            if (score := teachers.accuracy(logits[split], df)) is not None:
                print(f"ensemble teacher ({len(members)} members) {split} accuracy: {score:.4f}")
    return logits


# The metrics.json keys the summary reads: a finished run's file must hold them to be reused.
SUMMARY_COLUMNS = (
    "student_size",
    "vocab_size",
    "teacher",
    "alpha",
    "seed",
    "params",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_f1",
    "train_seconds",
    "run_dir",
)


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
        f"or {', '.join(teachers.SKLEARN_MODELS)}: scikit-learn, fitted on train (--tfidf-*, --lr-*)",
    )
    add_arguments(p, teachers.TeacherConfig, skip=TEACHER_CLI_SKIP, dest_prefix="teacher_")
    add_arguments(p, teachers.SklearnTeacherConfig, dest_prefix="sklearn_")


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
        add_arguments(p, teachers.TeacherConfig, only=["batch_size"], dest_prefix="teacher_")


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
    # Refuse bad settings before any work: the stage's RunConfig options (student grid, --vocab-size, ...).
    if args.stage == "augment" or getattr(args, "augment", False):
        config = augment_config(args)
    if getattr(args, "teacher_batch_size", None) is not None:
        teachers.TeacherConfig(batch_size=args.teacher_batch_size)  # its bounds
    new_teacher = teacher_settings(args)
    model = getattr(args, "model", None)
    members = [*(getattr(args, "teacher", None) or []), *([model] if model else [])]
    if getattr(args, "augment", False) and not members:
        raise ValueError(
            "--augment: the augmented texts are learnt from a teacher; give --teacher or --finetune"
        )
    student_configs(args, members)
    splits, name = load_splits(data, paths), data.data_name()
    for split, df in splits.items():
        print(f"{name} {split}: {len(df):,} examples, {label_shares(df, splits.labels)}")
    if args.stage in ("tokenizer", "run"):
        for vocab_size in args.vocab_size:
            vocab.get_tokenizer(splits["train"], vocab_size, name, paths.tokenizer_root)
    if args.stage == "augment":
        augment.augment_dataset(config, splits, args.augment_out)
        return None
    if getattr(args, "augment", False):
        augmented = augment.augmented_file(config, splits, paths.data_root, name)
        args.unlabeled = [*(args.unlabeled or []), str(augmented)]
    if args.stage in ("download", "tokenizer"):
        return None
    teacher = list(getattr(args, "teacher", None) or [])
    if new_teacher is not None:
        teacher.append(str(make_teacher(new_teacher, splits, name, paths, args.device)))
    if teacher and args.stage in ("teacher", "cache", "run"):
        cache_all(
            teacher,
            splits,
            name,
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
    print(summary_text(results))
    return results


def teacher_settings(
    args: argparse.Namespace,
) -> teachers.TeacherConfig | teachers.SklearnTeacherConfig | None:
    """The checked settings of the ``--model`` teacher (Hugging Face or scikit-learn); None without one."""
    if not getattr(args, "model", None):
        return None
    if args.model not in teachers.SKLEARN_MODELS:
        return teacher_config(args)
    fields = [f.name for f in dataclasses.fields(teachers.SklearnTeacherConfig)]
    return teachers.SklearnTeacherConfig(**{name: getattr(args, "sklearn_" + name) for name in fields})


def make_teacher(
    cfg: teachers.TeacherConfig | teachers.SklearnTeacherConfig,
    splits: dict,
    dataset: str,
    paths: Paths,
    device: str,
) -> Path:
    """The ``--model`` teacher: fine-tuned (Hugging Face) or fitted (scikit-learn), reused by its identity;
    prints its valid/test accuracy."""
    if isinstance(cfg, teachers.TeacherConfig):
        return finetune(cfg, splits, dataset, paths, device)
    out_dir = teachers.fit_sklearn_teacher(cfg, splits, dataset, paths.teacher_root)
    info = json.loads((out_dir / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
    print(f"teacher {out_dir}: valid accuracy {info['val_accuracy']}, test accuracy {info['test_accuracy']}")
    return out_dir


def augment_config(args: argparse.Namespace) -> augment.AugmentConfig:
    """The AugmentConfig the options describe (``run --augment`` keeps the default augmentation seed)."""
    names = [f.name for f in dataclasses.fields(augment.AugmentConfig) if hasattr(args, "augment_" + f.name)]
    return augment.AugmentConfig(**{name: getattr(args, "augment_" + name) for name in names})


def teacher_config(args: argparse.Namespace) -> teachers.TeacherConfig:
    """The TeacherConfig the stage's options describe."""
    fields = {f.name for f in dataclasses.fields(teachers.TeacherConfig)} - set(TEACHER_CLI_SKIP)
    values = {name: getattr(args, "teacher_" + name) for name in fields}
    return teachers.TeacherConfig(
        model=args.model, max_length=args.teacher_max_length, batch_size=args.teacher_batch_size, **values
    )


def student_configs(args: argparse.Namespace, teacher: str | list[str] | None) -> list[RunConfig]:
    """The grid the stage's RunConfig options describe (every combination of the grid fields' values)."""
    fields = [f for f in dataclasses.fields(RunConfig) if hasattr(args, f.name)]
    fixed = {f.name: getattr(args, f.name) for f in fields if not f.metadata["grid"]}
    return grid(
        {**fixed, "teacher": teacher}, **{f.name: getattr(args, f.name) for f in fields if f.metadata["grid"]}
    )


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
    """``classification_metrics`` of a student on the test split of ``data`` (split as for training), printed
    with the F1 of each class and the confusion matrix; a student of other labels is refused."""
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


def label_shares(df: pd.DataFrame, labels: typing.Sequence[str]) -> str:
    """``"49.8% positive"`` for the built-in labels, else each label's share."""
    shares = df["label"].value_counts(normalize=True)
    if tuple(labels) == corpus.BINARY_LABELS:
        return f"{shares.get(1, 0.0):.1%} positive"
    return ", ".join(f"{name} {shares.get(i, 0.0):.1%}" for i, name in enumerate(labels))


if __name__ == "__main__":
    main(sys.argv[1:])
