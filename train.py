"""Training one student: open (or resume, or reuse) its run folder, encode the data, read the teacher's cached
logits, fit epochs on the distillation loss with checkpoints, and finish with test metrics and TensorBoard's
HParams entry.

A run lives in ``<out>/<dataset>/<run name>`` and is reused or resumed only when its settings and the
fingerprints of its data and teacher match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import random
import re
import shutil
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

import corpus
import logits_cache
import teacher as teachers
import utils
import vocab
from card import display_name
from config import DataConfig, Paths, RunConfig
from model import BiLSTMClassifier, encode, load_student, pad_batch, save_student
from utils import count_parameters

logger = utils.logger


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
    """``classification_metrics`` (with the model's label names), the mean CE loss on encoded examples and
    the predicted label ids (``predictions``)."""
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
        "predictions": preds,
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
PREDICTIONS_NPZ = "predictions.npz"  # the best student's valid and test predictions (``write_predictions``)


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
    train = corpus.training_rows(splits, cfg.unlabeled_files())
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
            return finish_run(cfg, run_dir, splits, fit, dev, writer, identity, extra=ensemble)
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


def run_identity(cfg: RunConfig, paths: Paths, splits: dict[str, pd.DataFrame], train: pd.DataFrame) -> dict:
    """Fingerprints of what a run learns from: its examples (ids, texts and labels of every split, the label
    names, and the unlabeled text) and its teacher's files (config and weights; a student teacher's too; None
    without a teacher). A teacher that predicts other labels than the data's is refused here."""
    labels = corpus.label_names(splits)
    resolved = [teachers.resolve_teacher(member, paths.teacher_root) for member in cfg.teacher_members()]
    for member in resolved:
        teachers.check_labels(member, labels)
    prints = [teachers.teacher_fingerprint(member) for member in resolved]
    teacher = None if not prints else prints[0] if len(prints) == 1 else prints  # an ensemble: every member
    return {"data": corpus.splits_fingerprint(splits, train), "teacher": teacher}


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
    # a setting newer than the run's config.json: its default (which keeps the old behaviour)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    changed = sorted(
        k for k in current if k != "fingerprints" and saved.get(k, defaults.get(k)) != current[k]
    )
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
            splits["train"], cfg.vocab_size, cfg.data_name(), paths.tokenizer_root, cfg.tokenizer
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
    and each unlabeled file (``corpus.training_rows`` order) are separate cache splits."""
    n_labelled = int((train["label"] >= 0).sum())
    chunks = [("train", train.iloc[:n_labelled])]
    for path in cfg.unlabeled_files():
        n = len(corpus.read_unlabeled(path))
        start = sum(len(df) for _, df in chunks)
        chunks.append((logits_cache.unlabeled_split(path), train.iloc[start : start + n]))
    return torch.cat([run_teacher_logits(cfg, paths, df, split, device, labels) for split, df in chunks])


def run_teacher_logits(
    cfg: RunConfig, paths: Paths, df: pd.DataFrame, split: str, device: str, labels: typing.Sequence[str]
) -> torch.Tensor:
    """The run's teacher logits of ``df`` from the cache(s): one teacher's, or an ensemble's weighted mean;
    every teacher and cache must predict ``labels``."""
    options = dict(teacher_root=paths.teacher_root, device=device, max_length=cfg.teacher_max_length)
    members, name = cfg.teacher_members(), cfg.data_name()
    return logits_cache.ensemble_logits(
        members, df, name, split, cfg.teacher_weights, labels=labels, **options
    )


def ensemble_accuracy(cfg: RunConfig, paths: Paths, splits: dict, device: str) -> dict:
    """An ensemble's own valid/test accuracy from its members' caches (printed); {} for one teacher."""
    if len(cfg.teacher_members()) < 2:
        return {}
    result = {}
    for split in ("valid", "test"):
        logits = run_teacher_logits(cfg, paths, splits[split], split, device, corpus.label_names(splits))
        result[f"teacher_{'val' if split == 'valid' else split}_accuracy"] = logits_cache.accuracy(
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
    identity: dict,
    extra: dict | None = None,
) -> dict:
    """Evaluate the best checkpoint once on test (and valid: predictions.npz), write metrics.json (with
    ``extra``, e.g. an ensemble's own accuracy) and the TensorBoard HParams entry."""
    state = fit.state
    model, test = evaluate_best(cfg, run_dir, splits, dev, identity["data"])
    metrics = {
        "dataset": cfg.data_name(),
        "labels": model.config.label_names(),
        "teacher": cfg.teacher if isinstance(cfg.teacher, str | None) else cfg.teacher_label(),
        "vocab_size": cfg.vocab_size,
        "tokenizer": cfg.tokenizer,
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
        "predictions": PREDICTIONS_NPZ,
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


def evaluate_best(
    cfg: RunConfig, run_dir: Path, splits: dict[str, pd.DataFrame], dev: torch.device, data: str
) -> tuple[BiLSTMClassifier, dict]:
    """The best checkpoint and its test results; its valid and test predictions go to predictions.npz."""
    model, tokenizer = load_best(run_dir, dev)
    results = {}
    for split in ("valid", "test"):
        sequences = encode(tokenizer, splits[split]["text"].tolist(), cfg.max_length)
        results[split] = evaluate(model, sequences, splits[split]["label"].to_numpy(), dev)
    write_predictions(run_dir, splits, {k: v["predictions"] for k, v in results.items()}, data)
    return model, results["test"]


def write_predictions(
    run_dir: Path, splits: dict[str, pd.DataFrame], predicted: dict[str, np.ndarray], data: str
) -> None:
    """predictions.npz: per split (valid, test) the predicted label ids, the true ones (``<split>_labels``)
    and the fingerprint of its examples (``<split>_fingerprint``, ``corpus.data_fingerprint`` with the label
    names), the label names (``label_names``) and the run's data fingerprint (``data_fingerprint``)."""
    names = corpus.label_names(splits)
    arrays = {"label_names": np.array(names), "data_fingerprint": np.array(data)}
    for split, ids in predicted.items():
        arrays[split] = np.asarray(ids, dtype=np.int64)
        arrays[f"{split}_labels"] = splits[split]["label"].to_numpy(dtype=np.int64)
        arrays[f"{split}_fingerprint"] = np.array(corpus.data_fingerprint(splits[split], names))
    utils.atomic_write_npz(run_dir / PREDICTIONS_NPZ, **arrays)


# The HParams table's columns, in this order. The dashboard sorts the declared hyperparameters by name and
# ticks the first five, so each name starts with its position ("01 teacher"); the headers show the key.
HPARAM_COLUMNS = {
    "teacher": "the teacher's short name (ens<n>-<hash>: several; none: the no-teacher baseline)",
    "size": "student preset, or e<embedding>h<hidden> for a custom size",
    "vocab_size": "the student's vocabulary size",
    "alpha": "weight of the label loss (1: the baseline)",
    "seed": "random seed",
    "tokenizer": "the student's tokenizer kind (wordpiece, sentencepiece-unigram, sentencepiece-bpe, kiwi)",
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
        "tokenizer": cfg.tokenizer,
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
