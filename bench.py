"""Benchmarks: how fast, how small and how accurate the BiLSTM students are next to their teachers.

    python bench.py [--data-dir /work/shared/data/nsmc] [--runs runs] [--out bench_out] [--quick] [--threads N]

Sections, each printed as a table and saved in <out>/bench_results.json:
1. speed    sentences/s at batch 1 and 64 (and the median batch-1 latency), end to end (text in, label out)
            and model only (token ids in), for every student preset and inference backend and for teacher
            architectures with random weights, on the same NSMC test sentences; ratios student / teacher.
2. size     parameters and bytes on disk, and the reduction factor against each teacher.
3. cache    seconds per distillation epoch with the teacher-logits cache and with the teacher in the loop
            (extrapolated from measured training steps and teacher batches).
4. accuracy the runs in --runs (from `python distil.py student ...`), mean ± std over seeds, and the
            accuracy of their exported forms (ONNX, ONNX int8) on the NSMC test set.
5. plot     test accuracy against parameters (<out>/accuracy_vs_params.png).
6. peers    n-gram models a user would try instead, trained on the same train split and timed on the same
            sentences: scikit-learn TF-IDF + LogisticRegression and fastText (and its quantized form).

Batch 64 means one call per 64 consecutive sample sentences (each call sorts and pads its own), batch 1 one
call per sentence. Every model runs with --threads threads (default 1); speed ratios compare numbers
measured in the same run on the same sentences. Timings on a busy machine are unreliable: the header
prints the CPU, versions and load average.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

import distil
import teacher as teachers
import utils
from model import (
    BACKENDS,
    SIZE_PRESETS,
    BiLSTMClassifier,
    Student,
    StudentConfig,
    count_parameters,
    encode,
    export_onnx,
    pad_ids,
)

BATCH = 64  # the batched setting (and the distillation batch size)
EPOCH_EXAMPLES = 150_000  # an NSMC-sized distillation epoch
STUDENT_VOCAB = 3000
TEACHER_VOCAB = 32000  # the stand-in teacher tokenizer's vocabulary (KLUE-RoBERTa's size)
TEACHER_MAX_LENGTH = 128
INT8_TOLERANCE = 0.002  # an int8 form is kept only within 0.2 accuracy points of the float model


@dataclass
class Settings:
    """What to measure and how much of it."""

    data_dir: str | None = None
    runs: str = "runs"
    out: str = "bench_out"
    teacher_root: str = "teacher_model"
    threads: int = 1
    sentences: int = 1024  # test sentences timed at batch 64
    latency_sentences: int = 256  # of those, timed one by one
    repeats: int = 5  # timing repeats for the students (teachers are timed once)
    presets: tuple[str, ...] = tuple(SIZE_PRESETS)
    exported_presets: tuple[str, ...] = tuple(SIZE_PRESETS)  # presets timed with the ONNX backends too
    tokenizer_texts: int | None = None  # train texts the tokenizers learn from (None: all)
    student_steps: int = 50  # measured distillation steps
    teacher_batches: int = 10  # measured teacher batches per teacher
    eval_sentences: int | None = None  # test sentences for the exported forms' accuracy (None: all)
    seed: int = 0


QUICK = dict(sentences=128, latency_sentences=32, repeats=3, exported_presets=("base",), tokenizer_texts=20_000,
             student_steps=10, teacher_batches=2, eval_sentences=2000)


@dataclass(frozen=True, eq=False)  # hashed by identity: a key of the built models
class TeacherSpec:
    """A teacher architecture, built from its config with random weights (only its shape matters here)."""

    name: str
    model_class: str  # a transformers class name
    config_class: str
    config: dict
    timed: bool = True  # False: size only

    def build(self) -> torch.nn.Module:
        import transformers

        config = getattr(transformers, self.config_class)(num_labels=2, **self.config)
        return getattr(transformers, self.model_class)(config).eval()


ELECTRA_BASE = dict(vocab_size=35000, embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
TEACHERS = (
    TeacherSpec("KoELECTRA-Small-v3", "ElectraForSequenceClassification", "ElectraConfig",
                dict(vocab_size=35000, embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024)),
    TeacherSpec("KLUE-RoBERTa-base", "RobertaForSequenceClassification", "RobertaConfig",
                dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                     max_position_embeddings=514, pad_token_id=0)),
    TeacherSpec("KoELECTRA-Base-v3", "ElectraForSequenceClassification", "ElectraConfig", ELECTRA_BASE, timed=False),
)


# -----------------------------------------------------------------------------
# machine and data


def machine_info(threads: int) -> dict:
    """CPU, threads, load and library versions: what the timings depend on."""
    import onnxruntime
    import tokenizers
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cpus_available": available,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
    }


SYNTHETIC_WORDS = {
    1: ["최고", "재밌어요", "감동", "좋아요", "명작", "추천합니다", "훌륭한", "꿀잼"],
    0: ["최악", "별로", "지루해요", "실망", "노잼", "아까운", "엉망", "비추"],
    None: ["영화", "배우", "스토리", "연기", "진짜", "그냥", "정말", "오늘", "보고", "왔는데", "음악", "감독", "내용", "처음", "마지막", "ㅋㅋ"],
}


def synthetic_reviews(n: int, seed: int) -> pd.DataFrame:
    """Reviews made of filler and sentiment words (as in tests/conftest.py), for runs without --data-dir."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(SYNTHETIC_WORDS[None], k=rng.randint(2, 30)) + rng.choices(SYNTHETIC_WORDS[label], k=rng.randint(1, 3))
        rng.shuffle(words)
        rows.append((f"synthetic-{i}", " ".join(words), label))
    return pd.DataFrame(rows, columns=["id", "text", "label"])


def load_texts(settings: Settings) -> tuple[pd.DataFrame, list[str], str]:
    """Training texts (for the tokenizers and the cache section), the timed test sentences, and their source."""
    if settings.data_dir:
        splits = utils.load_dataset("nsmc", data_dir=settings.data_dir)
        train, test, source = splits["train"], splits["test"], f"NSMC test reviews ({settings.data_dir})"
    else:
        train, test = synthetic_reviews(20_000, settings.seed), synthetic_reviews(settings.sentences, settings.seed + 1)
        source = "SYNTHETIC sentences (no --data-dir): lengths are not NSMC's, speed numbers are indicative only"
    if settings.tokenizer_texts is not None and settings.tokenizer_texts < len(train):
        train = train.sample(n=settings.tokenizer_texts, random_state=settings.seed).reset_index(drop=True)
    sample = test["text"].sample(n=min(settings.sentences, len(test)), random_state=settings.seed).tolist()
    return train, sample, source


def load_tokenizers(train: pd.DataFrame, root: Path):
    """The students' WordPiece tokenizer (vocab 3000) and a stand-in for the teachers' (vocab 32000, [CLS] ... [SEP])."""
    from tokenizers import processors

    student = utils.get_tokenizer(train, STUDENT_VOCAB, "bench", root)
    teacher = utils.get_tokenizer(train, TEACHER_VOCAB, "bench", root)
    cls_id, sep_id = teacher.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    teacher.backend_tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    return student, teacher


# -----------------------------------------------------------------------------
# 1. speed


def time_calls(call: Callable[[list], object], items: list, latency_items: int, repeats: int) -> dict:
    """Batch-1 latency (call per item) and batch-64 throughput (call per 64 items) over the same items."""
    call(items[:BATCH])
    call(items[:1])
    gc.collect()
    latencies = []
    for _ in range(repeats):
        for item in items[:latency_items]:
            start = time.perf_counter()
            call([item])
            latencies.append(time.perf_counter() - start)
    batched = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(items), BATCH):
            call(items[i : i + BATCH])
        batched.append(time.perf_counter() - start)
    return {
        "batch1_median_ms": 1e3 * statistics.median(latencies),
        "batch1_p90_ms": 1e3 * float(np.percentile(latencies, 90)),
        "batch1_per_s": len(latencies) / sum(latencies),
        "batch64_per_s": len(items) / statistics.median(batched),
    }


class TeacherRunner:
    """A transformers classifier behind the same two calls as a student: texts -> labels, token ids -> logits."""

    def __init__(self, model: torch.nn.Module, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=TEACHER_MAX_LENGTH)["input_ids"]

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> list[int]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=TEACHER_MAX_LENGTH, return_tensors="pt")
        return self.model(**batch).logits.argmax(-1).tolist()

    @torch.inference_mode()
    def logits_from_ids(self, ids: list[list[int]]) -> torch.Tensor:
        input_ids, lengths = pad_ids(ids, self.tokenizer.pad_token_id)
        attention_mask = np.arange(input_ids.shape[1]) < lengths[:, None]
        return self.model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask).long()).logits


def speed_row(model: str, kind: str, backend: str, params: int, predict: Callable, from_ids: Callable,
              texts: list[str], ids: list[list[int]], settings: Settings, repeats: int) -> dict:
    """One model's timings, end to end and model only."""
    row = {"model": model, "kind": kind, "backend": backend, "params": params}
    for mode, call, items in (("end_to_end", predict, texts), ("model_only", from_ids, ids)):
        for key, value in time_calls(call, items, settings.latency_sentences, repeats).items():
            row[f"{mode}_{key}"] = value
    print(f"  {model:<20} {backend:<10} {row['end_to_end_batch64_per_s']:>10,.0f} sentences/s at batch 64, "
          f"{row['end_to_end_batch1_median_ms']:.3f} ms at batch 1", flush=True)
    return row


def measure_speed(settings: Settings, texts: list[str], student_tokenizer, teacher_tokenizer,
                  teachers: dict[TeacherSpec, torch.nn.Module]) -> list[dict]:
    """Every student preset x backend and every timed teacher on the same sentences."""
    rows = []
    student_ids = encode(student_tokenizer, texts, StudentConfig.max_length)
    for preset in settings.presets:
        torch.manual_seed(settings.seed)
        model = BiLSTMClassifier(StudentConfig.from_size(preset, len(student_tokenizer)))
        backends = BACKENDS if preset in settings.exported_presets else ("torch",)
        for backend in backends:
            student = Student(model, student_tokenizer, backend=backend, threads=settings.threads)
            rows.append(speed_row(f"student-{preset}", "student", backend, count_parameters(model), student.predict,
                                  student.logits_from_ids, texts, student_ids, settings, settings.repeats))
    for spec, teacher in teachers.items():
        if spec.timed:
            runner = TeacherRunner(teacher, teacher_tokenizer)
            rows.append(speed_row(spec.name, "teacher", "torch", count_parameters(teacher), runner.predict,
                                  runner.logits_from_ids, texts, runner.encode(texts), settings, repeats=1))
    return rows


def speed_ratios(rows: list[dict]) -> list[dict]:
    """Student / teacher throughput, for each student row and timed teacher."""
    keys = ("end_to_end_batch1_per_s", "end_to_end_batch64_per_s", "model_only_batch1_per_s", "model_only_batch64_per_s")
    ratios = []
    for student in (r for r in rows if r["kind"] == "student"):
        for teacher in (r for r in rows if r["kind"] == "teacher"):
            ratio = {"student": student["model"], "backend": student["backend"], "teacher": teacher["model"]}
            ratio.update({k.removesuffix("_per_s") + "_ratio": student[k] / teacher[k] for k in keys})
            ratios.append(ratio)
    return ratios


def check_targets(rows: list[dict], ratios: list[dict]) -> list[dict]:
    """The base student's targets per backend: >= 10,000 sentences/s at batch 64, median batch-1 latency
    < 0.3 ms, >= 500x the largest timed teacher's batch-64 throughput (end to end)."""
    teachers = [r for r in rows if r["kind"] == "teacher"]
    if not teachers:
        return []
    biggest = max(teachers, key=lambda r: r["params"])["model"]
    targets = []
    for row in (r for r in rows if r["model"] == "student-base"):
        ratio = next(r for r in ratios if r["backend"] == row["backend"] and r["teacher"] == biggest and r["student"] == row["model"])
        for mode in ("end_to_end", "model_only"):
            throughput, latency = row[f"{mode}_batch64_per_s"], row[f"{mode}_batch1_median_ms"]
            targets.append({
                "backend": row["backend"], "mode": mode,
                "batch64_per_s": throughput, "batch64_met": throughput >= 10_000,
                "batch1_median_ms": latency, "batch1_met": latency < 0.3,
                f"x_{biggest}_batch64": ratio[f"{mode}_batch64_ratio"], "ratio_met": ratio[f"{mode}_batch64_ratio"] >= 500,
            })
    return targets


# -----------------------------------------------------------------------------
# 2. size


def safetensors_bytes(model: torch.nn.Module) -> int:
    """Size of the model's weights saved as safetensors (float32, as trained)."""
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_model(model, str(path))
        return path.stat().st_size


def measure_size(settings: Settings, student_vocab: int, teachers: dict[TeacherSpec, torch.nn.Module]) -> tuple[list[dict], list[dict]]:
    """Parameters and bytes of each student form and teacher, and the student / teacher reduction factors."""
    rows = []
    for preset in settings.presets:
        model = BiLSTMClassifier(StudentConfig.from_size(preset, student_vocab))
        params = count_parameters(model)
        rows.append({"model": f"student-{preset}", "kind": "student", "format": "safetensors", "params": params, "bytes": safetensors_bytes(model)})
        if preset in settings.exported_presets:
            for backend, quantize in (("onnx", False), ("onnx-int8", True)):
                rows.append({"model": f"student-{preset}", "kind": "student", "format": backend, "params": params,
                             "bytes": len(export_onnx(model, quantize=quantize))})
    for spec, teacher in teachers.items():
        rows.append({"model": spec.name, "kind": "teacher", "format": "safetensors", "params": count_parameters(teacher), "bytes": safetensors_bytes(teacher)})
    reductions = [
        {"student": s["model"], "format": s["format"], "teacher": t["model"],
         "params_reduction": t["params"] / s["params"], "bytes_reduction": t["bytes"] / s["bytes"]}
        for s in rows if s["kind"] == "student" for t in rows if t["kind"] == "teacher"
    ]
    return rows, reductions


# -----------------------------------------------------------------------------
# 3. the logits cache


def measure_cache(settings: Settings, train: pd.DataFrame, student_tokenizer, teacher_tokenizer,
                  teachers: dict[TeacherSpec, torch.nn.Module]) -> list[dict]:
    """Seconds per epoch of base-student distillation with cached teacher logits and with the teacher run in
    the loop, extrapolated to EPOCH_EXAMPLES from measured student steps and teacher batches."""
    rng = np.random.default_rng(settings.seed)
    n = min(len(train), BATCH * max(settings.student_steps, settings.teacher_batches))
    texts = train["text"].sample(n=n, random_state=settings.seed).tolist()
    labels = torch.tensor(rng.integers(0, 2, n))
    student_ids = encode(student_tokenizer, texts, StudentConfig.max_length)
    batches = distil.bucket_batches(np.array([len(s) for s in student_ids]), BATCH, rng)

    torch.manual_seed(settings.seed)
    model = BiLSTMClassifier(StudentConfig.from_size("base", len(student_tokenizer))).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    cached_logits = torch.randn(n, 2)  # what a lookup in the cache returns

    def student_step(idx: np.ndarray) -> None:
        input_ids, lengths = pad_ids([student_ids[i] for i in idx])
        logits = model(torch.from_numpy(input_ids), torch.from_numpy(lengths))
        loss, _, _ = distil.distillation_loss(logits, labels[idx], cached_logits[idx], 0.1, 2.0, "kl")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    student_seconds = mean_seconds(student_step, cycle(batches, settings.student_steps))
    steps = math.ceil(EPOCH_EXAMPLES / BATCH)
    rows = []
    for spec, teacher in ((s, t) for s, t in teachers.items() if s.timed):
        runner = TeacherRunner(teacher, teacher_tokenizer)
        teacher_ids = runner.encode(texts)
        teacher_seconds = mean_seconds(lambda idx: runner.logits_from_ids([teacher_ids[i] for i in idx]),
                                       cycle(batches, settings.teacher_batches))
        rows.append({
            "teacher": spec.name, "student": "student-base", "batch_size": BATCH, "epoch_examples": EPOCH_EXAMPLES,
            "steps_per_epoch": steps, "measured_student_steps": settings.student_steps, "measured_teacher_batches": settings.teacher_batches,
            "student_step_s": student_seconds, "teacher_batch_s": teacher_seconds,
            "epoch_s_with_cache": steps * student_seconds, "epoch_s_teacher_in_loop": steps * (student_seconds + teacher_seconds),
            "speedup": (student_seconds + teacher_seconds) / student_seconds,
            "cache_build_s": steps * teacher_seconds, "extrapolated": True,
        })
    return rows


def cycle(items: list, n: int) -> list:
    """The first n items, repeating the list if it is shorter."""
    return [items[i % len(items)] for i in range(n)]


def mean_seconds(step: Callable[[np.ndarray], object], batches: list[np.ndarray]) -> float:
    """Mean wall time of step over batches, after one untimed warm-up step."""
    step(batches[0])
    start = time.perf_counter()
    for idx in batches:
        step(idx)
    return (time.perf_counter() - start) / len(batches)


# -----------------------------------------------------------------------------
# 4. accuracy


GROUP_KEYS = ["dataset", "teacher", "vocab_size", "student_size", "embedding_dim", "hidden_dim", "alpha", "temperature", "kd_loss", "unlabeled", "n_train"]
METRICS = ["val_accuracy", "test_accuracy", "test_f1"]


def read_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per finished run: every metrics.json under runs_dir that has the accuracy fields."""
    rows = []
    for path in sorted(Path(runs_dir).glob("**/metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if all(metrics.get(k) is not None for k in METRICS + ["params"]):
            rows.append({k: metrics.get(k) for k in GROUP_KEYS + METRICS + ["params", "seed"]} | {"run_dir": str(path.parent)})
    return pd.DataFrame(rows, columns=GROUP_KEYS + METRICS + ["params", "seed", "run_dir"])


def accuracy_table(runs: pd.DataFrame) -> list[dict]:
    """Runs grouped by everything but the seed: mean and std (over seeds) of each accuracy metric."""
    table = []
    for key, group in runs.fillna({"teacher": "none", "unlabeled": "none", "n_train": "all"}).groupby(GROUP_KEYS, dropna=False, sort=False):
        first = group.iloc[0]
        row = {
            "model": first["student_size"] if first["student_size"] != "custom" else f"e{first['embedding_dim']}h{first['hidden_dim']}",
            "teacher": distil.teacher_label(str(first["teacher"])), "alpha": first["alpha"],
            "unlabeled": Path(first["unlabeled"]).name if first["unlabeled"] != "none" else "none", "vocab_size": int(first["vocab_size"]),
            "params": int(first["params"]), "dataset": first["dataset"], "n_train": first["n_train"], "seeds": len(group),
        }
        for metric in METRICS:
            row[f"{metric}_mean"] = float(group[metric].mean())
            row[f"{metric}_std"] = float(group[metric].std()) if len(group) > 1 else None
        row["run_dirs"] = group["run_dir"].tolist()
        table.append(row)
    return sorted(table, key=lambda r: (r["params"], r["teacher"], r["alpha"]))


def teacher_accuracies(runs: pd.DataFrame, teacher_root: str | Path) -> list[dict]:
    """Test accuracy and size of the fine-tuned teachers named in the runs, from their teacher.json."""
    from safetensors import safe_open

    found = []
    for name in sorted(set(runs["teacher"].dropna())):
        directory = next((d for d in (Path(name), Path(teacher_root) / name) if (d / "teacher.json").is_file()), None)
        if directory is None:
            continue
        info = json.loads((directory / "teacher.json").read_text(encoding="utf-8"))
        params = 0
        for weights in directory.glob("model*.safetensors"):
            with safe_open(str(weights), framework="pt") as f:
                params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        if info.get("test_accuracy") is not None and params:
            found.append({"teacher": distil.teacher_label(name), "test_accuracy": info["test_accuracy"], "params": params})
    return found


def exported_accuracy(settings: Settings, runs: pd.DataFrame) -> list[dict]:
    """Accuracy of each backend on the NSMC test set, for the best run (by validation accuracy) of each size."""
    if not settings.data_dir or runs.empty:
        return []
    test = utils.load_dataset("nsmc", data_dir=settings.data_dir)["test"]
    if settings.eval_sentences is not None and settings.eval_sentences < len(test):
        test = test.sample(n=settings.eval_sentences, random_state=settings.seed)
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    nsmc = runs[runs["dataset"] == "nsmc"]
    best = nsmc.loc[nsmc.groupby(["student_size", "params"])["val_accuracy"].idxmax()] if not nsmc.empty else nsmc
    rows = []
    for _, run in best.iterrows():
        student_dir = Path(run["run_dir"]) / "student"
        if not (student_dir / "model.safetensors").is_file():
            continue  # metrics kept without weights (e.g. copied back from another machine)
        accuracy = {}
        for backend in BACKENDS:
            student = Student.from_pretrained(student_dir, backend=backend, threads=settings.threads)
            accuracy[backend] = float(np.mean(np.array(student.predict(texts, batch_size=256)) == labels))
        for backend in BACKENDS:
            delta = accuracy[backend] - accuracy["torch"]
            rows.append({"run": Path(run["run_dir"]).name, "backend": backend, "test_sentences": len(texts),
                         "accuracy": accuracy[backend], "delta_points": 100 * delta, "within_0.2_points": abs(delta) <= INT8_TOLERANCE})
    return rows


# -----------------------------------------------------------------------------
# 5. plot


def plot_accuracy(table: list[dict], teachers: list[dict], path: Path) -> Path:
    """Test accuracy against parameters (log x): students by teacher, teachers as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_teacher: dict[str, list[dict]] = {}
    for row in table:
        by_teacher.setdefault(row["teacher"], []).append(row)
    for teacher, rows in by_teacher.items():
        ax.errorbar([r["params"] for r in rows], [100 * r["test_accuracy_mean"] for r in rows],
                    yerr=[100 * (r["test_accuracy_std"] or 0) for r in rows], fmt="o", capsize=3,
                    label="no teacher" if teacher == "none" else f"student of {teacher}")
        for r in rows:
            ax.annotate(f"{r['model']} a={r['alpha']:g}" + ("+unlabeled" if r["unlabeled"] != "none" else ""), (r["params"], 100 * r["test_accuracy_mean"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    for t in teachers:
        ax.scatter([t["params"]], [100 * t["test_accuracy"]], marker="*", s=150, label=f"teacher {t['teacher']}")
    if not table and not teachers:
        ax.text(0.5, 0.5, "no finished runs found", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against size")
    ax.grid(True, which="both", alpha=0.3)
    if table or teachers:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -----------------------------------------------------------------------------
# 6. peers: what a user would pick instead (n-gram models), measured beside the students


def _field(default, text: str, **kwargs):
    return dataclasses.field(default=default, metadata={"help": text}, **kwargs)


@dataclass
class PeersConfig:
    """The n-gram peers: scikit-learn TF-IDF + LR (the scikit-learn teacher's pipeline) and fastText."""

    tfidf_lr: teachers.SklearnTeacherConfig = dataclasses.field(
        default_factory=teachers.SklearnTeacherConfig,
        metadata={"help": "the TF-IDF + logistic regression settings (teacher.SklearnTeacherConfig)"})
    fasttext_dim: int = _field(64, "fastText word vector size")
    fasttext_word_ngrams: int = _field(2, "fastText word n-grams (2: bigrams)")
    fasttext_minn: int = _field(2, "shortest fastText character n-gram")
    fasttext_maxn: int = _field(4, "longest fastText character n-gram")
    fasttext_epochs: int = _field(10, "fastText training epochs")
    fasttext_bucket: int = _field(2_000_000, "fastText n-gram hash buckets")
    quantize_cutoff: int = _field(100_000, "words and n-grams kept by quantized fastText (then retrained)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "tfidf_lr" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"PeersConfig.{f.name} must be a positive integer, got {value!r}")
        if self.fasttext_minn > self.fasttext_maxn or self.fasttext_dim % 2:
            raise ValueError("PeersConfig needs fasttext_minn <= fasttext_maxn and an even fasttext_dim (for "
                             f"quantization); got minn {self.fasttext_minn}, maxn {self.fasttext_maxn}, "
                             f"dim {self.fasttext_dim}")


def _files_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _peer_row(model: str, predict: Callable[[list[str]], list[int]], test: pd.DataFrame, texts: list[str],
              settings: Settings, train_seconds: float, size_bytes: int, **extra) -> dict:
    """Test accuracy, train time, timings on the students' sentences and size of one peer."""
    accuracy = float(np.mean(np.array(predict(test["text"].tolist())) == test["label"].to_numpy()))
    timing = time_calls(predict, texts, settings.latency_sentences, settings.repeats)
    print(f"  {model:<24} test accuracy {accuracy:.4f}, {timing['batch64_per_s']:>9,.0f} sentences/s at "
          f"batch {BATCH}, {size_bytes / 1e6:,.1f} MB", flush=True)
    return {"model": model, "kind": "peer", "test_accuracy": accuracy, "train_seconds": train_seconds,
            **timing, "size_bytes": size_bytes, **extra}


def measure_tfidf_lr(settings: Settings, cfg: teachers.SklearnTeacherConfig, train: pd.DataFrame,
                     test: pd.DataFrame, texts: list[str], tmp: Path) -> dict:
    """The scikit-learn teacher's pipeline as a peer; its size is that of the saved teacher (skops + JSON)."""
    pipeline = teachers.build_sklearn_pipeline(cfg)
    start = time.perf_counter()
    pipeline.fit(train["text"].tolist(), train["label"].to_numpy())
    train_seconds = time.perf_counter() - start
    directory = tmp / "tfidf-lr"
    directory.mkdir()
    teachers.save_sklearn_pipeline(pipeline, directory)
    features = int(pipeline.named_steps["classifier"].coef_.shape[1])
    return _peer_row("tfidf-lr (scikit-learn)", lambda batch: pipeline.predict(batch).tolist(), test, texts,
                     settings, train_seconds, _files_bytes(directory), features=features)


def _fasttext_predict(model) -> Callable[[list[str]], list[int]]:
    def predict(batch: list[str]) -> list[int]:
        labels, _ = model.predict([" ".join(text.split()) for text in batch])
        return [int(label[0].removeprefix("__label__")) for label in labels]

    return predict


def measure_fasttext(settings: Settings, cfg: PeersConfig, train: pd.DataFrame, test: pd.DataFrame,
                     texts: list[str], tmp: Path) -> list[dict]:
    """fastText supervised, then its quantized form (product quantization, retrained on the kept n-grams).

    Not in a process that has built a Kiwi analyser (augment.py): fastText training then hits NaN
    (kiwipiepy 0.24.1, fasttext-numpy2-wheel)."""
    import fasttext

    train_file = tmp / "fasttext-train.txt"
    pairs = zip(train["text"], train["label"])
    lines = (f"__label__{label} {' '.join(text.split())}\n" for text, label in pairs)
    train_file.write_text("".join(lines), encoding="utf-8")
    options = {"dim": cfg.fasttext_dim, "wordNgrams": cfg.fasttext_word_ngrams, "minn": cfg.fasttext_minn,
               "maxn": cfg.fasttext_maxn, "epoch": cfg.fasttext_epochs, "bucket": cfg.fasttext_bucket}
    start = time.perf_counter()
    model = fasttext.train_supervised(input=str(train_file), thread=settings.threads, verbose=0, **options)
    train_seconds = time.perf_counter() - start
    model.save_model(str(tmp / "fasttext.bin"))
    rows = [_peer_row("fasttext", _fasttext_predict(model), test, texts, settings, train_seconds,
                      (tmp / "fasttext.bin").stat().st_size, options=options)]
    start = time.perf_counter()
    model.quantize(input=str(train_file), qnorm=True, retrain=True, cutoff=cfg.quantize_cutoff,
                   thread=settings.threads, verbose=0)
    quantize_seconds = time.perf_counter() - start
    model.save_model(str(tmp / "fasttext.ftz"))
    rows.append(_peer_row("fasttext quantized", _fasttext_predict(model), test, texts, settings,
                          train_seconds + quantize_seconds, (tmp / "fasttext.ftz").stat().st_size,
                          quantize_seconds=quantize_seconds, cutoff=cfg.quantize_cutoff))
    return rows


def measure_peers(settings: Settings, train: pd.DataFrame, test: pd.DataFrame, texts: list[str],
                  cfg: PeersConfig | None = None) -> list[dict]:
    """Both peers trained on ``train``, scored on all of ``test`` and timed on ``texts`` (the students'
    sentences, in calls of 64 and of 1 as in section 1) with ``settings.threads`` threads."""
    cfg = cfg or PeersConfig()
    train = train[train["label"] >= 0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure_tfidf_lr(settings, cfg.tfidf_lr, train, test, texts, Path(tmp))]
        rows += measure_fasttext(settings, cfg, train, test, texts, Path(tmp))
    return rows


def peer_data(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All train and test rows for the peers: NSMC's (the students' split) with --data-dir, else synthetic."""
    if settings.data_dir:
        splits = utils.load_dataset("nsmc", data_dir=settings.data_dir)
        return splits["train"], splits["test"]
    return synthetic_reviews(20_000, settings.seed), synthetic_reviews(5_000, settings.seed + 2)



# -----------------------------------------------------------------------------
# driver


def show(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    print(f"\n== {title}")
    if not rows:
        print("  (nothing to show)")
        return
    frame = pd.DataFrame(rows)
    print(frame[columns or list(frame.columns)].to_string(index=False, float_format=lambda x: f"{x:,.4g}"))


def run(settings: Settings, teachers: Sequence[TeacherSpec] = TEACHERS) -> dict:
    """Every section; prints the tables, writes <out>/bench_results.json and the plot, and returns the JSON's content."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.threads)
    machine = machine_info(settings.threads)
    print(f"machine: {machine['cpu']}, {machine['cpus_available']} of {machine['cpus']} CPUs, {settings.threads} threads "
          f"(torch and onnxruntime), load average {machine['load_average_at_start']}")
    print(f"python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
          f"onnxruntime {machine['onnxruntime']}, tokenizers {machine['tokenizers']}")
    if machine["load_average_at_start"][0] > machine["cpus_available"] / 2:
        print("WARNING: other processes keep this machine busy: timings are unreliable, multi-threaded ones most")

    train, texts, source = load_texts(settings)
    student_tokenizer, teacher_tokenizer = load_tokenizers(train, out / "tokenizer")
    lengths = [len(s) for s in encode(student_tokenizer, texts, StudentConfig.max_length)]
    print(f"sentences: {len(texts)} {source}; {np.mean(lengths):.1f} student tokens on average (max {max(lengths)}); "
          f"student vocabulary {len(student_tokenizer)} (asked for {STUDENT_VOCAB}), trained on {len(train):,} texts")
    print("teachers: random weights in their real shapes; their tokenizer is a stand-in WordPiece of "
          f"{len(teacher_tokenizer)} tokens trained on the same texts")

    built = {spec: spec.build() for spec in teachers}  # built once, used by sections 1-3

    print("\n== 1. speed (timing; sentences/s, wall clock)")
    speed = measure_speed(settings, texts, student_tokenizer, teacher_tokenizer, built)
    ratios = speed_ratios(speed)
    targets = check_targets(speed, ratios)
    show("1. speed: end to end (text in, label out) and model only (token ids in)", speed,
         ["model", "backend", "params", "end_to_end_batch1_median_ms", "end_to_end_batch1_per_s", "end_to_end_batch64_per_s",
          "model_only_batch1_median_ms", "model_only_batch64_per_s"])
    show("1. speed ratios, student / teacher (same run, same sentences)", ratios)
    show("1. targets for the base student", targets)

    size, reductions = measure_size(settings, len(student_tokenizer), built)
    show("2. size", size)
    show("2. size reduction, teacher / student", reductions)

    cache = measure_cache(settings, train, student_tokenizer, teacher_tokenizer, built)
    del built
    show(f"3. seconds per distillation epoch on this CPU ({EPOCH_EXAMPLES:,} examples, batch {BATCH}; EXTRAPOLATED from "
         "measured training steps and teacher forward passes)", cache,
         ["teacher", "student_step_s", "teacher_batch_s", "epoch_s_with_cache", "epoch_s_teacher_in_loop", "speedup", "cache_build_s"])

    runs = read_runs(settings.runs)
    accuracy = accuracy_table(runs)
    teacher_accuracy = teacher_accuracies(runs, settings.teacher_root)
    exported = exported_accuracy(settings, runs)
    show(f"4. accuracy of the runs in {settings.runs} (mean and std over seeds)", accuracy,
         ["model", "teacher", "alpha", "unlabeled", "vocab_size", "params", "seeds", "val_accuracy_mean", "test_accuracy_mean", "test_accuracy_std", "test_f1_mean"])
    show("4. teachers", teacher_accuracy)
    show("4. accuracy of the exported forms (NSMC test)", exported)

    print("\n== 6. peers (training and timing)")
    peers = measure_peers(settings, *peer_data(settings), texts)
    show(f"6. peers: n-gram models trained and timed in this run ({settings.threads} threads)", peers,
         ["model", "test_accuracy", "train_seconds", "batch64_per_s", "batch1_median_ms", "size_bytes"])

    plot = plot_accuracy(accuracy, teacher_accuracy, out / "accuracy_vs_params.png")
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {
        "machine": machine, "settings": dataclasses.asdict(settings), "sentences": {"source": source, "count": len(texts),
        "mean_student_tokens": float(np.mean(lengths))}, "teachers": [dataclasses.asdict(t) for t in teachers],
        "tokenizers": {"student_vocab": len(student_tokenizer), "teacher_stand_in_vocab": len(teacher_tokenizer), "trained_on_texts": len(train)},
        "speed": speed, "speed_ratios": ratios, "targets": targets, "size": size, "size_reduction": reductions,
        "cache": cache, "accuracy": accuracy, "teacher_accuracy": teacher_accuracy, "exported_accuracy": exported, "plot": str(plot),
        "peers": peers,
    }
    text = json.dumps(results, indent=2, ensure_ascii=False, default=lambda x: x.item() if isinstance(x, np.generic) else str(x))
    (out / "bench_results.json").write_text(text + "\n", encoding="utf-8")
    print(f"\nwrote {out / 'bench_results.json'} and {plot}; load average at the end {machine['load_average_at_end']}")
    return json.loads(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder with NSMC's ratings_train.txt and ratings_test.txt (else synthetic text)")
    parser.add_argument("--runs", default="runs", help="where distil.py wrote its runs (default: %(default)s)")
    parser.add_argument("--out", default="bench_out", help="where results go (default: %(default)s)")
    parser.add_argument("--teacher-root", default="teacher_model", help="where fine-tuned teachers live (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="fewer sentences and repeats, ONNX forms of the base student only")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and onnxruntime threads per model (default: %(default)s, robust on a shared machine; "
                             "on a quiet one also try the number of cores)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    settings = Settings(data_dir=args.data_dir, runs=args.runs, out=args.out, teacher_root=args.teacher_root,
                        threads=args.threads, **(QUICK if args.quick else {}))
    return run(settings)


if __name__ == "__main__":
    main(sys.argv[1:])
