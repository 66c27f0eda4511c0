"""Making a teacher: fine-tune a Hugging Face model as a classifier (transformers Trainer), or fit the
scikit-learn pipeline (TF-IDF + logistic regression); each is reused by its identity.

A fine-tuned teacher lives in ``<root>/<short-name>-<dataset>-<hash8>``: the hash covers its base model,
every fine-tuning setting (``config.TeacherConfig``) and the data, so other settings never reuse it. An
interrupted fine-tuning resumes from its checkpoints in ``<root>/.<name>.partial/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.integrations import TensorBoardCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

import corpus
import teacher as teachers
import utils
from card import display_name
from config import SKLEARN_MODELS, SklearnTeacherConfig, TeacherConfig
from model import is_student_dir

logger = utils.logger

PARTIAL_INFO = "identity.json"  # in <root>/.<teacher>.partial/: what the checkpoints there belong to


# ---------------------------------------------------------------------------------------------------------
# Identity: what a fine-tuned teacher was made from
# ---------------------------------------------------------------------------------------------------------


# The settings that change the fine-tuned weights (not the inference batch size).
_IDENTITY_SETTINGS = ("epochs", "lr", "train_batch_size", "max_steps", "max_length", "seed", "patience")


def _data_fingerprint(data: dict[str, pd.DataFrame]) -> str:
    """SHA-256 over the ids, texts (``corpus.data_fingerprint``) and labels of the train and valid rows."""
    digest = hashlib.sha256()
    for name in ("train", "valid"):
        digest.update(f"{name}\t{corpus.data_fingerprint(data[name])}\t".encode())
        digest.update(data[name]["label"].to_numpy(dtype="int64").tobytes())
    return digest.hexdigest()


def _identity(
    cfg: TeacherConfig,
    data: dict[str, pd.DataFrame],
    dataset: str,
    root: str | Path,
    labels: Sequence[str] = corpus.BINARY_LABELS,
) -> dict:
    """A fine-tuned teacher's identity: base model (Hub name or local weights' hash), settings, data (ids,
    texts and labels) and label names (recorded when they are not the built-in negative / positive, so that
    the built-in corpora's teachers keep their folders)."""
    if cfg.model is None:
        raise ValueError(
            "no model to fine-tune: set --model (TeacherConfig.model) to a Hub name or a directory"
        )
    local = teachers.local_dir(cfg.model, root)
    base = {"fingerprint": teachers.teacher_fingerprint(local)} if local is not None else {"hub": cfg.model}
    settings = {name: getattr(cfg, name) for name in _IDENTITY_SETTINGS}
    identity = {"base_model": base, "dataset": utils.check_name(dataset, "dataset"), "settings": settings}
    return {**identity, "data": _data_fingerprint(data), **_named_labels(labels)}


def _named_labels(labels: Sequence[str]) -> dict:
    """``{"labels": [...]}`` for an identity, ``{}`` for the built-in negative / positive."""
    return {} if tuple(labels) == corpus.BINARY_LABELS else {"labels": list(labels)}


def _folder(cfg: TeacherConfig, identity: dict, root: str | Path) -> Path:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:8]
    return Path(root) / f"{display_name(cfg.model)}-{identity['dataset']}-{digest}"


def teacher_dir(
    cfg: TeacherConfig, splits: dict[str, pd.DataFrame], dataset: str, root: str | Path = "teacher_model"
) -> Path:
    """Where ``finetune_teacher`` puts this teacher: ``<root>/<short-name>-<dataset>-<hash8>``, the hash over
    the base model, every fine-tuning setting and the train/valid data."""
    data, labels = _labeled_splits(splits)
    return _folder(cfg, _identity(cfg, data, dataset, root, labels), root)


def _changes(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two identities."""
    changes = []
    for key in sorted(recorded.keys() | current.keys()):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {_short(old)} -> {_short(new)}")
    return changes


def _short(value: object) -> str:
    text = repr(value)
    return text[:13] + "…'" if isinstance(value, str) and len(value) > 16 else text


class TeacherMismatch(ValueError):
    """A teacher folder (or its checkpoints) that was fine-tuned with other settings or data."""


def _finished(out_dir: Path, identity: dict) -> bool:
    """True when ``out_dir`` holds this teacher; an error when it holds another or something unfinished."""
    if (out_dir / teachers.TEACHER_INFO).is_file():
        recorded = teachers.read_json(out_dir / teachers.TEACHER_INFO, out_dir).get("identity")
        if recorded != identity:
            changes = "; ".join(_changes(recorded, identity)) if recorded else "it records no identity"
            raise TeacherMismatch(
                f"{out_dir} holds a teacher fine-tuned otherwise ({changes}): delete it to "
                "fine-tune again, or use another --teacher-root"
            )
        teachers.check_weights(out_dir)
        logger.info(f"reusing the fine-tuned teacher in {out_dir} (same base model, settings and data)")
        return True
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} exists but holds no finished teacher ({teachers.TEACHER_INFO}); remove it"
        )
    return False


def _open_partial(partial: Path, identity: dict, args: TrainingArguments) -> str | None:
    """The last checkpoint in ``partial`` to resume from if it is this teacher's; else a fresh folder."""
    with args.main_process_first(local=False, desc="opening the teacher's checkpoint folder"):
        if args.process_index == 0:
            try:
                recorded = json.loads((partial / PARTIAL_INFO).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                recorded = None
            if partial.exists() and recorded != identity:
                logger.warning(f"clearing {partial}: its checkpoints belong to another or an unknown teacher")
                shutil.rmtree(partial)
            if not partial.exists():
                partial.mkdir(parents=True)
                utils.atomic_write_json(partial / PARTIAL_INFO, identity)
            _drop_incomplete_checkpoints(partial)
    checkpoint = get_last_checkpoint(str(partial))
    if checkpoint is not None:
        logger.info(f"resuming teacher fine-tuning from {checkpoint}")
    return checkpoint


def _drop_incomplete_checkpoints(partial: Path) -> None:
    """Remove checkpoints without ``trainer_state.json`` (the Trainer writes it last): killed while saving."""
    for checkpoint in partial.glob("checkpoint-*"):
        if checkpoint.is_dir() and not (checkpoint / TRAINER_STATE_NAME).is_file():
            logger.warning(f"removing {checkpoint}: the run was stopped while saving it")
            shutil.rmtree(checkpoint)


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning: the steps
# ---------------------------------------------------------------------------------------------------------


class _EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, list[int]]], labels: Sequence[int]):
        self.features = features
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int] | int]:
        return {**self.features[index], "labels": self.labels[index]}


def _labeled_splits(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], tuple[str, ...]]:
    """Labeled rows (label >= 0) of train/valid/test and the label names (``corpus.label_names``); clear
    errors for bad data."""
    missing = {"train", "valid"} - set(splits)
    if missing:
        raise ValueError(f"splits needs 'train' and 'valid' DataFrames; missing: {sorted(missing)}")
    labeled = {}
    for name in ("train", "valid", "test"):
        if name not in splits:
            continue
        df = splits[name]
        if not isinstance(df, pd.DataFrame) or not {"id", "text", "label"} <= set(df.columns):
            raise ValueError(f"splits[{name!r}] must be a DataFrame with 'id', 'text' and 'label' columns")
        if not pd.api.types.is_integer_dtype(df["label"]) or (df["label"] < -1).any():
            raise ValueError(
                f"splits[{name!r}]['label'] must hold integer classes (0, 1, ...; -1 for unlabeled)"
            )
        labeled[name] = df[df["label"] >= 0]
    for name in ("train", "valid"):
        if labeled[name].empty:
            raise ValueError(f"splits[{name!r}] has no labeled rows")
    labels = corpus.label_names(splits)
    highest = max(int(df["label"].max()) for df in labeled.values() if not df.empty)
    if highest >= len(labels):
        raise ValueError(f"label id {highest} has no name: the label names are {list(labels)}")
    return labeled, labels


def _argmax(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    # Encoder-decoder outputs carry encoder states after the logits; keep only the predicted classes.
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def _accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions == prediction.label_ids).mean())}


class _ProgressBar(TrainerCallback):
    """One compact bar over the training steps, loss and validation accuracy in its postfix (no printed log
    lines); tqdm's ``disable=None`` hides it in non-interactive output."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc="fine-tuning the teacher", unit="step", disable=None)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        shown = {
            key: f"{value:.4g}" for key, value in (logs or {}).items() if key in ("loss", "eval_accuracy")
        }
        if self.bar is not None and shown:
            self.bar.set_postfix(shown)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _prepare(
    cfg: TeacherConfig, base_dir: Path, data: dict[str, pd.DataFrame], labels: Sequence[str]
) -> tuple[PreTrainedModel, teachers.TextEncoder, dict[str, _EncodedDataset]]:
    """The base model with a new classification head (seeded), its encoder and the encoded splits."""
    set_seed(cfg.seed)  # the new classification head is initialised here
    model, encoder = teachers.load_classifier(base_dir, cfg.max_length, num_labels=len(labels), labels=labels)
    datasets = {
        name: _EncodedDataset(encoder.encode(df["text"]), df["label"])
        for name, df in data.items()
        if not df.empty
    }
    return model, encoder, datasets


def _training_args(cfg: TeacherConfig, partial: Path, device: torch.device, precision: torch.dtype | None):
    """Evaluate, checkpoint (with optimizer state, to resume) and keep the best model once per epoch."""
    return TrainingArguments(
        output_dir=str(partial),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.train_batch_size,
        per_device_eval_batch_size=2 * cfg.train_batch_size,
        learning_rate=cfg.lr,
        warmup_steps=0.1,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,  # the best and the latest checkpoint are kept
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        logging_steps=50,
        report_to="none",  # TensorBoard is added with its own log folder (_build_trainer)
        disable_tqdm=True,  # replaced by _ProgressBar
        train_sampling_strategy="group_by_length",
        seed=cfg.seed,
        bf16=precision == torch.bfloat16,
        fp16=precision == torch.float16,
        use_cpu=device.type == "cpu",
    )


def _build_trainer(
    cfg: TeacherConfig,
    model: PreTrainedModel,
    encoder: teachers.TextEncoder,
    datasets: dict[str, _EncodedDataset],
    args: TrainingArguments,
    log_dir: Path,
) -> Trainer:
    """The Trainer: early stopping, one progress bar, TensorBoard in ``log_dir`` (x axis: global step)."""
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(log_dir)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["valid"],
        data_collator=DataCollatorWithPadding(encoder.tokenizer),
        processing_class=encoder.tokenizer,
        compute_metrics=_accuracy,
        preprocess_logits_for_metrics=_argmax,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience), tensorboard, _ProgressBar()],
    )
    trainer.remove_callback(PrinterCallback)  # log lines go to TensorBoard and the bar, not the output
    return trainer


def _train(trainer: Trainer, checkpoint: str | None, datasets: dict[str, _EncodedDataset]) -> dict:
    """Train (resuming from ``checkpoint``), then score the best model on valid and test."""
    start = time.perf_counter()
    with teachers.quiet_transformers():
        trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - start
    trainer.remove_callback(EarlyStoppingCallback)  # it only follows the per-epoch validation
    accuracy = {
        name: trainer.evaluate(datasets[name], metric_key_prefix=name)[f"{name}_accuracy"]
        if name in datasets
        else None
        for name in ("valid", "test")
    }
    return {
        "epochs_trained": trainer.state.epoch,
        "global_step": trainer.state.global_step,
        "resumed_from_step": int(Path(checkpoint).name.split("-")[-1]) if checkpoint else None,
        "val_accuracy": accuracy["valid"],
        "test_accuracy": accuracy["test"],
        "train_seconds": round(train_seconds, 1),
    }


def _save(trainer: Trainer, partial: Path, out_dir: Path, info: dict) -> None:
    """Model, tokenizer and ``teacher.json`` into ``partial/final``, moved to ``out_dir`` when complete
    (by ``utils.atomic_dir``, which gives the files the umask's modes: the Trainer writes its weights 0600).
    """
    final = partial / "final"
    if trainer.is_world_process_zero() and final.exists():
        shutil.rmtree(final)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    with teachers.quiet_transformers():
        trainer.save_model(
            str(final)
        )  # called on every rank (sharded set-ups need them all); the main one writes
    if trainer.is_world_process_zero():
        utils.atomic_write_json(final / teachers.TEACHER_INFO, info)
        utils.atomic_dir(out_dir, lambda tmp: _move_contents(final, tmp))  # an existing out_dir is empty
        shutil.rmtree(partial)
        logger.info(
            f"teacher saved to {out_dir}: val accuracy {info['val_accuracy']:.4f}, "
            f"test accuracy {info['test_accuracy']}"
        )
    trainer.accelerator.wait_for_everyone()


def _move_contents(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into the existing folder ``target`` (renames, on one file system)."""
    for entry in source.iterdir():
        os.replace(entry, target / entry.name)


def finetune_teacher(
    cfg: TeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    root: str | Path = "teacher_model",
    device: str = "auto",
    *,
    log_root: str | Path = "runs",
) -> Path:
    """Fine-tune ``cfg.model`` (Hub name or directory) as a classifier with the transformers Trainer.

    The teacher goes to ``teacher_dir(cfg, splits, dataset, root)``; a finished one there is reused (its
    recorded identity is checked). Evaluates on ``splits["valid"]`` and checkpoints every epoch into
    ``<root>/.<name>.partial/``, from where an interrupted run resumes; keeps the best validation accuracy,
    stops early after ``cfg.patience`` epochs without improvement and scores the best model on
    ``splits["test"]``. TensorBoard logs go to ``<log_root>/<dataset>/teachers/<name>`` beside the students'.
    Works under ``torchrun`` (the Trainer runs data-parallel; rank 0 writes).
    """
    data, labels = _labeled_splits(splits)
    identity = _identity(cfg, data, dataset, root, labels)
    out_dir = _folder(cfg, identity, root)
    if _finished(out_dir, identity):
        return out_dir
    base_dir = teachers.resolve_teacher(cfg.model, root)
    if is_student_dir(base_dir):
        raise ValueError(f"{cfg.model} is a BiLSTM student; fine-tune a transformers model instead")
    resolved = teachers.resolve_device(device)
    model, encoder, datasets = _prepare(cfg, base_dir, data, labels)
    precision = teachers.mixed_precision(resolved, model.config)
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    args = _training_args(cfg, partial, resolved, precision)
    checkpoint = _open_partial(partial, identity, args)
    log_dir = Path(log_root) / dataset / "teachers" / out_dir.name
    trainer = _build_trainer(cfg, model, encoder, datasets, args, log_dir)
    logger.info(
        f"fine-tuning {cfg.model} on {len(datasets['train']):,} texts ({len(labels)} classes) into {out_dir}"
    )
    results = _train(trainer, checkpoint, datasets)
    info = {
        "base_model": cfg.model,
        "dataset": dataset,
        "identity": identity,
        "num_labels": len(labels),
        "id2label": model.config.id2label,
        "num_examples": {name: len(part) for name, part in datasets.items()},
        "hyperparameters": {
            **asdict(cfg),
            "max_length": encoder.max_length,  # capped by the model's positions
            "precision": str(precision).removeprefix("torch.") if precision else "float32",
            "world_size": args.world_size,
        },
        **results,
    }
    _save(trainer, partial, out_dir, info)
    return out_dir


# ---------------------------------------------------------------------------------------------------------
# A scikit-learn teacher: TF-IDF n-grams + logistic regression, fitted on train
# ---------------------------------------------------------------------------------------------------------


def _sklearn_identity(cfg: SklearnTeacherConfig, train: pd.DataFrame, labels: Sequence[str]) -> dict:
    """Settings, the training texts and labels, and the label names (when not negative / positive)."""
    label_ids = hashlib.sha256(train["label"].to_numpy(dtype=np.int64).tobytes()).hexdigest()
    return {
        "model": SKLEARN_MODELS[0],
        "settings": asdict(cfg),
        "data_fingerprint": {"train": corpus.data_fingerprint(train), "train_labels": label_ids},
        **_named_labels(labels),
    }


def fit_sklearn_teacher(
    cfg: SklearnTeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    root: str | Path = "teacher_model",
) -> Path:
    """Fit the TF-IDF + LR pipeline on ``splits["train"]`` into ``<root>/tfidf-lr-<dataset>-<identity hash>``.

    teacher.json records the settings, the training data's fingerprint and the valid/test accuracy; a folder
    with the same identity is reused without fitting.
    """
    data, labels = _labeled_splits(splits)
    identity = _sklearn_identity(cfg, data["train"], labels)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:10]
    out_dir = Path(root) / f"{SKLEARN_MODELS[0]}-{dataset}-{key}"
    if teachers.is_sklearn_dir(out_dir):
        logger.info(f"reusing the scikit-learn teacher in {out_dir} (same settings and training data)")
        return out_dir
    pipeline = teachers.build_sklearn_pipeline(cfg)
    logger.info(f"fitting {SKLEARN_MODELS[0]} on {len(data['train']):,} {dataset} texts into {out_dir}")
    start = time.perf_counter()
    pipeline.fit(data["train"]["text"].tolist(), data["train"]["label"].to_numpy())
    train_seconds = time.perf_counter() - start
    classes = pipeline.classes_.tolist()
    if classes != list(range(len(labels))):
        missing = [name for i, name in enumerate(labels) if i not in classes]
        raise ValueError(f"the training split has no example of {', '.join(missing)}: the teacher needs each")
    accuracy = {
        name: float(pipeline.score(df["text"].tolist(), df["label"].to_numpy()))
        for name, df in data.items()
        if name != "train" and not df.empty
    }
    info = {
        "format": teachers.SKLEARN_FORMAT,
        **identity,
        "dataset": dataset,
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "num_examples": {name: len(df) for name, df in data.items()},
        "num_features": int(pipeline.named_steps["classifier"].coef_.shape[1]),
        "val_accuracy": accuracy.get("valid"),
        "test_accuracy": accuracy.get("test"),
        "train_seconds": round(train_seconds, 1),
    }

    def write(directory: Path) -> None:
        teachers.save_sklearn_pipeline(pipeline, directory)
        utils.atomic_write_json(directory / teachers.TEACHER_INFO, info)

    utils.atomic_dir(out_dir, write)
    logger.info(
        f"scikit-learn teacher saved to {out_dir}: val accuracy {info['val_accuracy']:.4f}, "
        f"test accuracy {info['test_accuracy']}"
    )
    return out_dir
