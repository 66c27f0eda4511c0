"""main.ipynb: executed headless, twice, with a tiny configuration injected through DISTILKO_PARAMS.

The first execution runs every stage (data, tokenizers, fine-tuning a tiny teacher, logits cache, distillation
grid, baseline, evaluation); the second, with one vocabulary size kept and one new, must reuse everything of
the first (the teacher is neither fine-tuned nor run for logits again, no finished student is retrained) and
add its new runs to the first's rows of results.csv. The set-up cell's repository checks run in kernels
of their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import colab
from conftest import NEGATIVE, NEUTRAL, POSITIVE, labelled_reviews

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "main.ipynb"
VOCAB_SIZES = [200, 300]
TEACHER_GLOB = "teacher_model/tiny-bert-nsmc-nsmc-*"  # teacher_dir(): <base name>-<dataset>-<hash8>
SECOND_VOCAB_SIZES = [300, 250]  # the second execution keeps 300 and adds 250: the rows of 200 must stay


def kernel_pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def execute(work_dir: Path, nb: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """Run the notebook (or ``nb``, executed in place) in a fresh kernel whose working directory (WORK_DIR) is
    ``work_dir``; raises if a cell fails."""
    nb = nb if nb is not None else nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(work_dir)}}
    ).execute()
    return nb


def with_settings(source: str, until: str | None = None) -> nbformat.NotebookNode:
    """The notebook with a cell of settings after the parameter cell (as papermill injects them), cut after
    ``until``."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [cell.get("id") for cell in nb.cells]
    nb.cells.insert(ids.index("parameters") + 1, nbformat.v4.new_code_cell(source, id="injected-parameters"))
    if until is not None:
        nb.cells = nb.cells[: ids.index(until) + 2]
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
    """mtime (ns) of everything a rerun must leave alone: the teacher, its logits cache, tokenizers and
    finished runs."""
    teacher_files = ("teacher.json", "model.safetensors", "logits/*.safetensors")
    patterns = [f"{TEACHER_GLOB}/{name}" for name in teacher_files]
    patterns += ["tokenizer/*/training.json", "runs/nsmc/*/metrics.json"]
    patterns += ["runs/nsmc/*/student/model.safetensors"]
    return {
        str(p.relative_to(work_dir)): p.stat().st_mtime_ns
        for pattern in patterns
        for p in sorted(work_dir.glob(pattern))
    }


@pytest.fixture(scope="module")
def executed(tmp_path_factory, data_dir, tiny_teacher):
    """(work_dir, first run, artefacts after it, results.csv after it, second run, artefacts after it)."""
    work_dir = tmp_path_factory.mktemp("work")
    params = {
        "dataset": "nsmc",
        "data_dir": str(data_dir),
        "teacher_base_model": str(
            tiny_teacher
        ),  # stands in for a pretrained Hub model: fine-tuned for a few steps
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
        results_first = pd.read_csv(work_dir / "runs" / "nsmc" / "results.csv")
        mp.setenv("DISTILKO_PARAMS", json.dumps(params | {"vocab_size": SECOND_VOCAB_SIZES}))
        second = execute(work_dir)
        after_second = artefacts(work_dir)
    return work_dir, first, after_first, results_first, second, after_second


def test_every_stage_runs_and_writes_its_results(executed):
    work_dir, first, _, table, _, _ = executed
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
    [distilled, baseline] = [
        [p for v in VOCAB_SIZES for p in runs.glob(f"tiny-v{v}-{name}-h*")]
        for name in (f"{teacher_dir.name}-a0.5-T2", "none-a1")
    ]
    assert len(distilled) == len(baseline) == len(VOCAB_SIZES)
    for run_dir in distilled + baseline:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["epochs_run"] == 2 and metrics["run_dir"] == str(run_dir.relative_to(work_dir))
        assert (run_dir / "student" / "model.safetensors").is_file()
    assert json.loads((distilled[0] / "metrics.json").read_text())["teacher"] == str(teacher_dir)

    assert list(table["kind"]) == ["teacher", "distilled", "distilled", "baseline", "baseline"]
    run_dirs = [str(p.relative_to(work_dir)) for p in distilled + baseline]
    assert list(table["run_dir"]) == [str(teacher_dir), *run_dirs]
    assert (table["cpu_sentences_per_s"] > 0).all() and table[
        ["val_accuracy", "test_accuracy", "test_f1"]
    ].stack().between(0, 1).all()
    assert table["params"][0] > table["params"][1:].max()  # the teacher is the big one
    baseline_acc = table[table["kind"] == "baseline"]["test_accuracy"]
    assert (baseline_acc > 0.6).all()  # the synthetic reviews are learnable: students really trained

    # The reader's table, the two plots, the sentence demo and the CLI predict call all produced output.
    shown = text_of(first, "results")
    assert "results.csv" in shown and "test acc (%)" in shown and "tiny-bert-nsmc-nsmc" in shown
    for cell_id in ("plot-accuracy", "plot-curves"):
        [cell] = [c for c in first.cells if c.get("id") == cell_id]
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell_id
    assert "p(positive)" in text_of(first, "try")
    predictions = [line.split("\t")[0] for line in text_of(first, "export").splitlines() if "\t" in line]
    assert len(predictions) == 2 and set(predictions) <= {"positive", "negative"}


def test_second_execution_reuses_the_teacher_its_cache_and_the_runs(executed):
    _, _, after_first, _, second, after_second = executed
    assert (
        len(after_first) == 2 + 3 + len(VOCAB_SIZES) + 2 * 4
    )  # teacher files, 3 caches, tokenizers, 4 runs x 2
    assert {k: after_second[k] for k in after_first} == after_first  # nothing of the first was rewritten
    assert len(after_second) == len(after_first) + 1 + 2 * 2  # the new vocabulary's tokenizer, 2 runs x 2
    out = text_of(second)
    assert "reusing the fine-tuned teacher" in out
    assert "running the teacher" not in out
    for split in ("train", "valid", "test"):
        assert f"teacher logits for nsmc/{split} from cache" in out
    assert out.count("is finished: reusing its metrics") == 2  # vocab 300: distilled and baseline


def test_results_accumulate_across_executions(executed):
    work_dir, _, _, first, second, _ = executed
    table = pd.read_csv(work_dir / "runs" / "nsmc" / "results.csv")
    assert table["run_dir"].is_unique and len(table) == 1 + 2 * 3  # teacher, 3 vocabs x (distilled, baseline)
    students = table[table["kind"] != "teacher"]
    vocabs = students.groupby("kind")["vocab_size"].apply(lambda v: sorted(v.astype(int))).to_dict()
    assert vocabs == {"distilled": [200, 250, 300], "baseline": [200, 250, 300]}
    kept = table.set_index("run_dir").loc[first["run_dir"], ["params", "test_accuracy"]]
    assert kept.equals(first.set_index("run_dir")[["params", "test_accuracy"]])  # the first's rows, unchanged
    assert "7 rows in" in text_of(second, "results")
    assert text_of(second, "results").count("tiny") >= 6  # the table shows every accumulated student


def test_the_notebook_runs_on_your_own_csv(tmp_path, monkeypatch):
    """A CSV of three string labels (ordered by "labels") instead of NSMC, with the scikit-learn teacher:
    every stage runs, and the runs, tables, predictions and the demo server use its label names."""
    csv = tmp_path / "my_reviews.csv"
    classes = {"부정": NEGATIVE, "중립": NEUTRAL, "긍정": POSITIVE}
    frame = labelled_reviews(900, classes).drop(columns="id")
    frame.rename(columns={"text": "review", "label": "sentiment"}).to_csv(csv, index=False)
    labels = ["부정", "중립", "긍정"]
    params = {
        "data": str(csv),
        "labels": labels,
        "teacher_base_model": "tfidf-lr",
        "vocab_size": [200],
        "size": "tiny",
        "alpha": [0.5],
        "epochs": 6,
        "batch_size": 32,
        "lr": 2e-2,
        "warmup_ratio": 0.0,
        "speed_sentences": 50,
        "show_tensorboard": False,
    }
    monkeypatch.setenv("DISTILKO_PARAMS", json.dumps(params))
    monkeypatch.setenv("PYTHONPATH", kernel_pythonpath())
    (tmp_path / "work").mkdir()
    nb = execute(tmp_path / "work")
    table = pd.read_csv(tmp_path / "work" / "runs" / "my_reviews" / "results.csv")
    assert list(table["kind"]) == ["teacher", "distilled", "baseline"]
    assert (table["test_accuracy"] > 0.6).all()  # three classes: chance is a third
    for run_dir in table["run_dir"][1:]:
        assert json.loads((tmp_path / "work" / run_dir / "metrics.json").read_text())["labels"] == labels
    assert all(f"p({label})" in text_of(nb, "try") for label in labels)
    predictions = [line.split("\t")[0] for line in text_of(nb, "export").splitlines() if "\t" in line]
    assert len(predictions) == 2 and set(predictions) <= set(labels)
    served = [
        line.split()[2] for line in text_of(nb, "serve").splitlines() if line.startswith("POST /predict:")
    ]
    assert len(served) == 2 and set(served) <= set(labels)


def test_unknown_parameter_is_refused(tmp_path, monkeypatch):
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
    assert not any("def " in "".join(c["source"]) for c in code)  # the notebook calls the project's functions
    assert "widgets" not in raw["metadata"]
    tagged = [i for i, c in enumerate(raw["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    params_cell = raw["cells"][tagged[0]]
    for setting in ("REPO_SOURCE = ", "USE_DRIVE = ", "WORK_DIR = None", "PARAMS = {"):  # all in one cell
        assert "".join(params_cell["source"]).count(setting) == 1, setting
    for setting in ("REPO_SOURCE = ", "USE_DRIVE = ", "PARAMS = {"):
        assert not any(setting in "".join(c["source"]) for c in code if c is not params_cell), setting
    ids = [c.get("id") for c in raw["cells"]]
    assert ids.index("parameters") < ids.index("setup") < ids.index("overrides")
    assert "DISTILKO_PARAMS" in "".join(raw["cells"][ids.index("overrides")]["source"])
    assert ids.index("tensorboard") < ids.index("teacher")  # live curves of the teacher's fine-tuning too
    title = "".join(raw["cells"][0]["source"])
    assert "colab.research.google.com/github/YOUR-GITHUB-ACCOUNT/" in title and "REPO_SOURCE" in title
    assert "T4" in title and "CPU" in title and "max_train" in title  # timings and a quick first run
    for cell_id in ("results", "plot-accuracy", "plot-curves"):  # report.py evaluates
        source = "".join(raw["cells"][ids.index(cell_id)]["source"])
        assert "report." in source and len(source.splitlines()) <= 12 and "def " not in source


# -----------------------------------------------------------------------------
# The set-up cell: the repository source


@pytest.mark.parametrize(
    "setting, message",
    [
        ("", "the repository is not here and REPO_SOURCE is empty"),
        ("REPO_SOURCE = 'https://github.com/YOUR-GITHUB-ACCOUNT/DistilKoBiLSTM.git'", "holds a placeholder"),
        ("REPO_SOURCE = 'https://github.com/<account>/DistilKoBiLSTM.git'", "still holds a placeholder"),
        ("REPO_SOURCE = '/nowhere/DistilKoBiLSTM'", "is neither a git URL nor a folder holding distil.py"),
    ],
)
def test_repository_setting_stops_with_one_clear_line(tmp_path, monkeypatch, setting, message):
    # the kernel cannot import the project: REPO_SOURCE is needed
    monkeypatch.delenv("PYTHONPATH", raising=False)
    nb = with_settings(setting, until="setup")
    with pytest.raises(CellExecutionError):
        execute(tmp_path, nb)
    [error] = [o for o in nb.cells[-1].outputs if o.output_type == "error"]
    assert error.ename == "SetupError" and message in error.evalue
    assert error.traceback == [f"SetupError: {error.evalue}"]  # one line, no traceback
    assert (
        "set REPO_SOURCE in the parameter cell" in error.evalue and "REPO_SOURCE를 설정하세요" in error.evalue
    )


def test_repository_folder_is_copied_and_imported(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    nb = execute(tmp_path, with_settings(f"REPO_SOURCE = {str(ROOT)!r}", until="setup"))
    copy = tmp_path / "DistilKoBiLSTM"
    assert (
        f"repository: {copy}" in text_of(nb)
        and (copy / "distil.py").read_text() == (ROOT / "distil.py").read_text()
    )
    assert not (copy / ".git").exists()


# -----------------------------------------------------------------------------
# The set-up's requirement resolver (colab)


def test_missing_requirements(tmp_path):
    import importlib.metadata

    pandas = importlib.metadata.version("pandas")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "\n".join(
            [
                "# a comment",
                "-r other.txt",
                "",
                f"pandas>={pandas}  # installed and new enough",
                "pandas>=999",  # installed but too old
                "torch>=999",  # torch: only when absent (Colab's own CUDA build stays)
                "surely-not-a-package-xyz>=1.0",
                "other-missing ; python_version < '3'",  # marker that does not apply
            ]
        )
        + "\n"
    )
    assert colab.missing_requirements(requirements) == ["pandas>=999", "surely-not-a-package-xyz>=1.0"]
    requirements.write_text("pandas>=2\nnot a requirement!\n")
    with pytest.raises(
        ValueError, match="requirements.txt, line 2: 'not a requirement!' is not a requirement"
    ):
        colab.missing_requirements(requirements)


def test_project_requirements_are_installed_here():
    assert colab.missing_requirements(ROOT / "requirements.txt") == []


def test_colab_imports_nothing_the_set_up_may_install():
    """The set-up imports colab before installing requirements: upgrading a package it had imported would
    leave the old version loaded in the running kernel."""
    import subprocess
    import sys

    code = "import sys, colab; print(sorted(m for m in ('transformers', 'tokenizers', 'onnx', 'onnxruntime', "
    code += "'accelerate', 'sentencepiece', 'safetensors', 'tensorboard') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_demo_server_answers_and_stops_and_push_is_off_by_default(executed):
    _, first, *_ = executed
    served = text_of(first, "serve")
    assert "DistilKoBiLSTM demo: http://127.0.0.1:" in served  # outside Colab: the URL
    predictions = [line for line in served.splitlines() if line.startswith("POST /predict:")]
    assert len(predictions) == 2 and all(line.split()[2] in ("positive", "negative") for line in predictions)
    assert "demo server stopped" in served  # headless: nothing keeps serving after the notebook
    assert "push to the Hugging Face Hub is off" in text_of(first, "push-to-hub")
