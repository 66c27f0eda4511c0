"""Every setting in one place: the dataclasses of the student's architecture, the teacher's fine-tuning (a
transformer or the scikit-learn pipeline), the data, a distillation run and the paths, with the names they
choose from. Their fields carry help, choices, allowed range, CLI flag and grid: the command line and the
notebook's parameters are made from / checked against them (``settings``). Imports no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import numbers
import typing
from dataclasses import dataclass
from pathlib import Path

import corpus
import reader
import settings
import utils
import vocab
from card import display_name
from settings import setting, shared_setting, validate_fields

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

# preset name -> (embedding_dim, hidden_dim)
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "tiny": (8, 16),
    "mini": (16, 16),
    "small": (32, 64),
    "base": (64, 128),
    "large": (128, 256),
}
POOLINGS = ("last", "max", "attention")
BACKENDS = ("torch", "onnx", "onnx-int8")  # how a student runs: torch, or ONNX Runtime (float32, int8)
# the ready-to-use students committed with the project, best first by accuracy on the validation reviews none
# of them trained on (results/paired.json); the first is the default of predict and serve.py
BUNDLED_NAMES = ("nsmc-kiwi-kd", "nsmc-base-kd", "nsmc-tiny-kd", "nsmc-base", "nsmc-tiny")
SKLEARN_MODELS = ("tfidf-lr",)  # names `--model` accepts for a scikit-learn teacher


# -----------------------------------------------------------------------------
# The student's architecture
# -----------------------------------------------------------------------------


@dataclass
class StudentConfig:
    """The student's architecture, saved as its folder's config.json (``model.save_student``); the bounds
    keep a config.json from asking for absurd sizes."""

    vocab_size: int = setting(help="embedding rows (the tokenizer's size or more)", bounds="[1, 1000000]")
    embedding_dim: int = setting(64, "embedding size", bounds="[1, 4096]")
    hidden_dim: int = setting(128, "LSTM hidden size per direction", bounds="[1, 4096]")
    num_layers: int = setting(1, "stacked BiLSTM layers", bounds="[1, 16]")
    num_labels: int = setting(2, "classes", bounds="[2, 1000]")
    pooling: str = setting(
        "last", "last (final states of both directions), max or attention", choices=POOLINGS
    )
    fc_dim: int = setting(0, "width of a ReLU layer before the output (0: none)", bounds="[0, 16384]")
    dropout: float = setting(0.2, "dropout", bounds="[0, 1)")
    pad_id: int = setting(0, "padding token id", bounds="[0, inf)")
    max_length: int = setting(128, "tokens kept per text", bounds="[1, inf)")
    size: str | None = setting(None, "preset name if built from one", choices=SIZE_PRESETS)
    id2label: dict[int, str] | None = setting(
        None, "the label names by id (config.json's id2label); None: corpus.default_labels"
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.pad_id >= self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary (size {self.vocab_size})")
        if self.id2label is not None:  # JSON keys are strings
            self.id2label = {int(i): str(name) for i, name in self.id2label.items()}
            if sorted(self.id2label) != list(range(self.num_labels)):
                raise ValueError(f"id2label needs the ids 0..{self.num_labels - 1}, got {self.id2label}")

    def label_names(self) -> list[str]:
        """The class names in id order: id2label's, else ``corpus.default_labels``."""
        if self.id2label is None:
            return list(corpus.default_labels(self.num_labels))
        return [self.id2label[i] for i in range(self.num_labels)]

    @classmethod
    def from_size(cls, size: str, vocab_size: int, **overrides) -> StudentConfig:
        """Config for a named preset; overrides set any field except the two preset dims."""
        if size not in SIZE_PRESETS:
            raise ValueError(f"unknown size {size!r}; presets are: {', '.join(SIZE_PRESETS)}")
        embedding_dim, hidden_dim = SIZE_PRESETS[size]
        return cls(
            vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_dim=hidden_dim, size=size, **overrides
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        """Inverse of to_dict; a "model_type" key is ignored, any other unknown key is an error."""
        d = {k: v for k, v in d.items() if k != "model_type"}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown StudentConfig keys: {sorted(unknown)}")
        return cls(**d)


# -----------------------------------------------------------------------------
# The teacher: fine-tuning a transformer, or the scikit-learn pipeline
# -----------------------------------------------------------------------------


@dataclass
class TeacherConfig:
    """How the teacher is fine-tuned and run: the one source of these settings for CLI, notebook and code."""

    model: str | None = setting(
        None, "pretrained HF model (Hub name or directory) to fine-tune as the teacher", flag="--model"
    )
    epochs: float = setting(3.0, "teacher fine-tuning epochs", bounds="[0, inf)", flag="--teacher-epochs")
    lr: float = setting(5e-5, "teacher learning rate", bounds="(0, 1]", flag="--teacher-lr")
    train_batch_size: int = setting(
        32, "teacher fine-tuning batch size", bounds="[1, inf)", flag="--teacher-train-batch-size"
    )
    max_steps: int = setting(
        -1,
        "stop teacher fine-tuning after this many steps (-1: the epochs decide)",
        bounds="[-1, inf)",
        flag="--teacher-max-steps",
    )
    max_length: int = setting(
        128, "tokens per text the teacher reads", bounds="[2, inf)", flag="--teacher-max-length"
    )
    seed: int = setting(
        42,
        "seed of the teacher's new classification head and data order",
        bounds="[0, 4294967295]",
        flag="--teacher-seed",
    )
    patience: int = setting(
        2,
        "stop teacher fine-tuning after this many epochs without a better validation accuracy",
        bounds="[1, inf)",
        flag="--teacher-patience",
    )
    batch_size: int | None = setting(
        None,
        "teacher inference batch size (default: 256 on GPU, 64 on CPU)",
        bounds="[1, inf)",
        flag="--teacher-batch-size",
    )

    def __post_init__(self) -> None:
        if isinstance(self.model, Path):
            self.model = str(self.model)
        validate_fields(self)
        if self.model is not None and not self.model.strip():
            raise ValueError(f"model (--model) must name a Hub model or a directory, got {self.model!r}")
        if self.max_steps == 0:
            raise ValueError("max_steps (--teacher-max-steps) must be -1 (the epochs decide) or >= 1, got 0")
        if self.epochs == 0 and self.max_steps == -1:
            raise ValueError(
                "epochs (--teacher-epochs) must be > 0 unless --teacher-max-steps is set, got 0.0"
            )


@dataclass
class SklearnTeacherConfig:
    """TF-IDF (character n-grams within words + word n-grams) and logistic regression, fitted on train."""

    char_max_n: int = setting(
        3, "longest character n-gram (char_wb, from 1)", bounds="[1, 10]", flag="--tfidf-char-max-n"
    )
    word_max_n: int = setting(2, "longest word n-gram (from 1)", bounds="[1, 5]", flag="--tfidf-word-max-n")
    min_df: int = setting(
        2, "drop n-grams seen in fewer training texts", bounds="[1, 1000000]", flag="--tfidf-min-df"
    )
    sublinear_tf: bool = setting(True, "1 + log(tf) instead of raw counts", flag="--tfidf-sublinear-tf")
    c: float = setting(
        3.0, "inverse L2 regularisation strength of the logistic regression", bounds="(0, inf)", flag="--lr-c"
    )
    max_iter: int = setting(
        1000, "lbfgs iterations of the logistic regression", bounds="[1, 1000000]", flag="--lr-max-iter"
    )

    def __post_init__(self) -> None:
        validate_fields(self)


# -----------------------------------------------------------------------------
# The data, a distillation run and the paths; grids of runs
# -----------------------------------------------------------------------------


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
        3000, "the student's vocabulary size(s); several run a grid", bounds="[50, inf)", grid=True
    )
    tokenizer: str = setting(
        vocab.DEFAULT_KIND,
        "the student's tokenizer kind(s): WordPiece, SentencePiece (unigram or BPE) or WordPiece over Kiwi "
        "morphemes; several run a grid",
        choices=vocab.TOKENIZER_KINDS,
        grid=True,
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
    teacher_max_length: int = shared_setting(TeacherConfig, "max_length")
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
        return tuple(utils.as_list(self.teacher))

    def unlabeled_files(self) -> tuple[str, ...]:
        """The unlabeled text files (transfer sets)."""
        return tuple(utils.as_list(self.unlabeled))

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
        if self.tokenizer != vocab.DEFAULT_KIND:  # e.g. base-v3000-kiwi-..., base-v3000-sp-unigram-...
            parts.append(self.tokenizer.replace("sentencepiece", "sp"))
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
    "tokenizer",
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
