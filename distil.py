"""Distil a fine-tuned Korean transformer into a tiny BiLSTM: the trainer and the command line.

    python distil.py download  --dataset nsmc [--data-dir DIR]
    python distil.py tokenizer --dataset nsmc --vocab-size 3000
    python distil.py teacher   --dataset nsmc --model NAME_OR_DIR
    python distil.py cache     --dataset nsmc --teacher DIR_OR_NAME
    python distil.py student   --dataset nsmc --teacher DIR_OR_NAME --vocab-size 3000 --size base --alpha 0.1
    python distil.py run       ... (all stages)
    python distil.py predict   --student runs/nsmc/<run>/student "재밌어요"

Every stage is idempotent: what is already done and valid is reused.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm.auto import tqdm
from transformers import get_scheduler

import utils
from model import BACKENDS, SIZE_PRESETS, BiLSTMClassifier, Student, StudentConfig, count_parameters, encode, load_student, pad_batch, save_student

logger = utils.logger


DEFAULT_ALPHA = 0.1  # Tang et al. weigh the label loss lightly


@dataclass
class RunConfig:
    """Everything that defines one distillation run (saved as the run's config.json)."""

    dataset: str = "nsmc"
    teacher: str | None = None  # fine-tuned HF classifier (dir or hub name) or a student dir; None = baseline
    vocab_size: int = 3000
    size: str = "base"  # preset; embedding_dim / hidden_dim override it
    embedding_dim: int | None = None
    hidden_dim: int | None = None
    pooling: str = "last"
    fc_dim: int = 0
    dropout: float = 0.2
    alpha: float | None = None  # weight of the label loss (1 - alpha weighs KD); default 0.1 with a teacher, 1 without
    temperature: float = 2.0
    kd_loss: str = "kl"  # "kl" (Hinton, scaled by T^2) or "mse" (Tang et al., on logits)
    teacher_max_length: int = 128  # tokens per text the teacher saw when its logits were cached
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"  # "adamw" or "adam"
    scheduler: str = "linear"  # transformers.get_scheduler name: linear, cosine, constant_with_warmup, ...
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    patience: int = 3  # epochs without a better validation accuracy before stopping
    max_length: int = 128
    max_train: int | None = None
    unlabeled: str | None = None  # extra text the teacher labels (one review per line)
    seed: int = 42
    valid_fraction: float = 0.05
    test_fraction: float = 0.2
    skip_bad_rows: bool = False

    def __post_init__(self) -> None:
        if self.alpha is None:
            self.alpha = DEFAULT_ALPHA if self.teacher else 1.0
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.alpha == 1.0 and self.unlabeled:
            raise ValueError("--unlabeled text is learnt from the teacher's logits only: it needs alpha < 1")
        if self.alpha == 1.0:
            # The baseline is one run whatever the teacher and distillation settings.
            self.teacher, self.temperature, self.kd_loss = None, RunConfig.temperature, RunConfig.kd_loss
        if self.teacher is None and self.alpha != 1.0:
            raise ValueError("without a teacher only the baseline can be trained: pass --alpha 1 or --teacher")
        if self.kd_loss not in ("kl", "mse"):
            raise ValueError(f"kd_loss must be 'kl' or 'mse', got {self.kd_loss!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")

    def student_config(self) -> StudentConfig:
        dims = {k: v for k, v in (("embedding_dim", self.embedding_dim), ("hidden_dim", self.hidden_dim)) if v is not None}
        options = dict(pooling=self.pooling, fc_dim=self.fc_dim, dropout=self.dropout, max_length=self.max_length)
        preset = StudentConfig.from_size(self.size, self.vocab_size, **options)
        return dataclasses.replace(preset, size=None, **dims) if dims else preset

    def run_name(self) -> str:
        """Readable directory name, e.g. ``base-v3000-koelectra-nsmc-a0.1-T2``."""
        cfg = self.student_config()
        size = self.size if (cfg.embedding_dim, cfg.hidden_dim) == SIZE_PRESETS[self.size] else f"e{cfg.embedding_dim}h{cfg.hidden_dim}"
        parts = [size, f"v{self.vocab_size}"]
        if self.teacher is None:
            parts += ["none", "a1"]
        else:
            parts += [teacher_label(self.teacher), f"a{self.alpha:g}", f"T{self.temperature:g}"]
            parts += ["mse"] if self.kd_loss == "mse" else []
            parts += [f"u-{Path(self.unlabeled).stem}"] if self.unlabeled else []
        parts += [f"n{self.max_train}"] if self.max_train else []
        parts += [f"s{self.seed}"] if self.seed != 42 else []
        return "-".join(parts)


def teacher_label(teacher: str) -> str:
    """Short name of a teacher for run names: the model's folder or hub name, or the run of a student teacher."""
    path = Path(teacher.rstrip("/"))
    return path.parent.name if path.name == "student" and path.parent.name else path.name


@dataclass
class Paths:
    """Where data, tokenizers, teachers and runs live (one working directory, e.g. on Google Drive)."""

    data_dir: str | None = None  # local copies of the dataset files; None = download into data_root
    data_root: str = "data"
    tokenizer_root: str = "tokenizer"
    teacher_root: str = "teacher_model"
    out: str = "runs"


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


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within chunks of ``bucket`` batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.inference_mode()
def evaluate(model: BiLSTMClassifier, sequences: list[list[int]], labels: np.ndarray, device: torch.device, batch_size: int = 512) -> dict:
    """Accuracy, macro F1, mean CE loss and confusion matrix on encoded examples."""
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
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average="macro")),
        "loss": loss / len(sequences),
        "confusion_matrix": confusion_matrix(labels, preds, labels=list(range(model.config.num_labels))).tolist(),
    }


# -------------------------------------------------------------------------------------------------------
# Training one student
# -------------------------------------------------------------------------------------------------------


def train_student(cfg: RunConfig, paths: Paths = Paths(), device: str = "auto", overwrite: bool = False, log_every: int = 50) -> dict:
    """Train (or resume, or reuse) one student and return its metrics (also saved as metrics.json).

    The run directory holds config.json, checkpoint.pt (for resuming), student/ (best checkpoint by
    validation accuracy), the TensorBoard events and, once finished, metrics.json.
    """
    run_dir = Path(paths.out) / cfg.dataset / cfg.run_name()
    config = dataclasses.asdict(cfg)
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / "config.json").is_file():
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        if saved != config:
            changed = sorted(k for k in config if saved.get(k) != config[k])
            raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(changed)}); pass --overwrite or --out")
        if (run_dir / "metrics.json").is_file():
            logger.info(f"{run_dir} is finished: reusing its metrics (pass --overwrite to train again)")
            return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    utils.atomic_write_json(run_dir / "config.json", config)

    dev = utils.get_device(device)
    utils.set_seed(cfg.seed)
    splits = load_splits(cfg, paths)
    train = splits["train"]
    if cfg.unlabeled:
        train = pd.concat([train, utils.read_unlabeled(cfg.unlabeled)], ignore_index=True)

    # The run keeps its own copy of the tokenizer so that resuming never meets a retrained vocabulary.
    if (run_dir / "tokenizer" / "tokenizer.json").is_file():
        tokenizer = utils.load_tokenizer(run_dir / "tokenizer")
    else:
        tokenizer = utils.get_tokenizer(splits["train"], cfg.vocab_size, cfg.dataset, paths.tokenizer_root)
        tokenizer.save_pretrained(str(run_dir / "tokenizer"))

    teacher_train = None
    if cfg.teacher is not None and cfg.alpha < 1.0:
        teacher_train = teacher_logits_for(cfg, paths, train, device).to(dev)

    student_cfg = cfg.student_config()
    model = BiLSTMClassifier(student_cfg).to(dev)
    logger.info(f"student {cfg.run_name()}: {count_parameters(model):,} parameters on {dev}")
    train_seqs = encode(tokenizer, train["text"].tolist(), cfg.max_length)
    valid_seqs = encode(tokenizer, splits["valid"]["text"].tolist(), cfg.max_length)
    lengths = np.array([len(s) for s in train_seqs])
    train_labels = torch.tensor(train["label"].to_numpy(), device=dev)

    steps_per_epoch = -(-len(train_seqs) // cfg.batch_size)
    optimizer = make_optimizer(cfg, model)
    total = steps_per_epoch * cfg.epochs
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total), num_training_steps=total)
    rng = np.random.default_rng(cfg.seed)
    state = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0, "train_seconds": 0.0, "history": []}

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, rng)
        logger.info(f"resuming {run_dir} after epoch {state['epoch']}")

    writer = SummaryWriter(str(run_dir), purge_step=state["epoch"] * steps_per_epoch if state["epoch"] else None)
    try:
        while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
            epoch = state["epoch"] + 1
            start = time.perf_counter()
            model.train()
            sums = torch.zeros(3, device=dev)  # loss, ce, kd summed on the device: no sync per step
            batches = bucket_batches(lengths, cfg.batch_size, rng)
            for step, idx in enumerate(tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False), start=1):
                ids, lens = pad_batch([train_seqs[i] for i in idx], student_cfg.pad_id)
                index = torch.as_tensor(idx, device=dev)
                logits = model(ids.to(dev), lens)
                target = teacher_train[index] if teacher_train is not None else None
                loss, ce, kd = distillation_loss(logits, train_labels[index], target, cfg.alpha, cfg.temperature, cfg.kd_loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                sums += torch.stack([loss.detach(), ce.detach(), kd.detach()])
                if step % log_every == 0 or step == len(batches):
                    global_step = (epoch - 1) * steps_per_epoch + step
                    n = log_every if step % log_every == 0 else step % log_every
                    for name, value in zip(("loss", "ce", "kd"), (sums / n).tolist()):
                        writer.add_scalar(f"train/{name}", value, global_step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], global_step)
                    sums.zero_()
            state["train_seconds"] += time.perf_counter() - start
            val = evaluate(model, valid_seqs, splits["valid"]["label"].to_numpy(), dev)
            for name in ("accuracy", "f1", "loss"):
                writer.add_scalar(f"valid/{name}", val[name], epoch)
            writer.flush()
            state["epoch"] = epoch
            state["history"].append({"epoch": epoch, "val_accuracy": val["accuracy"], "val_f1": val["f1"], "seconds": time.perf_counter() - start})
            if val["accuracy"] > state["best_accuracy"]:
                state.update(best_accuracy=val["accuracy"], best_f1=val["f1"], best_epoch=epoch, bad_epochs=0)
                save_student(model, tokenizer, run_dir / "student", extra={"run": cfg.run_name(), "epoch": epoch, "val_accuracy": val["accuracy"]})
            else:
                state["bad_epochs"] += 1
            save_checkpoint(checkpoint, model, optimizer, scheduler, rng, state)
            logger.info(f"epoch {epoch}: val accuracy {val['accuracy']:.4f}, f1 {val['f1']:.4f} ({state['history'][-1]['seconds']:.1f}s)")

        metrics = finish_run(cfg, run_dir, splits, state, dev, writer)
    finally:
        writer.close()
    return metrics


def load_splits(cfg: RunConfig, paths: Paths = Paths()) -> dict[str, pd.DataFrame]:
    """The train/valid/test splits a run uses."""
    return utils.load_dataset(cfg.dataset, paths.data_dir, paths.data_root, cfg.valid_fraction, cfg.test_fraction, cfg.skip_bad_rows, cfg.max_train)


def teacher_logits_for(cfg: RunConfig, paths: Paths, train: pd.DataFrame, device: str) -> torch.Tensor:
    """Cached teacher logits aligned with the training rows (labelled rows and unlabeled text cached apart)."""
    import teacher as teachers

    labelled = train["label"] >= 0
    options = dict(teacher_root=paths.teacher_root, device=device, max_length=cfg.teacher_max_length)
    parts = [teachers.teacher_logits(cfg.teacher, train[labelled], cfg.dataset, "train", **options)]
    if not labelled.all():
        parts.append(teachers.teacher_logits(cfg.teacher, train[~labelled], cfg.dataset, f"unlabeled-{Path(cfg.unlabeled).stem}", **options))
    return torch.cat(parts)


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'adam', got {cfg.optimizer!r}")


def save_checkpoint(path: Path, model, optimizer, scheduler, rng: np.random.Generator, state: dict) -> None:
    """Everything needed to resume after the last finished epoch, written atomically."""
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
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    rng.bit_generator.state = payload["rng"]
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    random.setstate(payload["python_rng"])
    return payload["state"]


def finish_run(cfg: RunConfig, run_dir: Path, splits: dict, state: dict, dev: torch.device, writer) -> dict:
    """Evaluate the best checkpoint once on test, write metrics.json and the TensorBoard HParams entry."""
    model, tokenizer = load_student(run_dir / "student", device=dev)
    test = evaluate(model, encode(tokenizer, splits["test"]["text"].tolist(), cfg.max_length), splits["test"]["label"].to_numpy(), dev)
    student_cfg = model.config
    metrics = {
        "dataset": cfg.dataset,
        "teacher": cfg.teacher,
        "vocab_size": cfg.vocab_size,
        "student_size": cfg.size if cfg.embedding_dim is None and cfg.hidden_dim is None else "custom",
        "embedding_dim": student_cfg.embedding_dim,
        "hidden_dim": student_cfg.hidden_dim,
        "params": count_parameters(model),
        "size_bytes": (run_dir / "student" / "model.safetensors").stat().st_size,
        "alpha": cfg.alpha,
        "temperature": cfg.temperature,
        "kd_loss": cfg.kd_loss,
        "unlabeled": cfg.unlabeled,
        "seed": cfg.seed,
        "n_train": len(splits["train"]),
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "val_accuracy": state["best_accuracy"],
        "val_f1": state["best_f1"],
        "test_accuracy": test["accuracy"],
        "test_f1": test["f1"],
        "test_confusion_matrix": test["confusion_matrix"],
        "train_seconds": round(state["train_seconds"], 2),
        "seconds_per_epoch": round(state["train_seconds"] / max(state["epoch"], 1), 2),
        "device": str(dev),
        "history": state["history"],
        "run_dir": str(run_dir),
    }
    hparam_dict = {
        k: (v if v is not None else "none")
        for k, v in dataclasses.asdict(cfg).items()
        if k in ("dataset", "teacher", "vocab_size", "size", "embedding_dim", "hidden_dim", "alpha", "temperature", "kd_loss", "seed", "max_train")
    }
    hparam_dict["params"] = metrics["params"]
    metric_dict = {f"hparam/{k}": metrics[k] for k in ("val_accuracy", "test_accuracy", "test_f1")}
    for summary in hparams(hparam_dict, metric_dict):
        writer.file_writer.add_summary(summary)
    for key, value in metric_dict.items():
        writer.add_scalar(key, value, state["epoch"])
    writer.add_scalar("test/accuracy", test["accuracy"], state["epoch"])
    writer.add_scalar("test/f1", test["f1"], state["epoch"])
    utils.atomic_write_json(run_dir / "metrics.json", metrics)
    logger.info(f"{run_dir}: test accuracy {test['accuracy']:.4f}, macro F1 {test['f1']:.4f} (best epoch {state['best_epoch']})")
    return metrics


def grid(base: RunConfig, **lists) -> list[RunConfig]:
    """Every combination of the listed values (e.g. vocab_size=[2000, 3000], alpha=[0.1, 1.0])."""
    keys = list(lists)
    configs = []
    for values in itertools.product(*(lists[k] for k in keys)):
        configs.append(dataclasses.replace(base, **dict(zip(keys, values))))
    unique = {json.dumps(dataclasses.asdict(c), sort_keys=True): c for c in configs}
    return list(unique.values())


# -------------------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------------------

GRID_FIELDS = ("vocab_size", "size", "alpha", "temperature", "kd_loss", "seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    d = RunConfig()

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default=d.dataset, choices=utils.DATASET_NAMES, help="dataset (default: %(default)s)")
        p.add_argument("--data-dir", help="folder with local copies of the dataset files instead of downloading them")
        p.add_argument("--data-root", default="data", help="where downloads go (default: %(default)s)")
        p.add_argument("--tokenizer-root", default="tokenizer", help="where vocabularies go (default: %(default)s)")
        p.add_argument("--teacher-root", default="teacher_model", help="where teachers and their logits caches go (default: %(default)s)")
        p.add_argument("--out", default="runs", help="where student runs go (default: %(default)s)")
        p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps")
        p.add_argument("--max-train", type=int, help="train on a random subset of this many training examples")
        p.add_argument("--skip-bad-rows", action="store_true", help="skip (and count) malformed rows instead of stopping")
        p.add_argument("--valid-fraction", type=float, default=d.valid_fraction, help="share of train held out for validation")
        p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="share held out for test (datasets without a test file)")
        p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")

    def teacher_arg(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--teacher", required=required, help="fine-tuned HF sequence-classification model (directory or hub name) or a student directory")
        p.add_argument("--teacher-max-length", type=int, default=128, help="tokens per text for the teacher (default: %(default)s)")
        p.add_argument("--teacher-batch-size", type=int, help="teacher inference batch size (default: 256 on GPU, 64 on CPU)")
        p.add_argument("--unlabeled", help="extra text, one review per line, that the teacher labels for the student")

    def finetune_args(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--model" if required else "--finetune", dest="model", required=required,
                       help="pretrained HF model to fine-tune as the teacher, e.g. monologg/koelectra-small-v3-discriminator")
        p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs (default: %(default)s)")
        p.add_argument("--teacher-lr", type=float, default=5e-5, help="teacher learning rate (default: %(default)s)")
        p.add_argument("--teacher-train-batch-size", type=int, default=32, help="teacher fine-tuning batch size (default: %(default)s)")
        p.add_argument("--teacher-max-steps", type=int, default=-1, help="stop teacher fine-tuning after this many steps")

    def student_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--vocab-size", type=int, nargs="+", default=[d.vocab_size], help="WordPiece vocab size(s); several run a grid")
        p.add_argument("--size", nargs="+", default=[d.size], choices=["tiny", "mini", "small", "base", "large"], help="student preset(s)")
        p.add_argument("--embedding-dim", type=int, help="custom embedding size (overrides the preset)")
        p.add_argument("--hidden-dim", type=int, help="custom LSTM hidden size per direction (overrides the preset)")
        p.add_argument("--pooling", default=d.pooling, choices=["last", "max", "attention"])
        p.add_argument("--fc-dim", type=int, default=d.fc_dim, help="width of an extra ReLU layer (0: none)")
        p.add_argument("--dropout", type=float, default=d.dropout)
        p.add_argument("--alpha", type=float, nargs="+", default=None,
                       help="weight of the label loss; 1 trains the no-teacher baseline (default: 0.1 with a teacher, else 1)")
        p.add_argument("--temperature", type=float, nargs="+", default=[d.temperature], help="softmax temperature of the KL loss")
        p.add_argument("--kd-loss", nargs="+", default=[d.kd_loss], choices=["kl", "mse"], help="kl (Hinton, x T^2) or mse on logits (Tang et al.)")
        p.add_argument("--epochs", type=int, default=d.epochs)
        p.add_argument("--batch-size", type=int, default=d.batch_size)
        p.add_argument("--lr", type=float, default=d.lr)
        p.add_argument("--weight-decay", type=float, default=d.weight_decay)
        p.add_argument("--optimizer", default=d.optimizer, choices=["adamw", "adam"])
        p.add_argument("--scheduler", default=d.scheduler, help="linear, cosine, constant, constant_with_warmup, ...")
        p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
        p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
        p.add_argument("--patience", type=int, default=d.patience, help="early stopping patience in epochs")
        p.add_argument("--max-length", type=int, default=d.max_length, help="tokens kept per text")
        p.add_argument("--seed", type=int, nargs="+", default=[d.seed])
        p.add_argument("--overwrite", action="store_true", help="train again even if the run directory is finished")

    p = sub.add_parser("download", help="download (or read) and parse the dataset, print its splits")
    common(p)
    p = sub.add_parser("tokenizer", help="train WordPiece tokenizers on the training split")
    common(p)
    p.add_argument("--vocab-size", type=int, nargs="+", default=[d.vocab_size])
    p = sub.add_parser("teacher", help="fine-tune a pretrained HF model as the teacher, then cache its logits")
    common(p)
    finetune_args(p, required=True)
    p.add_argument("--teacher-max-length", type=int, default=128)
    p.add_argument("--teacher-batch-size", type=int)
    p.add_argument("--unlabeled", help="extra text, one review per line, to cache teacher logits for")
    p = sub.add_parser("cache", help="compute the teacher's logits once for train/valid/test (and --unlabeled)")
    common(p)
    teacher_arg(p, required=True)
    p = sub.add_parser("student", help="distil students from the cached logits (a grid for list values)")
    common(p)
    teacher_arg(p, required=False)
    student_args(p)
    p = sub.add_parser("run", help="all stages: download, tokenizer, [teacher], cache, student")
    common(p)
    teacher_arg(p, required=False)
    finetune_args(p, required=False)
    student_args(p)
    p = sub.add_parser("predict", help="classify sentences with a trained student")
    p.add_argument("--student", required=True, help="student directory (runs/<dataset>/<run>/student)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="torch, onnx or onnx-int8 (ONNX Runtime, CPU; fastest)")
    p.add_argument("texts", nargs="+", help="sentences to classify")
    return parser


def main(argv: list[str] | None = None) -> list[dict] | None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO, format="%(message)s")
    if args.stage == "predict":
        student = Student.from_pretrained(args.student, device=args.device, backend=args.backend)
        for text, proba in zip(args.texts, student.predict_proba(args.texts)):
            label = int(proba.argmax())
            print(f"{student.labels[label]}\t{proba[label]:.3f}\t{text}")
        return None

    paths = Paths(args.data_dir, args.data_root, args.tokenizer_root, args.teacher_root, args.out)
    data_options = dict(valid_fraction=args.valid_fraction, test_fraction=args.test_fraction, skip_bad_rows=args.skip_bad_rows)
    splits = utils.load_dataset(args.dataset, paths.data_dir, paths.data_root, max_train=args.max_train, **data_options)
    for name, df in splits.items():
        print(f"{args.dataset} {name}: {len(df):,} examples, {df['label'].mean():.1%} positive")
    if args.stage == "download":
        return None
    if args.stage in ("tokenizer", "run"):
        for vocab_size in args.vocab_size:
            utils.get_tokenizer(splits["train"], vocab_size, args.dataset, paths.tokenizer_root)
        if args.stage == "tokenizer":
            return None
    teacher = getattr(args, "teacher", None)
    if getattr(args, "model", None):
        teacher = str(finetune(
            args.model, splits, args.dataset, paths, epochs=args.teacher_epochs, train_batch_size=args.teacher_train_batch_size,
            lr=args.teacher_lr, max_length=args.teacher_max_length, max_steps=args.teacher_max_steps, device=args.device,
        ))
    if teacher is not None and args.stage in ("teacher", "cache", "run"):
        cache_all(teacher, splits, args.dataset, paths, device=args.device, batch_size=args.teacher_batch_size,
                  max_length=args.teacher_max_length, unlabeled=args.unlabeled)
    if args.stage in ("teacher", "cache"):
        return None

    base = RunConfig(
        dataset=args.dataset, teacher=teacher, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
        pooling=args.pooling, fc_dim=args.fc_dim, dropout=args.dropout, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, optimizer=args.optimizer, scheduler=args.scheduler, warmup_ratio=args.warmup_ratio,
        grad_clip=args.grad_clip, patience=args.patience, max_length=args.max_length, max_train=args.max_train,
        unlabeled=args.unlabeled, teacher_max_length=args.teacher_max_length, **data_options,
    )
    values = {f: getattr(args, f) for f in GRID_FIELDS}
    values["alpha"] = values["alpha"] or [base.alpha]
    configs = grid(base, **values)
    results = [train_student(cfg, paths, args.device, args.overwrite) for cfg in configs]
    print(summary_table(results).to_string(index=False))
    return results


def finetune(model: str, splits: dict[str, pd.DataFrame], dataset: str, paths: Paths = Paths(), *, device: str = "auto",
             **settings) -> Path:
    """The ``teacher`` stage: ``teacher.finetune_teacher`` with ``TeacherConfig(model=model, **settings)``."""
    import teacher as teachers

    cfg = teachers.TeacherConfig(model=model, **settings)
    return teachers.finetune_teacher(cfg, splits, dataset, paths.teacher_root, device, log_root=paths.out)


def cache_all(teacher: str, splits: dict[str, pd.DataFrame], dataset: str, paths: Paths = Paths(), **options) -> dict[str, torch.Tensor]:
    """The ``cache`` stage: ``teacher.cache_all`` under ``paths.teacher_root`` (device, batch_size, max_length, unlabeled)."""
    import teacher as teachers

    return teachers.cache_all(teacher, splits, dataset, teacher_root=paths.teacher_root, **options)


def summary_table(results: list[dict]) -> pd.DataFrame:
    """One row per run: the columns a user compares."""
    columns = ["student_size", "vocab_size", "teacher", "alpha", "temperature", "kd_loss", "seed", "params", "size_bytes",
               "best_epoch", "val_accuracy", "test_accuracy", "test_f1", "train_seconds"]
    return pd.DataFrame(results)[columns]


if __name__ == "__main__":
    main(sys.argv[1:])
