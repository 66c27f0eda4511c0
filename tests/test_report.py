"""report.py: the notebook's results rows, their accumulation, the reader's table, the plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import report


def result_row(run_dir: str, kind: str = "baseline", **values) -> dict:
    """A results row as student_result / teacher_result write it (tiny student, vocab 300, seed 42)."""
    teacher = None if kind == "baseline" else "teachers/kd-teacher"
    row = dict.fromkeys(report.RESULT_COLUMNS) | {
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
    assert report.accumulate_results([], path).empty  # nothing yet: an empty table with its header
    assert pd.read_csv(path).columns.tolist() == report.RESULT_COLUMNS
    first = report.accumulate_results([result_row("a"), result_row("b", test_accuracy=0.70)], path)
    assert list(first["run_dir"]) == ["a", "b"]
    second = report.accumulate_results([result_row("b", test_accuracy=0.72), result_row("c")], path)
    assert list(second["run_dir"]) == ["a", "b", "c"]  # a kept, b replaced by its latest row, c added
    assert second.set_index("run_dir")["test_accuracy"].to_dict() == {"a": 0.75, "b": 0.72, "c": 0.75}
    on_disk = pd.read_csv(path)
    assert list(on_disk.columns) == report.RESULT_COLUMNS and list(on_disk["run_dir"]) == ["a", "b", "c"]
    assert not list(path.parent.glob("*.tmp*"))  # written atomically, nothing left behind
    # a file written by an older version (fewer columns) is read and completed, not rejected
    on_disk.drop(columns=["cpu_batch1_ms"]).to_csv(path, index=False)
    assert report.accumulate_results([], path)["cpu_batch1_ms"].isna().all()


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
    table = report.results_table(pd.DataFrame(rows, columns=report.RESULT_COLUMNS))
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
    fig = report.plot_accuracy(
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
    fig = report.plot_accuracy(rows, [])
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
    fig = report.plot_curves(runs, tmp_path / "curves.png")
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
