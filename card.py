"""How a student and its teachers are named and described: the short names of teachers and runs, and the
model card (README.md) of a shareable student folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from utils import count_parameters
from vocab import KIND_NAMES, kind_of

if TYPE_CHECKING:
    from model import Student


def display_name(teacher: str | Path) -> str:
    """Short name of a teacher: the run's name for a student teacher (``runs/x/<run>/student`` -> ``<run>``),
    else the last path or Hub-name component (``monologg/koelectra-small-v3`` -> ``koelectra-small-v3``)."""
    path = Path(str(teacher).rstrip("/\\"))
    name = path.parent.name if path.name == "student" and path.parent.name else path.name
    if not name:
        raise ValueError(f"cannot derive a name from {str(teacher)!r}")
    return name


def teacher_members(metrics: dict) -> str:
    """The teacher as written in the ladder: its short name, or each member's with its weight."""
    members = metrics.get("teachers") or ([metrics["teacher"]] if metrics.get("teacher") else [])
    weights = metrics.get("teacher_weights") or [1] * len(members)
    if len(members) < 2:
        return display_name(members[0]) if members else "none"
    return " + ".join(f"{display_name(m)}×{w:g}" for m, w in zip(members, weights))


def _teacher_text(metrics: dict) -> str:
    """The teacher's name; for an ensemble also its weighted members; its test accuracy when recorded."""
    text = f"`{metrics['teacher']}`"
    if metrics.get("teacher_test_accuracy") is not None:
        text += f" (test {100 * metrics['teacher_test_accuracy']:.2f} %)"
    if len(metrics.get("teachers") or []) > 1:
        text += f", the weighted mean of {teacher_members(metrics)}"
    return text


def student_name(student: Student) -> str:
    """The run name recorded at training time, else the preset size."""
    if student.metrics and student.metrics.get("run_dir"):
        return Path(student.metrics["run_dir"]).name
    if student.training and student.training.get("run"):
        return student.training["run"]
    return f"distilko-bilstm-{student.config.size or 'custom'}"


def _card_rows(student: Student, int8_bytes: int | None) -> list[tuple[str, str]]:
    """The model card's table: task, model, training, tokenizer, data, accuracy and size."""
    config, metrics = student.config, student.metrics or {}
    how = "trained on the labels only (no teacher, α = 1)"
    if metrics.get("teacher"):
        how = (
            f"distilled (α = {metrics.get('alpha')}, T = {metrics.get('temperature')}, "
            f"{metrics.get('kd_loss')} loss; Tang et al. 2019) from the teacher {_teacher_text(metrics)}"
        )
    params = count_parameters(student.model)
    rows = [
        ("task", f"sentiment of Korean text: {' / '.join(student.labels)}"),
        (
            "model",
            (
                f"BiLSTM, embedding {config.embedding_dim}, hidden {config.hidden_dim}, "
                f"{config.pooling} pooling ({config.size or 'custom'} preset), {params:,} parameters"
            ),
        ),
        ("training", how),
        (
            "tokenizer",
            f"{KIND_NAMES[kind_of(student.tokenizer)]}, {len(student.tokenizer):,} tokens, "
            f"at most {config.max_length} per text",
        ),
    ]
    if metrics:
        dataset = metrics.get("dataset")
        unlabeled = metrics.get("unlabeled")
        if unlabeled:
            per_epoch = f" ({metrics['n_transfer']:,} rows per epoch)" if metrics.get("n_transfer") else ""
            unlabeled = f" + unlabeled transfer set `{Path(unlabeled).name}`{per_epoch}"
        rows.append(("data", f"{dataset}: {metrics.get('n_train', 0):,} training examples{unlabeled}"))
        accuracy = f"{100 * metrics['test_accuracy']:.2f} % (macro F1 {100 * metrics['test_f1']:.2f}"
        if metrics.get("test_within_one") is not None:
            accuracy += f", within one class {100 * metrics['test_within_one']:.2f} %"
        rows.append(("test accuracy", f"{accuracy}) on the {dataset} test split as used by DistilKoBiLSTM"))
    sizes = [f"{4 * params / 1e6:.2f} MB float32 weights (model.safetensors)"]
    if int8_bytes:
        sizes.append(f"{int8_bytes / 1e6:.2f} MB int8 ONNX graph (onnx/model-int8.onnx)")
    rows.append(("size", ", ".join(sizes)))
    return rows


def _card_metadata(student: Student, name: str, repo_id: str | None) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    metrics = student.metrics or {}
    dataset = metrics.get("dataset")
    results = None
    if dataset and metrics.get("test_accuracy") is not None:
        results = [
            EvalResult(
                task_type="text-classification",
                dataset_type=dataset,
                dataset_name=dataset.upper(),
                dataset_split="test",
                metric_type="accuracy",
                metric_value=round(metrics["test_accuracy"], 4),
            )
        ]
    data = ModelCardData(
        language="ko",
        library_name="pytorch",
        pipeline_tag="text-classification",
        model_name=repo_id or name,
        tags=["sentiment-analysis", "knowledge-distillation", "bilstm", "onnx", "distilkobilstm"],
        datasets=[dataset] if dataset else None,
        metrics=["accuracy", "f1"] if results else None,
        eval_results=results,
    )
    return data.to_yaml()


def model_card(student: Student, repo_id: str | None = None, int8_bytes: int | None = None) -> str:
    """README.md for a student folder: Hub metadata, task, data, teacher, accuracy, size and how to load."""
    name, rows = student_name(student), _card_rows(student, int8_bytes)
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    where = repo_id or "path/to/this/folder"
    columns, labels = ", ".join(f"p({label})" for label in student.labels), ", ".join(student.labels)
    kiwi = student.tokenizer.init_kwargs.get("pretokenizer")
    morphemes = (
        f" of the texts split into Kiwi morphemes (kiwipiepy {kiwi.get('kiwipiepy')}, model "
        f"{kiwi.get('model_type')}: the tokens' forms joined by spaces; `model.py` does this itself)"
        if kiwi
        else ""
    )
    return f"""---
{_card_metadata(student, name, repo_id)}
---

# {repo_id or name}

A small Korean sentiment classifier made with DistilKoBiLSTM (knowledge distillation of Korean
transformers into BiLSTMs, after gyunggyung/DistilKoBiLSTM). Run name: `{name}`.

| | |
|---|---|
{table}

## How to load

The architecture is DistilKoBiLSTM's own `BiLSTMClassifier` (not a transformers class): load it with the
project's `model.py` (torch, transformers, tokenizers, onnxruntime and huggingface_hub installed).

```python
from model import Student

student = Student.from_pretrained("{where}", backend="onnx-int8")  # or "torch", "onnx"
student.predict_proba(["정말 재밌어요", "시간 아까움"])  # [[{columns}], ...]
student.predict_labels(["정말 재밌어요", "시간 아까움"])  # the predicted label names
```

Without the project: `onnx/model-int8.onnx` takes `input_ids` [batch, time] and `lengths` [batch] (int64;
the ids of `tokenizer.json`{morphemes} without special tokens, right-padded with 0) and returns `logits`
[batch, {len(student.labels)}] ({labels}; config.json's `id2label`).
"""
