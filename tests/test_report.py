"""report.py: the notebook's results rows, their accumulation, the reader's table, the plots.
results_pages.py: the results pages and the README's headline table, written from the measurements."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ladder
import report
import results_pages


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


# -----------------------------------------------------------------------------
# results_pages.py: results/*.md and the README's headline from the measurements

MACHINE = {
    "cpu": "Test CPU 9000",
    "cpus": 2,
    "cpus_available": 2,
    "threads": 1,
    "load_average_at_start": [0.1, 0.1, 0.1],
    "platform": "Linux-test",
    "python": "3.11.7",
    "torch": "2.13.0+cpu",
    "load_average_at_end": [0.2, 0.2, 0.2],
}
README = (
    "# Project\n\nintro\n\n<!-- headline:start -->\nold headline\n<!-- headline:end -->\n\n## Next\ntext\n"
)


def speed_row(model: str, backend: str, per_s: float, **extra) -> dict:
    """A bench.py speed row (end to end and model only, batch 64 and batch 1)."""
    return {
        "model": model,
        "kind": "student",
        "backend": backend,
        "params": 1000,
        "end_to_end_batch1_median_ms": 0.5,
        "end_to_end_batch1_p90_ms": 0.9,
        "end_to_end_batch64_per_s": per_s,
        "model_only_batch1_median_ms": 0.25,
        "model_only_batch64_per_s": 2 * per_s,
    } | extra


def write_results(folder, student):
    """A fake results folder: a bench.py run, a peers run and runs.csv (no load test, no second bench run);
    and a bundled student distilled in one of the recorded runs."""
    folder.mkdir()
    bench = {
        "machine": MACHINE,
        "settings": {"repeats": 3},
        "sentences": {"count": 128, "source": "test reviews", "mean_student_tokens": 20.5},
        "tokenizers": {"student_vocab": 300},
        "speed": [
            speed_row("student-tiny", "onnx-int8", 12345.6),
            speed_row("student-tiny", "torch", 4321.0, end_to_end_batch64_per_s_spread_pct=42.0)
            | {"warning": "UNSTABLE: repeats differ by 42%"},
        ],
        "size": [
            {"model": "student-tiny", "kind": "student", "format": "onnx-int8", "params": 1000, "bytes": 4567}
        ],
        "cache": [
            {
                "teacher": "T",
                "student": "student-base",
                "batch_size": 64,
                "epoch_examples": 1000,
                "steps_per_epoch": 16,
                "measured_student_steps": 5,
                "measured_teacher_batches": 2,
                "epoch_s_with_cache": 12.0,
                "epoch_s_teacher_in_loop": 96.0,
                "speedup": 8.0,
                "cache_build_s": 84.0,
                "extrapolated": True,
            }
        ],
    }
    peer = {
        "model": "tfidf-lr (scikit-learn)",
        "kind": "peer",
        "test_accuracy": 0.87654,
        "train_seconds": 3.0,
    }
    peer |= {"batch1_median_ms": 2.0, "batch64_per_s": 5432.1, "size_bytes": 6_620_125, "features": 371_111}
    (folder / "bench_results.json").write_text(json.dumps(bench))
    (folder / "peers_results.json").write_text(json.dumps({"machine": MACHINE, "peers": [peer]}))
    runs = [
        ladder_record(f"runs/ladder/tiny-s{seed}", "none", seed, acc) for seed, acc in ((1, 0.80), (2, 0.82))
    ]
    runs += [
        ladder_record(f"runs/ladder/tiny-kd-s{s}", "ens2", s, a) for s, a in ((1, 0.84), (2, 0.85), (3, 0.86))
    ]
    pd.DataFrame(runs, columns=ladder.RUN_COLUMNS).to_csv(folder / "runs.csv", index=False)
    (student / "onnx").mkdir(parents=True)
    (student / "onnx" / "model-int8.onnx").write_bytes(b"0" * 86_000)
    metrics = {k: runs[2][k] for k in ("run_dir", "train_seconds", "test_accuracy", "params", "student_size")}
    (student / "metrics.json").write_text(json.dumps(metrics | {"teacher_test_accuracy": 0.88078}))


def ladder_record(run_dir: str, teacher: str, seed: int, test_accuracy: float) -> dict:
    """A results/runs.csv row of a finished tiny v300 run, without a teacher or from a two-member ensemble."""
    distilled = teacher != "none"
    return dict.fromkeys(ladder.RUN_COLUMNS) | {
        "run_dir": run_dir,
        "dataset": "nsmc",
        "teacher": teacher if distilled else None,
        "teacher_members": "a×1 + b×2" if distilled else "none",
        "teacher_test_accuracy": 0.88078 if distilled else None,
        "vocab_size": 300,
        "student_size": "tiny",
        "params": 1000,
        "size_bytes": 4200,
        "alpha": 0.1 if distilled else 1.0,
        "temperature": 2.0,
        "kd_loss": "kl",
        "seed": seed,
        "n_train": 600,
        "n_transfer": 600,
        "epochs_run": 4,
        "best_epoch": 3,
        "val_accuracy": test_accuracy,
        "test_accuracy": test_accuracy,
        "train_seconds": 100.0 + seed,
        "seconds_per_epoch": 25.0,
        "max_epochs": 12,
        "patience": 2,
    }


@pytest.fixture
def pages_config(tmp_path, monkeypatch) -> results_pages.PagesConfig:
    monkeypatch.chdir(tmp_path)
    write_results(tmp_path / "results", tmp_path / "models" / "tiny-kd")
    Path("README.md").write_text(README, encoding="utf-8")
    return results_pages.PagesConfig(results="results", students=("models/tiny-kd",))


def test_results_pages_show_the_measurements_and_their_machine(pages_config, capsys):
    written = results_pages.write_pages(pages_config)
    assert [p.name for p in written] == ["speed.md", "cache.md", "peers.md", "README.md"]
    speed, cache, peers, index = (p.read_text(encoding="utf-8") for p in written)
    for page in (speed, cache, peers, index):
        assert page.startswith("_Generated by `python results_pages.py --students models/tiny-kd` from ")
    assert "| student-tiny | onnx-int8 | 1,000 | 12,346 | 24,691 | 0.5 | 0.9 |" in speed
    assert "4,321 (42 %)" in speed and "UNSTABLE: repeats differ by 42%" in speed  # spread and warning shown
    assert "Test CPU 9000" in speed and "torch 2.13.0+cpu" in speed and "date not recorded" in speed
    assert "| T | student-base | 12 | 96 | 8.0× | 84 |" in cache
    assert "| tfidf-lr (scikit-learn) | 87.65 |" in peers and "features 371,111" in peers
    assert "- [speed.md](speed.md)" in index and "serving.md" not in index
    # the headline: the peer, the student without a teacher (2 seeds), the bundled one (its row's 3 seeds)
    assert "| tfidf-lr (scikit-learn) | 87.65 | 371,111 features | 6.62 MB | 5,432 [1] |" in index
    assert (
        "| tiny v300, no teacher | 81.00 ± 1.41 (2 seeds) | 1,000 | 4.2 KB (safetensors) | 12,346 [2] |"
        in index
    )
    assert "85.00 ± 1.00 (3 seeds); this file 84.00 | 1,000 | 86 KB (int8 ONNX) | 12,346 [2] |" in index
    assert "| ensemble teacher `ens2` | 88.08 |" in index
    notes = capsys.readouterr().err.splitlines()
    assert [n for n in notes if "serve_results.json" in n] == [
        "results_pages.py: skipped results/serve_results.json: no such file"
    ]


def test_the_headline_baseline_is_the_no_teacher_row_best_on_validation(tmp_path):
    # two no-teacher rows of the bundled student, two seeds each: the one better on validation is shown,
    # though the other (patience 3) is better on test
    runs = [ladder_record(f"runs/a-s{s}", "none", s, 0.80) | {"val_accuracy": 0.85} for s in (1, 2)]
    runs += [
        ladder_record(f"runs/b-s{s}", "none", s, 0.84) | {"val_accuracy": 0.82, "patience": 3} for s in (1, 2)
    ]
    runs.append(ladder_record("runs/kd-s1", "ens2", 1, 0.86))
    pd.DataFrame(runs, columns=ladder.RUN_COLUMNS).to_csv(tmp_path / "runs.csv", index=False)
    frame, groups = results_pages.ladder_groups(tmp_path / "runs.csv")
    distilled = next(g for g in groups if g["_members"] != "none")
    row = results_pages.no_teacher_row(distilled, frame, groups, "1,000")
    assert (row["model"], row["test acc (%)"]) == ("tiny v300, no teacher", "80.00 ± 0.00 (2 seeds)")


def test_headline_block_is_replaced_idempotently_leaving_the_rest(pages_config):
    results_pages.write_pages(pages_config)
    once = Path("README.md").read_text(encoding="utf-8")
    head, block = once.split("<!-- headline:start -->\n")
    block, tail = block.split("<!-- headline:end -->")
    assert (
        head == README.split("<!-- headline:start -->")[0]
        and tail == README.split("<!-- headline:end -->")[1]
    )
    assert "old headline" not in block and "| tiny v300, no teacher |" in block
    pages = {p: p.read_text(encoding="utf-8") for p in Path("results").glob("*.md")}
    results_pages.write_pages(pages_config)
    assert Path("README.md").read_text(encoding="utf-8") == once
    assert {p: p.read_text(encoding="utf-8") for p in Path("results").glob("*.md")} == pages


def test_missing_measurement_files_are_skipped_with_a_note(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    cfg = results_pages.PagesConfig(
        results=str(tmp_path / "results"),
        students=(str(tmp_path / "none"),),
        readme=str(tmp_path / "README.md"),
    )
    assert [p.name for p in results_pages.write_pages(cfg)] == ["README.md"]
    notes = capsys.readouterr().err.splitlines()
    for name in (
        "bench_results.json",
        "bench_ladder_results.json",
        "peers_results.json",
        "serve_results.json",
    ):
        assert sum(name in n and "skipped" in n for n in notes) == 1  # one line each, no traceback
    assert not (tmp_path / "README.md").exists()


@pytest.mark.parametrize("kind", [{"student_size": "custom"}, {"tokenizer": "kiwi"}])
def test_a_student_without_a_bench_preset_takes_its_paired_speed_or_a_dash(pages_config, kind):
    metrics_path = Path("models/tiny-kd/metrics.json")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) | kind
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    results_pages.write_pages(pages_config)  # no paired.json: no speed rather than the preset's
    index = Path("results/README.md").read_text(encoding="utf-8")
    assert "this file 84.00 | 1,000 | 86 KB (int8 ONNX) | — |" in index
    row = {"model": "models/tiny-kd", "reference": False, "test_sentences_per_s": 1234.4}
    row["splits"] = {"test": {"examples": 200}}
    machine = MACHINE | {"cpu": "Paired CPU 7"}
    paired_json = {"machine": machine, "settings": {"backend": "torch", "threads": 1}, "rows": [row]}
    Path("results/paired.json").write_text(json.dumps(paired_json), encoding="utf-8")
    results_pages.write_pages(pages_config)
    index = Path("results/README.md").read_text(encoding="utf-8")
    assert "this file 84.00 | 1,000 | 86 KB (int8 ONNX) | 1,234 [2] |" in index
    note = next(line for line in index.splitlines() if line.startswith("- [2]"))
    assert "paired.py" in note and "200 test reviews" in note and "torch, 1 thread(s)" in note
    assert "Paired CPU 7" in note and "`paired.json`" in note
    assert "`results/paired.json`" in index.splitlines()[0]  # among the headline's sources


def test_serving_page_names_the_student_that_served(tmp_path):
    settings = {"backend": "onnx-int8", "student": None, "requests": 10, "time_cap_s": 1.0, "repeats": 1}
    results = {"machine": MACHINE, "settings": settings, "sentences": 4, "rows": [], "targets": []}
    page = results_pages.serve_section(tmp_path / "serve_results.json", results | {"student": "models/a-kd"})
    assert "serve.py (onnx-int8) with `models/a-kd`, requests drawn from 4 sentences" in page
    page = results_pages.serve_section(tmp_path / "serve_results.json", results)  # a file of before
    assert "with its default student of the time (not recorded)" in page


def test_a_preset_student_takes_its_own_paired_speed_before_its_presets_bench_speed(pages_config):
    def kd_row() -> str:
        index = Path("results/README.md").read_text(encoding="utf-8")
        return next(line for line in index.splitlines() if line.startswith("| `models/tiny-kd`"))

    results_pages.write_pages(pages_config)
    assert kd_row().endswith("| 12,346 [2] |")  # no paired.json: bench.py's tiny preset
    row = {"model": "models/tiny-kd", "reference": False, "test_sentences_per_s": 2222.2}
    row["splits"] = {"test": {"examples": 200}}
    paired_json = {"machine": MACHINE, "settings": {"backend": "onnx-int8", "threads": 1}, "rows": [row]}
    Path("results/paired.json").write_text(json.dumps(paired_json), encoding="utf-8")
    results_pages.write_pages(pages_config)
    assert kd_row().endswith(" 2,222 [2] |")  # the student file itself, timed by paired.py
