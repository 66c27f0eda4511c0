"""Shared fixtures: small dataset files in each dataset's own format and a tiny Hugging Face teacher."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

# Tiny models on a small (often shared) CPU: one thread each is several times faster than fighting over cores.
# Set before torch is imported so that subprocesses (notebook kernel, torchrun workers) inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd
import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic import SYNTHETIC_WORDS  # noqa: E402  (the project's one word list; its folder is on sys.path now)

POSITIVE, NEGATIVE = SYNTHETIC_WORDS[1], SYNTHETIC_WORDS[0]
FILLER = [*SYNTHETIC_WORDS[None], "the", "movie"]


def make_reviews(n: int, seed: int) -> list[tuple[str, int]]:
    """Learnable synthetic reviews: filler words plus one or two sentiment words of the label's polarity."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(2, 9)) + rng.choices(
            POSITIVE if label else NEGATIVE, k=rng.randint(1, 2)
        )
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


NEUTRAL = ["보통", "그럭저럭", "평범", "무난", "그냥저냥", "쏘쏘"]


def labelled_reviews(n: int, classes: dict[str, list[str]], seed: int = 0) -> pd.DataFrame:
    """Learnable reviews of any label set (label name -> its words): filler words plus one or two words of the
    row's class, as a DataFrame of ids, texts and labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(sorted(classes))
        words = rng.choices(FILLER, k=rng.randint(2, 8)) + rng.choices(classes[label], k=rng.randint(1, 2))
        rng.shuffle(words)
        rows.append((f"r{i}", " ".join(words), label))
    return pd.DataFrame(rows, columns=["id", "text", "label"])


def write_nsmc(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """ratings_train.txt / ratings_test.txt in NSMC's format (id<TAB>document<TAB>label, with header)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("ratings_train.txt", n_train, 0), ("ratings_test.txt", n_test, 10**6)):
        lines = ["id\tdocument\tlabel"] + [
            f"{offset + i + 1}\t{text}\t{label}"
            for i, (text, label) in enumerate(make_reviews(n, seed + offset))
        ]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def write_shopping(path: Path, n: int = 400, seed: int = 1) -> Path:
    """naver_shopping.txt: rating<TAB>text, ratings 1-2 negative, 4-5 positive (plus some neutral 3)."""
    rng = random.Random(seed)
    lines = []
    for i, (text, label) in enumerate(make_reviews(n, seed)):
        rating = 3 if i % 10 == 0 else rng.choice([4, 5] if label else [1, 2])
        lines.append(f"{rating}\t{text} {i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_steam(path: Path, n: int = 400, seed: int = 2) -> Path:
    """steam.txt: label<TAB>text."""
    lines = [f"{label}\t{text} {i}" for i, (text, label) in enumerate(make_reviews(n, seed))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A folder with all three datasets' files in their own formats."""
    directory = write_nsmc(tmp_path_factory.mktemp("data"))
    write_shopping(directory / "naver_shopping.txt")
    write_steam(directory / "steam.txt")
    return directory


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, data_dir) -> Path:
    """A tiny randomly initialised BERT classifier with a WordPiece tokenizer, saved like a fine-tuned
    teacher."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    import corpus
    import vocab

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("teacher") / "tiny-bert-nsmc"
    texts = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]["text"].tolist()
    tokenizer = vocab.train_tokenizer(texts, 300, directory / "tok")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run's layout: <run>/student (untrained weights, toy tokenizer) and <run>/metrics.json."""
    import vocab
    from config import StudentConfig
    from model import BiLSTMClassifier, save_student

    run = tmp_path_factory.mktemp("runs") / "tiny-v300-none-a1"
    texts = [text for text, _ in make_reviews(300, seed=0)]
    tokenizer = vocab.train_tokenizer(texts, 300, run.parent / "tok")
    torch.manual_seed(0)
    config = StudentConfig.from_size("tiny", len(tokenizer), max_length=32)
    save_student(BiLSTMClassifier(config), tokenizer, run / "student", extra={"run": run.name, "epoch": 1})
    metrics = {
        "dataset": "nsmc",
        "teacher": None,
        "alpha": 1.0,
        "test_accuracy": 0.8123,
        "test_f1": 0.81,
        "size_bytes": 4321,
        "n_train": 300,
        "run_dir": str(run),
    }
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run


def cli_roots(tmp_path: Path) -> list[str]:
    """distil.py options keeping a CLI test's tokenizers, teachers and runs under ``tmp_path`` (CPU, -q)."""
    return [
        "--tokenizer-root",
        str(tmp_path / "tok"),
        "--teacher-root",
        str(tmp_path / "teachers"),
        "--out",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
        "-q",
    ]


def cli_common(tmp_path: Path, data_dir: Path) -> list[str]:
    """distil.py options that keep a CLI test's data, tokenizers, teachers and runs under ``tmp_path``."""
    return [
        "--dataset",
        "nsmc",
        "--data-dir",
        str(data_dir),
        "--data-root",
        str(tmp_path / "data"),
        *cli_roots(tmp_path),
    ]


@pytest.fixture
def fresh_teacher(tmp_path, tiny_teacher) -> Path:
    """A copy of ``tiny_teacher`` without the logits other tests cached in it (its cache starts empty, in
    any test order)."""
    import shutil

    directory = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, directory, ignore=shutil.ignore_patterns("logits"))
    return directory


@pytest.fixture
def count_teacher_runs(monkeypatch) -> list[int]:
    """How many texts each teacher run scores, call by call."""
    import teacher as teachers

    calls: list[int] = []
    original = teachers.Teacher.predict_logits

    def counting(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(teachers.Teacher, "predict_logits", counting)
    return calls
