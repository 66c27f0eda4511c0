"""bench.py end to end on tiny settings: NSMC-format data, runs and a teacher written here, tiny teachers."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import bench
import corpus
from conftest import write_nsmc
from model import BACKENDS, STUDENT_MODEL_TYPE, BiLSTMClassifier, Student, StudentConfig, save_student
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

    seconds = bench.mean_seconds(lambda idx: time.sleep(0.02), [np.arange(3)] * 4)
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


# -----------------------------------------------------------------------------
# The notebook's evaluation: results rows, accumulation, the reader's table, the plots


def result_row(run_dir: str, kind: str = "baseline", **values) -> dict:
    """A results row as student_result / teacher_result write it (tiny student, vocab 300, seed 42)."""
    teacher = None if kind == "baseline" else "teachers/kd-teacher"
    row = dict.fromkeys(bench.RESULT_COLUMNS) | {
        "run_dir": run_dir,
        "kind": kind,
        "dataset": "nsmc",
        "teacher": teacher,
        "vocab_size": 300,
        "student_size": "tiny",
        "embedding_dim": 8,
        "hidden_dim": 16,
        "alpha": 1.0 if kind == "baseline" else 0.1,
        "temperature": 2.0,
        "kd_loss": "kl",
        "n_train": 600,
        "seed": 42,
        "params": 1000,
        "size_bytes": 110_504,
        "val_accuracy": 0.8,
        "test_accuracy": 0.75,
        "test_f1": 0.74,
        "cpu_sentences_per_s": 5000.0,
        "cpu_batch1_ms": 0.5,
    }
    return row | values


def test_results_accumulate_one_row_per_run_directory(tmp_path):
    path = tmp_path / "runs" / "nsmc" / "results.csv"
    path.parent.mkdir(parents=True)
    assert bench.accumulate_results([], path).empty  # nothing yet: an empty table with its header
    assert pd.read_csv(path).columns.tolist() == bench.RESULT_COLUMNS
    first = bench.accumulate_results([result_row("a"), result_row("b", test_accuracy=0.70)], path)
    assert list(first["run_dir"]) == ["a", "b"]
    second = bench.accumulate_results([result_row("b", test_accuracy=0.72), result_row("c")], path)
    assert list(second["run_dir"]) == ["a", "b", "c"]  # a kept, b replaced by its latest row, c added
    assert second.set_index("run_dir")["test_accuracy"].to_dict() == {"a": 0.75, "b": 0.72, "c": 0.75}
    on_disk = pd.read_csv(path)
    assert list(on_disk.columns) == bench.RESULT_COLUMNS and list(on_disk["run_dir"]) == ["a", "b", "c"]
    assert not list(path.parent.glob("*.tmp*"))  # written atomically, nothing left behind
    # a file written by an older version (fewer columns) is read and completed, not rejected
    on_disk.drop(columns=["cpu_batch1_ms"]).to_csv(path, index=False)
    assert bench.accumulate_results([], path)["cpu_batch1_ms"].isna().all()


def test_results_table_groups_seeds_in_rounded_percentages():
    rows = [
        result_row(
            "t",
            "teacher",
            teacher="teacher_model/koelectra-small-v3-discriminator-nsmc",
            vocab_size=None,
            student_size=None,
            params=14_000_000,
            size_bytes=56_000_000,
            test_accuracy=0.9012345,
        ),
        result_row("kd-s1", "distilled", seed=1, test_accuracy=0.78),
        result_row("kd-s2", "distilled", seed=2, test_accuracy=0.74, cpu_sentences_per_s=7000.0),
        result_row("kd-u", "distilled", unlabeled="/data/nsmc/unlabeled.txt", test_accuracy=0.8),
        result_row("base", test_accuracy=0.7),
    ]
    table = bench.results_table(pd.DataFrame(rows, columns=bench.RESULT_COLUMNS))
    assert list(table.columns) == [
        "model",
        "vocab",
        "teacher",
        "alpha",
        "transfer set",
        "params",
        "size",
        "test acc (%)",
        "seeds",
        "CPU sentences/s",
    ]
    records = table.to_dict("records")
    assert records[0] == {
        "model": "teacher",
        "vocab": "",
        "teacher": "koelectra-small-v3-discriminator-nsmc",
        "alpha": "",
        "transfer set": "",
        "params": "14,000,000",
        "size": "56 MB",
        "test acc (%)": "90.12",
        "seeds": 1,
        "CPU sentences/s": 5000,
    }
    by_transfer = {(r["teacher"], r["transfer set"]): r for r in records[1:]}
    assert set(by_transfer) == {("kd-teacher", "train"), ("kd-teacher", "train + unlabeled"), ("none", "")}
    kd = by_transfer[("kd-teacher", "train")]
    # 78 and 74: mean 76, sample standard deviation sqrt(8) = 2.83
    assert kd["test acc (%)"] == "76.00 ± 2.83" and kd["seeds"] == 2 and kd["CPU sentences/s"] == 6000
    assert kd["model"] == "tiny" and kd["vocab"] == 300 and kd["alpha"] == "0.1" and kd["size"] == "111 KB"
    assert by_transfer[("none", "")]["test acc (%)"] == "70.00" and by_transfer[("none", "")]["alpha"] == "1"


def accuracy_rows() -> list[dict]:
    """accuracy_table rows: two student families (tiny, base), each distilled and baseline."""
    rows = []
    for model, params in (("tiny", 27_394), ("base", 391_170)):
        for teacher, mean, std in (("none", 0.83, 0.002), ("kd", 0.845, 0.004)):
            rows.append(
                {
                    "model": model,
                    "vocab_size": 3000,
                    "teacher": teacher,
                    "alpha": 1.0 if teacher == "none" else 0.1,
                    "unlabeled": "none",
                    "params": params,
                    "test_accuracy_mean": mean + (params > 50_000) * 0.02,
                    "test_accuracy_std": std,
                    "seeds": 3,
                }
            )
    return rows


def test_accuracy_plot_pairs_colours_shows_seed_spread_and_labels_do_not_collide(tmp_path):
    path = tmp_path / "accuracy.png"
    fig = bench.plot_accuracy(
        accuracy_rows(), [{"teacher": "koelectra", "test_accuracy": 0.9, "params": 14_000_000}], path
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    bars = ax.containers
    assert len(bars) == 4
    for container, row in zip(bars, accuracy_rows()):
        (segment,) = container.lines[2][0].get_segments()  # the vertical error bar: mean ± std, in %
        assert segment[:, 1] == pytest.approx(
            [
                100 * (row["test_accuracy_mean"] - row["test_accuracy_std"]),
                100 * (row["test_accuracy_mean"] + row["test_accuracy_std"]),
            ]
        )
    edge = [c.lines[0].get_markeredgecolor() for c in bars]
    face = [c.lines[0].get_color() for c in bars]
    assert edge[0] == edge[1] != edge[2] == edge[3]  # one colour family per student...
    assert face[0] != face[1]  # ...light for the baseline, dark when distilled
    labels = [text for text in ax.texts]
    assert sorted(t.get_text() for t in labels) == [
        "base v3000",
        "teacher koelectra",
        "tiny v3000",
    ]  # one label each
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["no teacher (α = 1)", "distilled", "teacher"]


def test_crowded_labels_are_moved_apart():
    rows = [
        {
            "model": "base",
            "vocab_size": v,
            "teacher": "none",
            "alpha": 1.0,
            "unlabeled": "none",
            "params": 64 * v + 199_170,
            "test_accuracy_mean": 0.86 + v * 1e-7,
            "test_accuracy_std": None,
            "seeds": 1,
        }
        for v in range(2000, 10000, 1000)
    ]
    fig = bench.plot_accuracy(rows, [])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == 8 and not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_learning_curves_average_seeds_on_integer_epochs(tmp_path):
    def run(teacher, seed, accuracies):
        return {
            "student_size": "tiny",
            "embedding_dim": 8,
            "hidden_dim": 16,
            "vocab_size": 300,
            "teacher": teacher,
            "alpha": 0.1 if teacher else 1.0,
            "temperature": 2.0,
            "unlabeled": None,
            "seed": seed,
            "history": [{"epoch": e, "val_accuracy": a} for e, a in enumerate(accuracies, start=1)],
        }

    runs = [
        run("t/kd", 1, [0.70, 0.80, 0.82]),
        run("t/kd", 2, [0.72, 0.78, 0.84]),
        run(None, 1, [0.69, 0.75, 0.80]),
    ]
    fig = bench.plot_curves(runs, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").is_file()
    ax = fig.axes[0]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["tiny v300 KD a0.1", "tiny v300"]
    distilled, baseline = ax.containers
    assert list(distilled.lines[0].get_ydata()) == pytest.approx([71, 79, 83])  # mean of the two seeds, in %
    (top_of_bars,) = [np.max(s[:, 1]) for s in [np.concatenate(distilled.lines[2][0].get_segments())]]
    assert top_of_bars == pytest.approx(83 + 100 * np.std([0.82, 0.84], ddof=1))
    assert distilled.lines[0].get_linestyle() == "-" and baseline.lines[0].get_linestyle() == "--"
    assert distilled.lines[0].get_color() != baseline.lines[0].get_color()


def test_student_result_times_the_saved_student(results):
    _, out = results
    run_dir = out.parent / "runs" / "nsmc" / "mini-None-s42"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = bench.student_result(metrics, ["정말 재밌어요", "최악의 영화", "그냥 그래요"] * 30)
    assert list(row) == bench.RESULT_COLUMNS
    assert row["kind"] == "baseline" and row["run_dir"] == str(run_dir) and row["test_accuracy"] == 0.69
    assert row["cpu_sentences_per_s"] > 0 and row["cpu_batch1_ms"] > 0


def ladder_run(
    runs: Path, name: str, size: str, seed: int, test: float, prints: object = None, **extra
) -> None:
    """A metrics.json as distil.py writes it (without n_transfer, as runs before it was recorded), and a
    config.json with the teacher's file fingerprints ``prints`` when given."""
    run_dir = runs / "nsmc" / name
    run_dir.mkdir(parents=True, exist_ok=True)  # an existing folder: the run trained again
    metrics = {
        "dataset": "nsmc",
        "teacher": None,
        "vocab_size": 3000,
        "student_size": size,
        "params": 27394,
        "size_bytes": 110504,
        "alpha": 1.0,
        "temperature": 2.0,
        "kd_loss": "kl",
        "unlabeled": None,
        "seed": seed,
        "n_train": 600,
        "epochs_run": 9,
        "best_epoch": 6,
        "val_accuracy": test + 0.01,
        "test_accuracy": test,
        "test_f1": test,
        "train_seconds": 540.0,
        "seconds_per_epoch": 60.0,
        "device": "cpu",
        "device_name": "Some CPU",
        "run_dir": str(run_dir),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics | extra))
    config = {"epochs": 12, "patience": 2 + (seed == 7)}
    if prints:
        config["fingerprints"] = {"data": "d" * 64, "teacher": prints}
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.fixture
def ladder_files(tmp_path, monkeypatch) -> bench.LadderConfig:
    """Three runs (a baseline over two seeds, an ensemble-distilled run with two transfer files), an older
    record of one of them and of another run, a README with the ladder block and a bench run's peers."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs/ladder")
    for name, lines in (("u1.txt", 3), ("u2.txt", 2)):
        Path(name).write_text("".join(f"리뷰 {name} {i}\n" for i in range(lines)), encoding="utf-8")
    ladder_run(runs, "tiny-base-s1", "tiny", 1, 0.80)
    ladder_run(runs, "tiny-base-s2", "tiny", 2, 0.82)
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.885, "teacher_val_accuracy": 0.89}
    kd |= {"unlabeled": "u1.txt+u2.txt", "unlabeled_files": ["u1.txt", "u2.txt"]}
    ladder_run(runs, "tiny-kd-s1", "tiny", 1, 0.86, **kd)
    ladder_run(runs, "tiny-base-s7", "tiny", 7, 0.84)  # patience 3: another protocol, its own row
    ladder_run(Path("runs/members"), "base-v9000", "base", 42, 0.865, vocab_size=9000)
    member = Path("runs/members/nsmc/base-v9000/student")  # a student teacher: its metrics.json is beside it
    member.mkdir()
    (member / "config.json").write_text(json.dumps({"model_type": STUDENT_MODEL_TYPE}))
    ladder_run(runs, "tiny-bilstm-s1", "tiny", 1, 0.85, alpha=0.1, teacher=str(member))
    ladder_run(Path("models"), "nsmc-base", "base", 42, 0.86, run_dir="runs/nsmc/base-baseline")  # bundled
    (runs / "nsmc" / "unfinished").mkdir()
    (runs / "nsmc" / "unfinished" / "metrics.json").write_text(json.dumps({"dataset": "nsmc"}))
    old = pd.DataFrame(
        [
            {"run_dir": "runs/nsmc/elsewhere", "test_accuracy": 0.5},
            {"run_dir": "runs/ladder/nsmc/tiny-base-s1", "test_accuracy": 0.1, "train_seconds": 9.0},
            {"run_dir": "runs/ladder/nsmc/tiny-base-s2", "test_accuracy": 0.82, "train_seconds": 540.0},
        ]
    )
    old.to_csv("runs.csv", index=False)
    Path("README.md").write_text("before\n<!-- ladder:start -->\nold table\n<!-- ladder:end -->\nafter\n")
    peer = {"model": "tfidf-lr (scikit-learn)", "test_accuracy": 0.873, "train_seconds": 61.4}
    peers = [peer | {"batch64_per_s": 1234.5, "size_bytes": 6_620_151}]
    peers.append({"model": "fasttext", "test_accuracy": 0.8658, "train_seconds": 15.0, "batch64_per_s": 9e4})
    peers[-1]["size_bytes"] = 608e6
    machine = {"cpu": "Some CPU", "load_average_at_start": [0.5, 0, 0], "load_average_at_end": [1.25, 0, 0]}
    Path("bench.json").write_text(
        json.dumps({"peers": peers, "machine": machine, "settings": {"threads": 1}})
    )
    return bench.LadderConfig(
        runs=(str(runs), "runs/members", "models"),
        csv="runs.csv",
        bench="bench.json",
        readme="README.md",
        out="ladder.md",
    )


def test_ladder_records_every_run_and_groups_seeds(ladder_files):
    text = bench.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    # tiny-base-s2's earlier record (same training time) was replaced; tiny-base-s1 was trained again (another
    # time): both rows stay, the ladder shows the latest
    assert len(frame) == 9 and list(frame["test_accuracy"][:2]) == [0.5, 0.1]
    assert list(frame["run_dir"]).count("runs/ladder/nsmc/tiny-base-s2") == 1
    assert frame["device_name"].isna().sum() == 2 and set(frame["device_name"].dropna()) == {"Some CPU"}
    latest = frame.drop_duplicates("run_dir", keep="last")
    baseline, patient, bilstm, kd, base, base9000 = bench.ladder_rows(
        latest[latest["run_dir"].str.startswith("runs/")]
    )
    assert (patient["seeds"], patient["test acc (%)"], patient["epochs (patience)"]) == (1, "84.00", "12 (3)")
    assert (bilstm["teacher"], bilstm["test acc (%)"]) == ("base-v9000 (86.50)", "85.00")
    assert (base9000["student"], base9000["seeds"], base9000["test acc (%)"]) == ("base v9000", 1, "86.50")
    assert (base["student"], base["test acc (%)"]) == ("base v3000", "86.00")  # recorded by its run_dir
    assert "| base v3000 | none |" in text and "elsewhere" not in text
    assert (baseline["teacher"], baseline["seeds"], baseline["test acc (%)"]) == ("none", 2, "81.00 ± 1.41")
    assert baseline["transfer set"] == baseline["KD"] == "" and baseline["rows"] == "600"
    assert baseline["epochs (patience)"] == "12 (2)"
    assert (
        kd["teacher"] == "ens2-abcd1234 (88.50)" and "- `ens2-abcd1234` = tfidf-lr-nsmc-1×3 + b×1\n" in text
    )
    assert (kd["KD"], kd["transfer set"], kd["rows"]) == ("KL T2 α0.1", "train + u1 + u2", "605")  # 600+3+2
    assert (kd["s / epoch"], kd["total (min)"], kd["best / last epoch"]) == ("60", "9", "6/9")
    assert Path("ladder.md").read_text(encoding="utf-8") == text + "\n"
    readme = Path("README.md").read_text(encoding="utf-8")
    assert readme.startswith("before\n<!-- ladder:start -->\n| student |") and readme.endswith("-->\nafter\n")
    assert "old table" not in readme and text in readme
    bench.ladder(ladder_files)  # regenerating changes nothing
    assert Path("README.md").read_text(encoding="utf-8") == readme and len(pd.read_csv("runs.csv")) == 9


def test_ladder_keeps_teachers_of_one_name_apart(ladder_files):
    # the same ensemble name and test accuracy, but one member trained again (another machine): its runs
    # are not seeds of the other teacher's row; runs recorded without fingerprints go by test accuracy
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.88}
    runs = Path(ladder_files.runs[0])
    for seed, prints in ((1, ["a" * 64, "b" * 64]), (2, ["a" * 64, "b" * 64]), (3, ["a" * 64, "c" * 64])):
        ladder_run(runs, f"tiny-kd-train-s{seed}", "tiny", seed, 0.85, prints, **kd)
    bench.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    assert frame["teacher_fingerprint"].dropna().nunique() == 2
    rows = bench.ladder_rows(frame[frame["run_dir"].str.contains("tiny-kd")])
    shown = sorted((row["teacher"], row["transfer set"], row["seeds"]) for row in rows)
    first, second = (
        bench.teacher_fingerprint({"fingerprints": {"teacher": ["a" * 64, m * 64]}}) for m in "bc"
    )
    assert first != second
    assert shown == sorted(
        [
            ("ens2-abcd1234 (88.00) [" + first.removeprefix("sha256:") + "]", "train", 2),
            ("ens2-abcd1234 (88.00) [" + second.removeprefix("sha256:") + "]", "train", 1),
            ("ens2-abcd1234 (88.50)", "train + u1 + u2", 1),
        ]
    )
    assert bench.teacher_fingerprint({"epochs": 12}) is None and bench.teacher_fingerprint(None) is None


def test_ladder_keeps_a_folder_trained_again_from_another_teacher(ladder_files):
    # a run folder's name does not hold the teacher's fingerprint: trained again from a rebuilt teacher, the
    # folder's earlier run still counts for its own teacher; trained again from the same teacher, only the
    # latest counts
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.88}
    runs = Path(ladder_files.runs[0])
    ladder_run(runs, "tiny-again", "tiny", 1, 0.84, ["a" * 64], **kd)
    bench.ladder(ladder_files)
    ladder_run(runs, "tiny-again", "tiny", 1, 0.86, ["b" * 64], train_seconds=600.0, **kd)  # rebuilt teacher
    bench.ladder(ladder_files)
    ladder_run(runs, "tiny-again", "tiny", 1, 0.87, ["b" * 64], train_seconds=700.0, **kd)  # same teacher
    bench.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    assert list(frame.loc[frame["run_dir"].str.endswith("tiny-again"), "test_accuracy"]) == [0.84, 0.86, 0.87]
    rows = bench.ladder_rows(frame[frame["run_dir"].str.endswith("tiny-again")])  # as recorded
    assert len(rows) == 2  # the two teachers; the ladder itself keeps each one's latest run
    lines = Path("ladder.md").read_text(encoding="utf-8").splitlines()
    again = "| tiny v3000 | ens2-abcd1234 (88.00) ["
    shown = [line.split(" | ")[6] for line in lines if line.startswith(again)]
    assert sorted(shown) == ["84.00", "87.00"]  # one seed each: 0.86 was replaced by the later 0.87


def test_ladder_shows_the_kd_loss_of_each_row(ladder_files):
    # the same student, teacher and transfer set distilled with KL at two temperatures and with MSE: three
    # rows that differ in their KD cell (the temperature of an MSE run does not matter and is not shown)
    runs = Path(ladder_files.runs[0])
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.88}
    for name, loss in (("kl2", {}), ("kl4", {"temperature": 4.0}), ("mse", {"kd_loss": "mse", "alpha": 0.0})):
        ladder_run(runs, f"tiny-loss-{name}", "tiny", 1, 0.85, ["a" * 64], **(kd | loss))
    bench.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    rows = bench.ladder_rows(frame[frame["run_dir"].str.contains("tiny-loss")])
    assert sorted(row["KD"] for row in rows) == ["KL T2 α0.1", "KL T4 α0.1", "MSE α0"]
    assert {row["teacher"] for row in rows} == {"ens2-abcd1234 (88.00)"}  # told apart without fingerprints


def ladder_accuracies(cfg: bench.LadderConfig, run_dirs: str) -> dict[str, str]:
    """Record the runs, then each ladder row's student cell and test accuracy, of the runs whose folder
    matches the regular expression ``run_dirs``."""
    bench.ladder(cfg)
    frame = pd.read_csv("runs.csv")
    rows = bench.ladder_rows(frame[frame["run_dir"].str.contains(run_dirs)])
    return {row["student"]: row["test acc (%)"] for row in rows}


def test_ladder_keeps_runs_with_other_model_settings_apart(ladder_files):
    # two seeds of the default student and two with max pooling and more dropout: two rows, the second
    # naming what differs (before, the four seeds were averaged into one row)
    runs = Path(ladder_files.runs[0])
    for seed in (1, 2):
        ladder_run(runs, f"tiny-last-s{seed}", "tiny", seed, 0.84)
        ladder_run(runs, f"tiny-max-s{seed}", "tiny", seed, 0.86)
        config = runs / "nsmc" / f"tiny-max-s{seed}" / "config.json"
        changed = {"pooling": "max", "dropout": 0.3, "seed": seed, "lr": 0.002}  # lr is the default
        config.write_text(json.dumps(json.loads(config.read_text()) | changed))
    assert ladder_accuracies(ladder_files, "tiny-last|tiny-max") == {
        "tiny v3000": "84.00 ± 0.00",
        "tiny v3000 (pooling=max dropout=0.3)": "86.00 ± 0.00",
    }


def test_ladder_keeps_datasets_apart(ladder_files):
    # the same baseline trained on NSMC and on the shopping reviews is two rows, each naming its dataset
    runs = Path(ladder_files.runs[0])
    ladder_run(runs, "tiny-nsmc", "tiny", 1, 0.84)
    ladder_run(runs, "tiny-shopping", "tiny", 1, 0.90, dataset="shopping")
    assert ladder_accuracies(ladder_files, "tiny-nsmc|tiny-shopping") == {
        "nsmc: tiny v3000": "84.00",
        "shopping: tiny v3000": "90.00",
    }


def test_ladder_targets_say_met_or_not(ladder_files):
    bench.ladder(ladder_files)
    table = Path("ladder.md").read_text(encoding="utf-8")
    assert "| ensemble teacher ≥ 88.0 % | 88.50 | yes |" in table
    assert "| base ≥ 87.5 % (3 seeds) and > TF-IDF+LR | 86.50 (1 seed) | no |" in table
    assert "| tiny ≥ 85.5 % (3 seeds) | 86.00 (1 seed) | no |" in table  # one seed does not count
    assert "| TF-IDF+LR peer (same bench run) | 87.30 |  |" in table
    assert "| tfidf-lr (scikit-learn) | 87.30 | 61 | 1,234 | 6.62 MB |" in table
    assert "| fasttext | 86.58 | 15 | 90,000 | 608 MB |" in table
    assert "on Some CPU, 1 thread(s), load average 0.50 at the start and 1.25 at the end." in table
    assert [row["best (%)"] for row in bench.ladder_targets([], [])] == ["not run"] * 3
    base = {"_size": "base", "_test": 0.88, "seeds": 2, "_members": "x", "_teacher_test": None}
    assert bench.ladder_targets([base], [])[1]["met"] == "no"  # two seeds and no peer to compare with
    peers = [{"model": "tfidf-lr (scikit-learn)", "test_accuracy": 0.885}]
    assert bench.ladder_targets([base | {"seeds": 3}], peers)[1]["met"] == "no"  # below the peer
    above = [{"model": "tfidf-lr (scikit-learn)", "test_accuracy": 0.87}]
    assert bench.ladder_targets([base | {"seeds": 3}], above)[1]["met"] == "yes"
    # A better row of one seed does not hide the 3-seed row that meets the target.
    lucky = base | {"_test": 0.89, "seeds": 1}
    targets = bench.ladder_targets([lucky, base | {"seeds": 3}], above)
    assert targets[1] == {"target": targets[1]["target"], "best (%)": "88.00 (3 seeds)", "met": "yes"}
    tiny = {"_size": "tiny", "_test": 0.86, "_members": "x", "_teacher_test": None}
    assert [bench.ladder_targets([tiny | {"seeds": n}], [])[2]["met"] for n in (1, 3)] == ["no", "yes"]


def test_ladder_writes_its_files_before_printing(ladder_files, monkeypatch):
    class ClosedPipe(io.StringIO):  # stdout of `bench.py ladder | head -1` once head has exited
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(BrokenPipeError):
        bench.ladder(ladder_files)
    assert Path("ladder.md").read_text(encoding="utf-8").startswith("| student |")
    assert "| tiny v3000 | none |" in Path("README.md").read_text(encoding="utf-8")


def test_ladder_errors_are_one_line(ladder_files, capsys):
    Path("README.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="README.md: needs one <!-- ladder:start --> line before one"):
        bench.main(["ladder", "--runs", *ladder_files.runs, "--csv", "runs.csv", "--readme", "README.md"])
    with pytest.raises(SystemExit, match="no finished run under empty"):
        bench.main(["ladder", "--runs", "empty", "--csv", "other.csv"])
