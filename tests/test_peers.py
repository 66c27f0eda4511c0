"""The scikit-learn teacher (fit, safe save/load, cached logits, distillation) and peers.py's peers."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

import config
import corpus
import finetune
import logits_cache
import teacher as teachers
import train
from conftest import write_nsmc

FAST = {"char_max_n": 2, "word_max_n": 1, "max_iter": 200}


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict:
    data_dir = write_nsmc(tmp_path_factory.mktemp("nsmc"), n_train=600, n_test=200)
    return corpus.load_dataset("nsmc", data_dir=data_dir)


@pytest.fixture(scope="module")
def sklearn_teacher(tmp_path_factory, splits):
    return finetune.fit_sklearn_teacher(
        config.SklearnTeacherConfig(**FAST), splits, "nsmc", tmp_path_factory.mktemp("teachers")
    )


def test_config_validates_every_setting():
    assert config.SklearnTeacherConfig() == config.SklearnTeacherConfig(3, 2, 2, True, 3.0, 1000)
    for bad in (
        {"char_max_n": 0},
        {"word_max_n": True},
        {"min_df": 1.5},
        {"c": 0},
        {"c": float("inf")},
        {"sublinear_tf": "yes"},
        {"max_iter": -1},
    ):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} .* must be"):
            config.SklearnTeacherConfig(**bad)


def test_fit_reports_accuracy_and_is_reused(sklearn_teacher, splits, monkeypatch):
    info = json.loads((sklearn_teacher / teachers.TEACHER_INFO).read_text())
    assert info["test_accuracy"] > 0.8 and info["val_accuracy"] > 0.8  # chance is 0.5
    assert info["settings"] == dataclasses.asdict(config.SklearnTeacherConfig(**FAST))
    assert info["data_fingerprint"]["train"] == corpus.data_fingerprint(splits["train"])
    assert info["num_examples"]["train"] == len(splits["train"]) and info["num_features"] > 0
    assert teachers.is_sklearn_dir(sklearn_teacher) and not teachers.is_sklearn_dir(sklearn_teacher.parent)
    # Same settings and data: the folder is reused; other settings or other labels: another folder.
    monkeypatch.setattr(teachers, "build_sklearn_pipeline", lambda cfg: pytest.fail("fitted again"))
    assert (
        finetune.fit_sklearn_teacher(
            config.SklearnTeacherConfig(**FAST), splits, "nsmc", sklearn_teacher.parent
        )
        == sklearn_teacher
    )
    flipped = {**splits, "train": splits["train"].assign(label=1 - splits["train"]["label"])}
    monkeypatch.undo()
    other = finetune.fit_sklearn_teacher(
        config.SklearnTeacherConfig(**FAST), flipped, "nsmc", sklearn_teacher.parent
    )
    assert (
        other != sklearn_teacher
        and json.loads((other / teachers.TEACHER_INFO).read_text())["test_accuracy"] < 0.2
    )


def test_saved_teacher_round_trips(sklearn_teacher, splits):
    texts = splits["test"]["text"].tolist()
    fresh = teachers.build_sklearn_pipeline(config.SklearnTeacherConfig(**FAST))
    fresh.fit(splits["train"]["text"].tolist(), splits["train"]["label"].to_numpy())
    loaded = teachers.load_teacher(str(sklearn_teacher))
    assert (
        isinstance(loaded, teachers.SklearnTeacher) and loaded.num_labels == 2 and loaded.num_parameters() > 0
    )
    files = [sklearn_teacher / teachers.SKLEARN_MODEL_FILE, sklearn_teacher / teachers.SKLEARN_VOCAB_FILE]
    assert loaded.size_bytes() == sum(path.stat().st_size for path in files) > 0  # peers.py's size column
    logits = loaded.predict_logits(texts, batch_size=8, show_progress=False)  # several chunks
    expected = np.maximum(fresh.predict_log_proba(texts), teachers.LOG_PROB_FLOOR)
    assert logits.dtype == torch.float32 and logits.shape == (len(texts), 2)
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(torch.logsumexp(logits, -1).numpy(), 0.0, atol=1e-5)  # log-probabilities


def test_extreme_texts_give_finite_log_probabilities(sklearn_teacher):
    loaded = teachers.load_teacher(str(sklearn_teacher))
    logits = loaded.predict_logits(["최고 " * 500, "최악 " * 500, "", "zzz"], show_progress=False)
    assert torch.isfinite(logits).all() and (logits >= teachers.LOG_PROB_FLOOR).all()


class Payload:
    """Stands for anything a crafted file could ask skops to build."""


def test_untrusted_types_in_the_file_are_refused(sklearn_teacher, tmp_path):
    import shutil

    import skops.io

    crafted = tmp_path / "crafted"
    shutil.copytree(sklearn_teacher, crafted)
    pipeline = teachers.load_sklearn_pipeline(sklearn_teacher)
    pipeline.steps.append(("payload", Payload()))
    skops.io.dump(pipeline, crafted / teachers.SKLEARN_MODEL_FILE)
    with pytest.raises(ValueError, match=r"untrusted types \['test_peers.Payload'\]; refusing"):
        teachers.load_teacher(str(crafted))


def test_fingerprint_covers_the_folder_files(sklearn_teacher, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sklearn_teacher, copy)
    before = teachers.teacher_fingerprint(copy)
    assert before == teachers.teacher_fingerprint(sklearn_teacher)
    (copy / "logits").mkdir()
    (copy / "logits" / "x.safetensors").write_bytes(b"cache")  # the cache lives inside; it is not the teacher
    assert teachers.teacher_fingerprint(copy) == before
    vocabulary = json.loads((copy / teachers.SKLEARN_VOCAB_FILE).read_text())
    vocabulary["word"][0], vocabulary["word"][1] = vocabulary["word"][1], vocabulary["word"][0]
    (copy / teachers.SKLEARN_VOCAB_FILE).write_text(json.dumps(vocabulary))
    assert teachers.teacher_fingerprint(copy) != before


def test_cached_logits_equal_a_fresh_prediction(sklearn_teacher, splits, monkeypatch):
    calls = []
    original = teachers.SklearnTeacher._predict
    monkeypatch.setattr(
        teachers.SklearnTeacher, "_predict", lambda self, *a: calls.append(1) or original(self, *a)
    )
    for split in ("train", "valid", "test"):
        df = splits[split]
        cached = logits_cache.teacher_logits(str(sklearn_teacher), df, "nsmc", split)
        again = logits_cache.teacher_logits(str(sklearn_teacher), df, "nsmc", split)
        fresh = teachers.load_teacher(str(sklearn_teacher)).predict_logits(
            df["text"].tolist(), show_progress=False
        )
        torch.testing.assert_close(cached, fresh)
        torch.testing.assert_close(again, fresh)
    assert len(calls) == 6  # three cache builds and three fresh predictions: the second lookups were hits
    assert sorted(p.name for p in (sklearn_teacher / "logits").iterdir()) == [
        "nsmc-test.safetensors",
        "nsmc-train.safetensors",
        "nsmc-valid.safetensors",
    ]


def test_sklearn_teacher_teaches_a_student_through_the_cache(sklearn_teacher, splits, tmp_path):
    data_dir = tmp_path / "data"
    write_nsmc(data_dir, n_train=600, n_test=200)
    paths = config.Paths(
        str(data_dir),
        str(tmp_path / "d"),
        str(tmp_path / "tok"),
        str(tmp_path / "teachers"),
        str(tmp_path / "runs"),
    )
    # alpha 0: the student learns from the teacher's log-probabilities only, never from a label.
    cfg = config.RunConfig(
        teacher=str(sklearn_teacher),
        alpha=0.0,
        size="tiny",
        vocab_size=300,
        epochs=3,
        batch_size=32,
        lr=1e-2,
        warmup_ratio=0.0,
    )
    metrics = train.train_student(cfg, paths, device="cpu")
    assert metrics["test_accuracy"] > 0.8
    cache = logits_cache.LogitsCache.load(sklearn_teacher / "logits" / "nsmc-train.safetensors")
    assert cache.meta["teacher_fingerprint"] == teachers.teacher_fingerprint(sklearn_teacher)


def test_bench_peers_are_trained_scored_and_timed(splits):
    import bench
    import peers

    settings = bench.Settings(latency_sentences=8, repeats=1)
    cfg = peers.PeersConfig(
        tfidf_lr=config.SklearnTeacherConfig(**FAST),
        fasttext_bucket=20_000,
        quantize_cutoff=2_000,
        fasttext_epochs=20,
    )
    texts = splits["test"]["text"].tolist()[:128]
    # A fresh process: fastText training hits NaN in a process that has built a Kiwi analyser
    # (kiwipiepy 0.24.1, fasttext-numpy2-wheel), which test_augment.py does earlier in the same pytest run.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = pool.submit(
            peers.measure_peers, settings, splits["train"], splits["test"], texts, cfg
        ).result()
    by_model = {row["model"]: row for row in rows}
    assert list(by_model) == ["tfidf-lr (scikit-learn)", "fasttext", "fasttext quantized"]
    for row in rows:
        assert row["test_accuracy"] > 0.8, row  # chance is 0.5
        assert (
            row["train_seconds"] > 0
            and row["batch64_per_s"] > 0
            and row["batch1_median_ms"] > 0
            and row["size_bytes"] > 0
        )
    assert by_model["fasttext quantized"]["size_bytes"] < by_model["fasttext"]["size_bytes"] / 4
    assert by_model["tfidf-lr (scikit-learn)"]["features"] > 0
    with pytest.raises(ValueError, match=r"fasttext_dim \(--fasttext-dim\) must be in \[1, inf\), got 0"):
        peers.PeersConfig(fasttext_dim=0)
    with pytest.raises(ValueError, match="even fasttext_dim"):
        peers.PeersConfig(fasttext_dim=63)
