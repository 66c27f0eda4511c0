"""bench.py end to end on tiny settings: NSMC-format data, runs and a teacher written here, tiny teachers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import bench
import corpus
import report
import timing
from config import BACKENDS, StudentConfig
from conftest import write_nsmc
from model import BiLSTMClassifier, Student, save_student
from vocab import train_tokenizer

TINY_TEACHERS = (
    bench.TeacherSpec(
        "tiny-electra",
        "ElectraForSequenceClassification",
        "ElectraConfig",
        dict(
            vocab_size=1000,
            embedding_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        ),
    ),
    bench.TeacherSpec(
        "tiny-roberta",
        "RobertaForSequenceClassification",
        "RobertaConfig",
        dict(
            vocab_size=1000,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=140,
            pad_token_id=0,
        ),
    ),
    bench.TeacherSpec(
        "tiny-size-only",
        "BertForSequenceClassification",
        "BertConfig",
        dict(
            vocab_size=1000, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        ),
        timed=False,
    ),
)
# (student_size, teacher, alpha, seed, val_accuracy, test_accuracy, test_f1)
RUNS = [
    ("tiny", "teachers/kd-teacher", 0.1, 1, 0.80, 0.78, 0.77),
    ("tiny", "teachers/kd-teacher", 0.1, 2, 0.82, 0.74, 0.73),
    ("mini", None, 1.0, 42, 0.70, 0.69, 0.68),
]
TEACHER_PARAMS = 12 * 7 + 5


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write_runs(root: Path, data_dir: Path) -> Path:
    """metrics.json files as distil.py writes them, a run with a real student, and a teacher.json."""
    runs = root / "runs"
    for size, teacher, alpha, seed, val, test, f1 in RUNS:
        run_dir = runs / "nsmc" / f"{size}-{teacher and 'kd'}-s{seed}"
        run_dir.mkdir(parents=True)
        metrics = {
            "dataset": "nsmc",
            "teacher": teacher and str(root / teacher),
            "vocab_size": 300,
            "student_size": size,
            "embedding_dim": 8,
            "hidden_dim": 16,
            "params": 1000 if size == "tiny" else 2000,
            "size_bytes": 4000,
            "alpha": alpha,
            "temperature": 2.0,
            "kd_loss": "kl",
            "seed": seed,
            "n_train": 600,
            "val_accuracy": val,
            "test_accuracy": test,
            "test_f1": f1,
            "run_dir": str(run_dir),
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    # the mini run gets a real student so that its exported forms can be scored
    texts = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]["text"].tolist()
    tokenizer = train_tokenizer(texts, 300, root / "tok")
    torch.manual_seed(0)
    save_student(
        BiLSTMClassifier(StudentConfig.from_size("mini", len(tokenizer))),
        tokenizer,
        runs / "nsmc" / "mini-None-s42" / "student",
    )
    (runs / "nsmc" / "unfinished").mkdir()
    (runs / "nsmc" / "unfinished" / "metrics.json").write_text(json.dumps({"dataset": "nsmc", "params": 5}))

    teacher_dir = root / "teachers" / "kd-teacher"
    teacher_dir.mkdir(parents=True)
    (teacher_dir / "teacher.json").write_text(json.dumps({"test_accuracy": 0.9, "val_accuracy": 0.91}))
    save_file({"a": torch.zeros(12, 7), "b": torch.zeros(5)}, str(teacher_dir / "model.safetensors"))
    return runs


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("bench")
    data_dir = write_nsmc(root / "data", n_train=600, n_test=200)
    runs = write_runs(root, data_dir)
    settings = bench.Settings(
        data_dir=str(data_dir),
        runs=str(runs),
        out=str(root / "out"),
        threads=1,
        sentences=70,
        latency_sentences=5,
        repeats=1,
        presets=("tiny", "base"),
        exported_presets=("base",),
        student_steps=3,
        teacher_batches=2,
        eval_sentences=100,
    )
    return bench.run(settings, TINY_TEACHERS), root / "out"


def base_student_params(vocab: int, e: int = 64, h: int = 128) -> int:
    """A base student's parameters by hand: embedding, 2 LSTM directions (4 gates, 2 biases), output."""
    return vocab * e + 2 * (4 * h * (e + h) + 8 * h) + (2 * h * 2 + 2)


def test_results_file_has_every_section(results):
    result, out = results
    assert json.loads((out / "bench_results.json").read_text()) == result
    assert {
        "machine",
        "settings",
        "sentences",
        "speed",
        "speed_ratios",
        "targets",
        "size",
        "size_reduction",
        "cache",
        "accuracy",
        "teacher_accuracy",
        "exported_accuracy",
        "plot",
    } <= set(result)
    machine = result["machine"]
    assert (
        machine["threads"] == 1
        and machine["cpu"]
        and all(machine[k] for k in ("python", "torch", "transformers", "onnxruntime"))
    )
    assert result["sentences"]["count"] == 70 and "NSMC" in result["sentences"]["source"]
    assert Path(result["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speed_rows_and_ratios_follow_from_raw_numbers(results):
    result, _ = results
    speed = {(r["model"], r["backend"]): r for r in result["speed"]}
    expected = {("student-tiny", "torch"), ("tiny-electra", "torch"), ("tiny-roberta", "torch")} | {
        ("student-base", b) for b in BACKENDS
    }
    assert set(speed) == expected
    for row in speed.values():
        for mode in ("end_to_end", "model_only"):
            assert row[f"{mode}_batch1_per_s"] > 0 and row[f"{mode}_batch64_per_s"] > 0
            assert 0 < row[f"{mode}_batch1_median_ms"] <= row[f"{mode}_batch1_p90_ms"]
    vocab = result["tokenizers"]["student_vocab"]
    assert speed[("student-base", "torch")]["params"] == base_student_params(vocab)
    assert len(result["speed_ratios"]) == 4 * 2  # (tiny torch, base x 3 backends) x 2 timed teachers
    assert all(
        r["end_to_end_batch64_ratio"] > 0 and r["model_only_batch1_ratio"] > 0 for r in result["speed_ratios"]
    )
    # targets are judged against the biggest timed teacher, for each backend of the base student
    assert {(t["backend"], t["mode"]) for t in result["targets"]} == {
        (b, m) for b in BACKENDS for m in ("end_to_end", "model_only")
    }
    assert all("x_tiny-roberta_batch64" in t for t in result["targets"])


def speed_row(model: str, kind: str, params: int, per_s: dict[str, float], median_ms: float) -> dict:
    row = {"model": model, "kind": kind, "backend": "torch", "params": params}
    for mode in ("end_to_end", "model_only"):
        row.update({f"{mode}_batch1_per_s": per_s["b1"], f"{mode}_batch64_per_s": per_s[f"{mode}_b64"]})
        row[f"{mode}_batch1_median_ms"] = median_ms
    return row


def test_speed_ratios_and_targets_from_known_numbers():
    rows = [
        speed_row(
            "student-base",
            "student",
            1000,
            {"b1": 3000.0, "end_to_end_b64": 20_000.0, "model_only_b64": 9000.0},
            0.2,
        ),
        speed_row(
            "big", "teacher", 10**8, {"b1": 30.0, "end_to_end_b64": 40.0, "model_only_b64": 45.0}, 30.0
        ),
        speed_row(
            "small", "teacher", 10**6, {"b1": 300.0, "end_to_end_b64": 400.0, "model_only_b64": 450.0}, 3.0
        ),
    ]
    ratios = {r["teacher"]: r for r in bench.speed_ratios(rows)}
    assert ratios["big"]["end_to_end_batch64_ratio"] == pytest.approx(500.0)
    assert ratios["big"]["model_only_batch64_ratio"] == pytest.approx(200.0)
    assert ratios["small"]["end_to_end_batch1_ratio"] == pytest.approx(10.0)
    targets = {t["mode"]: t for t in bench.check_targets(rows, list(ratios.values()))}
    assert targets["end_to_end"]["x_big_batch64"] == pytest.approx(
        500.0
    )  # judged against the biggest teacher
    assert (targets["end_to_end"]["batch64_met"], targets["end_to_end"]["ratio_met"]) == (True, True)
    assert (targets["model_only"]["batch64_met"], targets["model_only"]["ratio_met"]) == (False, False)
    assert targets["model_only"]["batch1_met"]  # 0.2 ms < 0.3 ms


def test_size_and_reductions(results):
    result, _ = results
    size = {(r["model"], r["format"]): r for r in result["size"]}
    assert set(size) == {
        ("student-tiny", "safetensors"),
        ("student-base", "safetensors"),
        ("student-base", "onnx"),
        ("student-base", "onnx-int8"),
        ("tiny-electra", "safetensors"),
        ("tiny-roberta", "safetensors"),
        ("tiny-size-only", "safetensors"),
    }
    base = size[("student-base", "safetensors")]
    assert base["bytes"] > 4 * base["params"]  # float32 weights plus a header
    assert size[("student-base", "onnx-int8")]["bytes"] < size[("student-base", "onnx")]["bytes"] / 2
    assert len(result["size_reduction"]) == 4 * 3
    # Independent numbers: a base student's parameters by hand (embedding, two LSTM directions, output layer)
    # and the teacher's as Hugging Face counts them.
    student_params = base_student_params(result["tokenizers"]["student_vocab"])
    assert (
        base["params"] == student_params and 4 * student_params < base["bytes"] < 4 * student_params + 10_000
    )
    teacher_params = TINY_TEACHERS[1].build().num_parameters()
    assert size[("tiny-roberta", "safetensors")]["params"] == teacher_params
    reduction = next(
        r
        for r in result["size_reduction"]
        if (r["student"], r["format"], r["teacher"]) == ("student-base", "safetensors", "tiny-roberta")
    )
    assert reduction["params_reduction"] == pytest.approx(teacher_params / student_params)


def test_cache_epochs_are_extrapolated_from_the_measured_steps(results):
    result, _ = results
    assert [r["teacher"] for r in result["cache"]] == ["tiny-electra", "tiny-roberta"]
    for row in result["cache"]:
        assert row["extrapolated"] and row["steps_per_epoch"] == 2344  # 150,000 examples in batches of 64
        assert row["student_step_s"] > 0 and row["teacher_batch_s"] > 0
        assert row["epoch_s_with_cache"] == pytest.approx(2344 * row["student_step_s"])
        assert row["epoch_s_teacher_in_loop"] == pytest.approx(
            2344 * (row["student_step_s"] + row["teacher_batch_s"])
        )
        assert row["speedup"] > 1


def test_mean_seconds_measures_wall_time():
    import time

    seconds = timing.mean_seconds(lambda idx: time.sleep(0.02), [np.arange(3)] * 4)
    assert 0.02 <= seconds < 0.06


def test_accuracy_table_groups_seeds(results):
    result, _ = results
    table = {(r["model"], r["teacher"]): r for r in result["accuracy"]}
    assert set(table) == {("tiny", "kd-teacher"), ("mini", "none")}  # the unfinished run is left out
    kd = table[("tiny", "kd-teacher")]
    assert kd["seeds"] == 2 and kd["alpha"] == 0.1
    assert kd["test_accuracy_mean"] == pytest.approx(0.76)
    assert kd["test_accuracy_std"] == pytest.approx(0.0282843, abs=1e-6)  # sample std of 0.78 and 0.74
    assert kd["val_accuracy_mean"] == pytest.approx(0.81) and kd["test_f1_mean"] == pytest.approx(0.75)
    assert table[("mini", "none")]["seeds"] == 1 and table[("mini", "none")]["test_accuracy_std"] is None
    assert result["teacher_accuracy"] == [
        {"teacher": "kd-teacher", "test_accuracy": 0.9, "params": TEACHER_PARAMS}
    ]


def test_exported_forms_are_scored_against_the_float_model(results):
    result, out = results
    root = out.parent
    rows = {r["backend"]: r for r in result["exported_accuracy"]}
    assert set(rows) == set(BACKENDS)
    assert all(
        r["run"] == "mini-None-s42" and r["test_sentences"] == 100 and 0 <= r["accuracy"] <= 1
        for r in rows.values()
    )
    assert rows["torch"]["delta_points"] == 0
    # The same 100 sentences scored here, with each backend's own predictions.
    test = corpus.load_dataset("nsmc", data_dir=root / "data")["test"].sample(n=100, random_state=0)
    student_dir = root / "runs" / "nsmc" / "mini-None-s42" / "student"
    for backend in ("torch", "onnx"):
        predicted = Student.from_pretrained(student_dir, backend=backend).predict(test["text"].tolist())
        assert rows[backend]["accuracy"] == pytest.approx(
            np.mean(np.array(predicted) == test["label"].to_numpy())
        )
    for row in rows.values():
        assert row["within_0.2_points"] == (abs(row["delta_points"]) <= 0.2 + 1e-9)


def test_without_data_dir_the_sentences_are_synthetic_and_say_so():
    train, sample, source = bench.load_texts(bench.Settings(sentences=50))
    assert len(sample) == 50 and len(train) > 1000 and "SYNTHETIC" in source


def test_command_line_settings(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "run", lambda settings: seen.append(settings))
    bench.main(["--quick", "--threads", "3", "--data-dir", "d", "--runs", "r", "--out", "o"])
    bench.main([])
    quick, full = seen
    assert (quick.threads, quick.data_dir, quick.runs, quick.out) == (3, "d", "r", "o")
    assert (
        quick.sentences < full.sentences
        and quick.exported_presets == ("base",)
        and full.exported_presets == full.presets
    )
    assert full.threads == 1 and full.data_dir is None
    with pytest.raises(SystemExit):
        bench.main(["--threads", "0"])


def test_student_result_times_the_saved_student(results):
    _, out = results
    run_dir = out.parent / "runs" / "nsmc" / "mini-None-s42"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = report.student_result(metrics, ["정말 재밌어요", "최악의 영화", "그냥 그래요"] * 30)
    assert list(row) == report.RESULT_COLUMNS
    assert row["kind"] == "baseline" and row["run_dir"] == str(run_dir) and row["test_accuracy"] == 0.69
    assert row["cpu_sentences_per_s"] > 0 and row["cpu_batch1_ms"] > 0
