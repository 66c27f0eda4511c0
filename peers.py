"""The n-gram peers a user would pick instead of a student: scikit-learn TF-IDF + logistic regression and
fastText (and its quantized form), trained, scored and timed beside the students (bench.py section 6)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

import config
import corpus
import teacher as teachers
from settings import setting, validate_fields
from synthetic import synthetic_reviews
from timing import BATCH, time_calls


class PeerSettings(Protocol):
    """What the peers read from bench.Settings: the data, the seed, the threads and the timing repeats."""

    data_dir: str | None
    data: str | None
    seed: int
    threads: int
    latency_sentences: int
    repeats: int


@dataclass
class PeersConfig:
    """The n-gram peers: scikit-learn TF-IDF + LR (the scikit-learn teacher's pipeline) and fastText."""

    tfidf_lr: config.SklearnTeacherConfig = setting(
        help="the TF-IDF + logistic regression settings (config.SklearnTeacherConfig)",
        default_factory=config.SklearnTeacherConfig,
    )
    fasttext_dim: int = setting(64, "fastText word vector size", bounds="[1, inf)")
    fasttext_word_ngrams: int = setting(2, "fastText word n-grams (2: bigrams)", bounds="[1, inf)")
    fasttext_minn: int = setting(2, "shortest fastText character n-gram", bounds="[1, inf)")
    fasttext_maxn: int = setting(4, "longest fastText character n-gram", bounds="[1, inf)")
    fasttext_epochs: int = setting(10, "fastText training epochs", bounds="[1, inf)")
    fasttext_bucket: int = setting(2_000_000, "fastText n-gram hash buckets", bounds="[1, inf)")
    quantize_cutoff: int = setting(
        100_000, "words and n-grams kept by quantized fastText (then retrained)", bounds="[1, inf)"
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.fasttext_minn > self.fasttext_maxn or self.fasttext_dim % 2:
            raise ValueError(
                "PeersConfig needs fasttext_minn <= fasttext_maxn and an even fasttext_dim (for "
                f"quantization); got minn {self.fasttext_minn}, maxn {self.fasttext_maxn}, "
                f"dim {self.fasttext_dim}"
            )

    def fasttext_options(self) -> dict[str, int]:
        """The keyword arguments of fasttext.train_supervised that these settings name."""
        return {
            "dim": self.fasttext_dim,
            "wordNgrams": self.fasttext_word_ngrams,
            "minn": self.fasttext_minn,
            "maxn": self.fasttext_maxn,
            "epoch": self.fasttext_epochs,
            "bucket": self.fasttext_bucket,
        }


def _files_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _peer_row(
    model: str,
    predict: Callable[[list[str]], list[int]],
    test: pd.DataFrame,
    texts: list[str],
    settings: PeerSettings,
    train_seconds: float,
    size_bytes: int,
    **extra,
) -> dict:
    """Test accuracy, train time, timings on the students' sentences and size of one peer."""
    accuracy = float(np.mean(np.array(predict(test["text"].tolist())) == test["label"].to_numpy()))
    timing = time_calls(predict, texts, settings.latency_sentences, settings.repeats)
    print(
        f"  {model:<24} test accuracy {accuracy:.4f}, {timing['batch64_per_s']:>9,.0f} sentences/s at "
        f"batch {BATCH}, {size_bytes / 1e6:,.1f} MB",
        flush=True,
    )
    return {
        "model": model,
        "kind": "peer",
        "test_accuracy": accuracy,
        "train_seconds": train_seconds,
        **timing,
        "size_bytes": size_bytes,
        **extra,
    }


def measure_tfidf_lr(
    settings: PeerSettings,
    cfg: config.SklearnTeacherConfig,
    train: pd.DataFrame,
    test: pd.DataFrame,
    texts: list[str],
    tmp: Path,
) -> dict:
    """The scikit-learn teacher's pipeline as a peer; its size is that of the saved teacher (skops + JSON)."""
    pipeline = teachers.build_sklearn_pipeline(cfg)
    start = time.perf_counter()
    pipeline.fit(train["text"].tolist(), train["label"].to_numpy())
    train_seconds = time.perf_counter() - start
    directory = tmp / "tfidf-lr"
    directory.mkdir()
    teachers.save_sklearn_pipeline(pipeline, directory)
    features = int(pipeline.named_steps["classifier"].coef_.shape[1])
    return _peer_row(
        "tfidf-lr (scikit-learn)",
        lambda batch: pipeline.predict(batch).tolist(),
        test,
        texts,
        settings,
        train_seconds,
        _files_bytes(directory),
        features=features,
    )


def _fasttext_predict(model) -> Callable[[list[str]], list[int]]:
    def predict(batch: list[str]) -> list[int]:
        labels, _ = model.predict([" ".join(text.split()) for text in batch])
        return [int(label[0].removeprefix("__label__")) for label in labels]

    return predict


def measure_fasttext(
    settings: PeerSettings,
    cfg: PeersConfig,
    train: pd.DataFrame,
    test: pd.DataFrame,
    texts: list[str],
    tmp: Path,
) -> list[dict]:
    """fastText supervised, then its quantized form (product quantization, retrained on the kept n-grams).

    Not in a process that has built a Kiwi analyser (augment.py): fastText training then hits NaN
    (kiwipiepy 0.24.1, fasttext-numpy2-wheel)."""
    import fasttext

    train_file = tmp / "fasttext-train.txt"
    pairs = zip(train["text"], train["label"])
    lines = (f"__label__{label} {' '.join(text.split())}\n" for text, label in pairs)
    train_file.write_text("".join(lines), encoding="utf-8")
    options = cfg.fasttext_options()
    start = time.perf_counter()
    model = fasttext.train_supervised(input=str(train_file), thread=settings.threads, verbose=0, **options)
    train_seconds = time.perf_counter() - start
    model.save_model(str(tmp / "fasttext.bin"))
    rows = [
        _peer_row(
            "fasttext",
            _fasttext_predict(model),
            test,
            texts,
            settings,
            train_seconds,
            (tmp / "fasttext.bin").stat().st_size,
            options=options,
        )
    ]
    start = time.perf_counter()
    model.quantize(
        input=str(train_file),
        qnorm=True,
        retrain=True,
        cutoff=cfg.quantize_cutoff,
        thread=settings.threads,
        verbose=0,
    )
    quantize_seconds = time.perf_counter() - start
    model.save_model(str(tmp / "fasttext.ftz"))
    rows.append(
        _peer_row(
            "fasttext quantized",
            _fasttext_predict(model),
            test,
            texts,
            settings,
            train_seconds + quantize_seconds,
            (tmp / "fasttext.ftz").stat().st_size,
            quantize_seconds=quantize_seconds,
            cutoff=cfg.quantize_cutoff,
        )
    )
    return rows


def measure_peers(
    settings: PeerSettings,
    train: pd.DataFrame,
    test: pd.DataFrame,
    texts: list[str],
    cfg: PeersConfig | None = None,
) -> list[dict]:
    """Both peers trained on ``train``, scored on all of ``test`` and timed on ``texts`` (the students'
    sentences, in calls of 64 and of 1 as in bench.py section 1) with ``settings.threads`` threads."""
    cfg = cfg or PeersConfig()
    train = train[train["label"] >= 0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure_tfidf_lr(settings, cfg.tfidf_lr, train, test, texts, Path(tmp))]
        rows += measure_fasttext(settings, cfg, train, test, texts, Path(tmp))
    return rows


def peer_data(settings: PeerSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All train and test rows for the peers: NSMC's with --data-dir or --data's (the students' split), else
    synthetic."""
    splits = corpus.load_reviews(settings.data, settings.data_dir)
    if splits is not None:
        return splits["train"], splits["test"]
    return synthetic_reviews(20_000, settings.seed), synthetic_reviews(5_000, settings.seed + 2)
