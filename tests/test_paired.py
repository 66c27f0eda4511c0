"""paired.py: the paired bootstrap interval, rows ordered by validation accuracy, a missing folder, a run, the
default bundled students (those there) and their timing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import corpus
import paired
from config import SklearnTeacherConfig
from finetune import fit_sklearn_teacher
from model import Student

N = 2000
RESAMPLES, CONFIDENCE = 1000, 0.95


def interval(correct: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, float]:
    return paired.paired_difference(correct, reference, RESAMPLES, CONFIDENCE, seed)


def test_identical_predictions_differ_by_zero_with_interval_zero():
    correct = np.random.default_rng(1).random(N) < 0.8
    assert interval(correct, correct) == {"difference": 0.0, "low": 0.0, "high": 0.0}


def test_a_model_right_on_ten_percent_more_examples_has_an_interval_around_that_excluding_zero():
    reference = np.arange(N) < 0.7 * N
    better = np.arange(N) < 0.8 * N  # right wherever the reference is, and on 10 % more
    result = interval(better, reference)
    assert result["difference"] == pytest.approx(0.10)
    assert 0 < result["low"] < 0.10 < result["high"]
    assert result["high"] - result["low"] < 0.05


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    rng = np.random.default_rng(2)
    model, reference = rng.random(N) < 0.8, rng.random(N) < 0.75
    assert interval(model, reference, seed=3) == interval(model, reference, seed=3)
    assert interval(model, reference, seed=3) != interval(model, reference, seed=4)


def stats(accuracy: float) -> dict[str, float]:
    return {
        "examples": N,
        "accuracy": accuracy,
        "difference": 0.01,
        "low": -0.01,
        "high": 0.03,
        "disagreement": 0.1,
    }


def test_rows_are_ordered_by_validation_accuracy_not_test():
    rows = [
        {"model": "best-on-test", "reference": False, "splits": {"valid": stats(0.80), "test": stats(0.90)}},
        {"model": "best-on-valid", "reference": True, "splits": {"valid": stats(0.85), "test": stats(0.70)}},
    ]
    results = {
        "command": "python paired.py",
        "date": "2025-01-01T00:00:00+00:00",
        "machine": {
            "cpu": "Some CPU",
            "threads": 1,
            "platform": "Linux",
            "torch": "2",
            "load_average_at_start": [1.0],
            "load_average_at_end": [1.0],
        },
        "settings": {
            "dataset": "nsmc",
            "reference": "best-on-valid",
            "confidence": CONFIDENCE,
            "resamples": RESAMPLES,
            "seed": 0,
            "backend": "torch",
        },
        "rows": paired.ordered(rows),
    }
    text = paired.page(results)
    assert text.index("`best-on-valid` (reference)") < text.index("`best-on-test`")
    assert [row["model"] for row in results["rows"]] == ["best-on-valid", "best-on-test"]


def test_a_missing_model_folder_is_a_one_line_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-student"
    with pytest.raises(SystemExit) as exit_info:
        paired.main(["--models", str(missing), "--out", str(tmp_path)])
    message = str(exit_info.value)
    assert message.startswith("paired.py:") and str(missing) in message and "\n" not in message
    assert not (tmp_path / paired.RESULTS_JSON).exists()


def test_a_run_compares_teacher_folders_on_the_same_examples(tmp_path, data_dir):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    weaker = fit_sklearn_teacher(SklearnTeacherConfig(c=0.01), splits, "nsmc", tmp_path / "teachers")
    options = [
        "--data-dir",
        str(data_dir),
        "--teacher-root",
        str(tmp_path / "teachers"),
        "--out",
        str(tmp_path),
    ]
    results = paired.main([*options, "--models", str(weaker), "--resamples", "50"])
    assert [row["reference"] for row in results["rows"]].count(True) == 1
    reference = next(row for row in results["rows"] if row["reference"])
    assert reference["splits"]["test"] | {"accuracy": 0} == {
        "examples": 200,
        "accuracy": 0,
        "difference": 0.0,
        "low": 0.0,
        "high": 0.0,
        "disagreement": 0.0,
    }
    assert json.loads((tmp_path / paired.RESULTS_JSON).read_text(encoding="utf-8"))["rows"] == results["rows"]
    first = (tmp_path / paired.RESULTS_MD).read_text(encoding="utf-8").splitlines()[0]
    assert "python paired.py" in first and "--resamples 50" in first and Path(weaker).name in first


def test_a_run_folder_is_compared_on_the_splits_of_the_valid_fraction_given(tmp_path, data_dir, run_dir):
    # run_dir is runs/<run> with its student/ inside: the student predicts; --valid-fraction carves valid
    splits = corpus.load_dataset("nsmc", data_dir=data_dir, valid_fraction=0.1)
    reference = fit_sklearn_teacher(SklearnTeacherConfig(c=0.01), splits, "nsmc", tmp_path / "teachers")
    options = ["--data-dir", str(data_dir), "--reference", str(reference), "--out", str(tmp_path)]
    results = paired.main(
        [*options, "--valid-fraction", "0.1", "--models", str(run_dir), "--resamples", "20"]
    )
    row = next(row for row in results["rows"] if row["model"] == str(run_dir))
    student = Student.from_pretrained(run_dir / "student")
    for split in paired.SPLITS:
        labels = splits[split]["label"].to_numpy()
        assert row["splits"][split]["examples"] == len(labels)
        expected = np.mean(np.asarray(student.predict(splits[split]["text"].tolist())) == labels)
        assert row["splits"][split]["accuracy"] == pytest.approx(expected)
    assert len(splits["valid"]) > len(corpus.load_dataset("nsmc", data_dir=data_dir)["valid"])
    assert "--valid-fraction 0.1" in results["command"]


def test_by_default_the_bundled_students_there_are_compared_and_timed(
    tmp_path, monkeypatch, capsys, data_dir, run_dir
):
    # only one bundle of config.BUNDLED_NAMES is in models/: the others are skipped with a note each
    monkeypatch.chdir(tmp_path)
    present = paired.BUNDLED[1]
    shutil.copytree(run_dir / "student", present)
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    reference = fit_sklearn_teacher(SklearnTeacherConfig(c=0.01), splits, "nsmc", tmp_path / "teachers")
    threads = torch.get_num_threads()
    options = ["--data-dir", str(data_dir), "--reference", str(reference), "--resamples", "20"]
    results = paired.main([*options, "--threads", "2", "--out", str(tmp_path)])
    notes = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert notes == [
        f"paired.py: skipped bundled {path}: no such folder" for path in paired.BUNDLED if path != present
    ]
    assert torch.get_num_threads() == threads  # set for the run only
    assert results["settings"]["models"] == [present] and results["machine"]["threads"] == 2
    speeds = {row["model"]: row["test_sentences_per_s"] for row in results["rows"]}
    assert speeds[str(reference)] is None and speeds[present] > 0
    text = (tmp_path / paired.RESULTS_MD).read_text(encoding="utf-8")
    assert "sentences/s (test, 2 thread(s), torch)" in text
    student_line = next(line for line in text.splitlines() if f"`{present}`" in line)
    reference_line = next(line for line in text.splitlines() if "(reference)" in line)
    assert student_line.endswith(f"| {speeds[present]:,.0f} |") and reference_line.endswith("| — |")
