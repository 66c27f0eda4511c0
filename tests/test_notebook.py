"""main.ipynb: executed headless, twice, with a tiny configuration injected through DISTILKO_PARAMS.

The first execution runs every stage (data, tokenizers, fine-tuning a tiny teacher, logits cache, distillation
grid, baseline, evaluation); the second must reuse everything: the teacher is neither fine-tuned nor run for
logits again and no student is retrained.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "main.ipynb"
VOCAB_SIZES = [200, 300]
TEACHER_GLOB = "teacher_model/tiny-bert-nsmc-nsmc-*"  # teacher_dir(): <base name>-<dataset>-<hash8>


def kernel_pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def execute(work_dir: Path) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel whose working directory (WORK_DIR) is ``work_dir``; raises if a cell fails."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(work_dir)}}).execute()
    return nb


def text_of(nb: nbformat.NotebookNode, cell_id: str | None = None) -> str:
    """Everything the notebook (or one cell) printed, logged or displayed as text."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code" or (cell_id is not None and cell.get("id") != cell_id):
            continue
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def artefacts(work_dir: Path) -> dict[str, int]:
    """mtime (ns) of everything a rerun must leave alone: the teacher, its logits cache, tokenizers and finished runs."""
    teacher_files = ("teacher.json", "model.safetensors", "logits/*.safetensors")
    patterns = [f"{TEACHER_GLOB}/{name}" for name in teacher_files]
    patterns += ["tokenizer/*/training.json", "runs/nsmc/*/metrics.json"]
    patterns += ["runs/nsmc/*/student/model.safetensors"]
    return {str(p.relative_to(work_dir)): p.stat().st_mtime_ns for pattern in patterns for p in sorted(work_dir.glob(pattern))}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, data_dir, tiny_teacher):
    """(work_dir, first run, artefacts after it, second run, artefacts after it)."""
    work_dir = tmp_path_factory.mktemp("work")
    params = {
        "dataset": "nsmc",
        "data_dir": str(data_dir),
        "teacher_base_model": str(tiny_teacher),  # stands in for a pretrained Hub model: fine-tuned for a few steps
        "teacher_max_steps": 4,
        "teacher_batch_size": 16,
        "teacher_lr": 1e-3,
        "teacher_max_length": 32,
        "vocab_size": VOCAB_SIZES,
        "size": "tiny",
        "alpha": [0.5],
        "epochs": 2,
        "batch_size": 32,
        "lr": 1e-2,
        "warmup_ratio": 0.0,  # a RunConfig field that is not in the parameters cell
        "speed_sentences": 50,
        "show_tensorboard": False,
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISTILKO_PARAMS", json.dumps(params))
        mp.setenv("PYTHONPATH", kernel_pythonpath())  # the kernel finds the project's modules without a clone
        first = execute(work_dir)
        after_first = artefacts(work_dir)
        second = execute(work_dir)
        after_second = artefacts(work_dir)
    return work_dir, first, after_first, second, after_second


def test_every_stage_runs_and_writes_its_results(executed):
    work_dir, first, after_first, _, _ = executed
    out = text_of(first)
    assert "overridden:" in out and "device: " in out
    assert f"working directory: {work_dir.resolve()}" in out

    [teacher_dir] = [p.relative_to(work_dir) for p in work_dir.glob(TEACHER_GLOB)]  # one teacher
    assert [p.name for p in (work_dir / "teacher_model").iterdir()] == [teacher_dir.name]
    teacher = json.loads((work_dir / teacher_dir / "teacher.json").read_text())
    assert teacher["global_step"] == 4 and teacher["dataset"] == "nsmc"
    settings = teacher["identity"]["settings"]
    assert settings["max_steps"] == 4 and settings["max_length"] == 32
    # TensorBoard: the teacher's curves under the same root as the students' runs
    assert list((work_dir / "runs" / "nsmc" / "teachers" / teacher_dir.name).glob("events.out.tfevents.*"))
    caches = sorted(p.name for p in (work_dir / teacher_dir / "logits").iterdir())
    assert caches == [f"nsmc-{s}.safetensors" for s in ("test", "train", "valid")]
    assert "running the teacher" in out  # the cache was built on this first run

    runs = work_dir / "runs" / "nsmc"
    # Readable name plus a hash of the other non-default settings (epochs, lr, ...): one folder per run.
    [distilled, baseline] = [[p for v in VOCAB_SIZES for p in runs.glob(f"tiny-v{v}-{name}-h*")]
                             for name in (f"{teacher_dir.name}-a0.5-T2", "none-a1")]
    assert len(distilled) == len(baseline) == len(VOCAB_SIZES)
    for run_dir in distilled + baseline:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["epochs_run"] == 2 and metrics["run_dir"] == str(run_dir.relative_to(work_dir))
        assert (run_dir / "student" / "model.safetensors").is_file()
    assert json.loads((distilled[0] / "metrics.json").read_text())["teacher"] == str(teacher_dir)

    table = pd.read_csv(runs / "results.csv")
    assert list(table["kind"]) == ["teacher", "distilled", "distilled", "baseline", "baseline"]
    assert set(table["model"][1:]) == {p.name for p in distilled + baseline}
    assert (table["cpu_sentences_per_s"] > 0).all() and table[["val_accuracy", "test_accuracy", "test_f1"]].stack().between(0, 1).all()
    assert table["params"][0] > table["params"][1:].max()  # the teacher is the big one
    baseline_acc = table[table["kind"] == "baseline"]["test_accuracy"]
    assert (baseline_acc > 0.6).all()  # the synthetic reviews are learnable: students really trained

    # The results table, the two plots, the sentence demo and the CLI predict call all produced output.
    assert "results.csv" in text_of(first, "results")
    for cell_id in ("plot-accuracy", "plot-curves"):
        [cell] = [c for c in first.cells if c.get("id") == cell_id]
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell_id
    assert "p(positive)" in text_of(first, "try")
    predictions = [line.split("\t")[0] for line in text_of(first, "export").splitlines() if "\t" in line]
    assert len(predictions) == 2 and set(predictions) <= {"positive", "negative"}


def test_second_execution_reuses_the_teacher_its_cache_and_the_runs(executed):
    _, _, after_first, second, after_second = executed
    assert len(after_first) == 2 + 3 + len(VOCAB_SIZES) + 2 * 4  # teacher files, 3 caches, tokenizers, 4 runs x 2
    assert after_second == after_first  # nothing was rewritten
    out = text_of(second)
    assert "reusing the fine-tuned teacher" in out
    assert "running the teacher" not in out
    for split in ("train", "valid", "test"):
        assert f"teacher logits for nsmc/{split} from cache" in out
    assert out.count("is finished: reusing its metrics") == 2 * len(VOCAB_SIZES)


def test_unknown_parameter_is_refused(tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("DISTILKO_PARAMS", json.dumps({"vocab_sise": [2000]}))
    monkeypatch.setenv("PYTHONPATH", kernel_pythonpath())
    with pytest.raises(CellExecutionError, match="unknown parameter 'vocab_sise': did you mean 'vocab_size'"):
        execute(tmp_path)


def test_committed_notebook_is_clean():
    raw = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    nb = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    nbformat.validate(nb)
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "widgets" not in raw["metadata"]
    tagged = [i for i, c in enumerate(raw["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    params_cell, override_cell = raw["cells"][tagged[0]], raw["cells"][tagged[0] + 1]
    assert "PARAMS = {" in "".join(params_cell["source"])
    assert "DISTILKO_PARAMS" in "".join(override_cell["source"])
    assert "colab.research.google.com/github/" in "".join(raw["cells"][0]["source"])
