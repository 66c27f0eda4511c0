"""Benchmarks: how fast, how small and how accurate the BiLSTM students are next to their teachers.

    python bench.py [--data-dir /work/shared/data/nsmc] [--runs runs] [--out bench_out] [--quick]
                    [--threads N]

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
7. serving  `python bench.py serve [--student DIR]`: a bounded load test of serve.py on 127.0.0.1 (requests/s,
            sentences/s, p50/p99 latency for single sentences at concurrency 1/16/64, 64-text requests and
            GET /health as the ceiling), with and without micro-batching (<out>/serve_results.json).
8. ladder   `python bench.py ladder [--runs runs/ladder] [--bench F] [--readme README.md]`: records every
            finished run in results/runs.csv and regenerates the accuracy ladder from it (mean ± std over
            seeds, transfer-set rows, seconds per epoch, total time) with issue 10's targets, met or not.

Every timing is the median over repeats with its spread; rows measured while the machine was busy (load
average above half the CPUs) or whose repeats disagree are flagged in a "warning" column.

Batch 64 means one call per 64 consecutive sample sentences (each call sorts and pads its own), batch 1 one
call per sentence. Every model runs with --threads threads (default 1); speed ratios compare numbers
measured in the same run on the same sentences. Timings on a busy machine are unreliable: the header
prints the CPU, versions and load average.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import corpus
import distil
import teacher as teachers
import utils
from model import (
    BACKENDS,
    SIZE_PRESETS,
    BiLSTMClassifier,
    Student,
    StudentConfig,
    bundled_student,
    count_parameters,
    display_name,
    encode,
    export_onnx,
    is_student_dir,
    pad_ids,
    read_student_info,
    teacher_members,
)
from settings import add_arguments, setting, validate_fields
from vocab import get_tokenizer

BATCH = 64  # the batched setting (and the distillation batch size)
EPOCH_EXAMPLES = 150_000  # an NSMC-sized distillation epoch
STUDENT_VOCAB = 3000
TEACHER_VOCAB = 32000  # the stand-in teacher tokenizer's vocabulary (KLUE-RoBERTa's size)
TEACHER_MAX_LENGTH = 128
INT8_TOLERANCE = 0.002  # an int8 form is kept only within 0.2 accuracy points of the float model


@dataclass
class Settings:
    """What to measure and how much of it (the command line is generated from these fields)."""

    data_dir: str | None = setting(
        None, "folder with NSMC's ratings_train.txt and ratings_test.txt (else synthetic text)"
    )
    data: str | None = setting(
        None, "your own reviews instead of NSMC (distil.py --data: a file or folder; columns guessed)"
    )
    runs: str = setting("runs", "where distil.py wrote its runs")
    out: str = setting("bench_out", "where results go")
    teacher_root: str = setting("teacher_model", "where fine-tuned teachers live")
    threads: int = setting(
        1,
        "torch and onnxruntime threads per model (1 is robust on a shared machine; on a quiet one also "
        "try the number of cores)",
        bounds="[1, inf)",
    )
    sentences: int = setting(1024, "test sentences timed at batch 64", bounds="[1, inf)")
    latency_sentences: int = setting(256, "of those, timed one by one", bounds="[1, inf)")
    repeats: int = setting(5, "timing repeats for the students (teachers are timed once)", bounds="[1, inf)")
    presets: tuple[str, ...] = setting(tuple(SIZE_PRESETS), "student presets timed", choices=SIZE_PRESETS)
    exported_presets: tuple[str, ...] = setting(
        tuple(SIZE_PRESETS), "presets timed with the ONNX backends too", choices=SIZE_PRESETS
    )
    tokenizer_texts: int | None = setting(
        None, "train texts the tokenizers learn from (default: all)", bounds="[1, inf)"
    )
    student_steps: int = setting(50, "measured distillation steps", bounds="[1, inf)")
    teacher_batches: int = setting(10, "measured teacher batches per teacher", bounds="[1, inf)")
    eval_sentences: int | None = setting(
        None, "test sentences for the exported forms' accuracy (default: all)", bounds="[1, inf)"
    )
    seed: int = setting(0, "random seed", bounds="[0, 4294967295]")

    def __post_init__(self) -> None:
        validate_fields(self)


QUICK = dict(
    sentences=128,
    latency_sentences=32,
    repeats=3,
    exported_presets=("base",),
    tokenizer_texts=20_000,
    student_steps=10,
    teacher_batches=2,
    eval_sentences=2000,
)


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


ELECTRA_BASE = dict(
    vocab_size=35000,
    embedding_size=768,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
)
TEACHERS = (
    TeacherSpec(
        "KoELECTRA-Small-v3",
        "ElectraForSequenceClassification",
        "ElectraConfig",
        dict(
            vocab_size=35000,
            embedding_size=128,
            hidden_size=256,
            num_hidden_layers=12,
            num_attention_heads=4,
            intermediate_size=1024,
        ),
    ),
    TeacherSpec(
        "KLUE-RoBERTa-base",
        "RobertaForSequenceClassification",
        "RobertaConfig",
        dict(
            vocab_size=32000,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
            pad_token_id=0,
        ),
    ),
    TeacherSpec(
        "KoELECTRA-Base-v3", "ElectraForSequenceClassification", "ElectraConfig", ELECTRA_BASE, timed=False
    ),
)


# -----------------------------------------------------------------------------
# machine and data


def machine_info(threads: int) -> dict:
    """CPU, threads, load and library versions: what the timings depend on."""
    import onnxruntime
    import tokenizers
    import transformers

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": utils.cpu_name(),
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
    None: [
        "영화",
        "배우",
        "스토리",
        "연기",
        "진짜",
        "그냥",
        "정말",
        "오늘",
        "보고",
        "왔는데",
        "음악",
        "감독",
        "내용",
        "처음",
        "마지막",
        "ㅋㅋ",
    ],
}


def synthetic_reviews(n: int, seed: int) -> pd.DataFrame:
    """Reviews made of filler and sentiment words (tests/conftest.py uses the same words), for runs without
    --data-dir."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(SYNTHETIC_WORDS[None], k=rng.randint(2, 30)) + rng.choices(
            SYNTHETIC_WORDS[label], k=rng.randint(1, 3)
        )
        rng.shuffle(words)
        rows.append((f"synthetic-{i}", " ".join(words), label))
    return pd.DataFrame(rows, columns=["id", "text", "label"])


def review_splits(data_dir: str | None, data: str | None = None) -> corpus.Splits | None:
    """The reviews to measure on: --data's (split as distil.py splits them), NSMC's from --data-dir, or None
    (synthetic reviews)."""
    if data:
        return distil.load_splits(distil.DataConfig(data=data))
    return corpus.load_dataset("nsmc", data_dir=data_dir) if data_dir else None


def dataset_name(settings: Settings) -> str:
    """The dataset whose runs are scored: --data's name, else nsmc."""
    return distil.DataConfig(data=settings.data).data_name()


def load_texts(settings: Settings) -> tuple[pd.DataFrame, list[str], str]:
    """Training texts (for the tokenizers and the cache section), the timed test sentences, and their
    source."""
    splits = review_splits(settings.data_dir, settings.data)
    if splits is not None:
        where = f"NSMC ({settings.data_dir})"
        if settings.data:
            where = f"{dataset_name(settings)} ({settings.data})"
        train, test, source = splits["train"], splits["test"], f"{where} test reviews"
    else:
        train, test = (
            synthetic_reviews(20_000, settings.seed),
            synthetic_reviews(settings.sentences, settings.seed + 1),
        )
        source = (
            "SYNTHETIC sentences (no --data-dir): lengths are not NSMC's, speed numbers are indicative only"
        )
    if settings.tokenizer_texts is not None and settings.tokenizer_texts < len(train):
        train = train.sample(n=settings.tokenizer_texts, random_state=settings.seed).reset_index(drop=True)
    sample = test["text"].sample(n=min(settings.sentences, len(test)), random_state=settings.seed).tolist()
    return train, sample, source


def load_tokenizers(train: pd.DataFrame, root: Path) -> tuple:
    """The students' WordPiece tokenizer (vocab 3000) and a stand-in for the teachers' (vocab 32000,
    [CLS] ... [SEP])."""
    from tokenizers import processors

    student = get_tokenizer(train, STUDENT_VOCAB, "bench", root)
    teacher = get_tokenizer(train, TEACHER_VOCAB, "bench", root)
    cls_id, sep_id = teacher.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    teacher.backend_tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    return student, teacher


# -----------------------------------------------------------------------------
# 1. speed


def time_calls(call: Callable[[list], object], items: list, latency_items: int, repeats: int) -> dict:
    """Batch-1 latency (call per item) and batch-64 throughput (call per 64 items) over the same items.

    Each figure is the median over `repeats` passes, with its spread ((max - min) / median over the passes,
    in percent): a spread of more than a few percent means the machine was not quiet enough to trust it.
    """
    call(items[:BATCH])
    call(items[:1])
    gc.collect()
    latencies, pass_medians = [], []
    for _ in range(repeats):
        current = []
        for item in items[:latency_items]:
            start = time.perf_counter()
            call([item])
            current.append(time.perf_counter() - start)
        latencies += current
        pass_medians.append(statistics.median(current))
    throughputs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(items), BATCH):
            call(items[i : i + BATCH])
        throughputs.append(len(items) / (time.perf_counter() - start))
    return {
        "batch1_median_ms": 1e3 * statistics.median(latencies),
        "batch1_median_ms_spread_pct": spread_pct(pass_medians),
        "batch1_p90_ms": 1e3 * float(np.percentile(latencies, 90)),
        "batch1_per_s": len(latencies) / sum(latencies),
        "batch64_per_s": statistics.median(throughputs),
        "batch64_per_s_spread_pct": spread_pct(throughputs),
    }


def spread_pct(values: Sequence[float]) -> float:
    """(max - min) / median of repeated measurements, in percent (0 for a single one)."""
    return 100 * (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


SPREAD_WARNING_PCT = 10.0  # a timing whose repeats differ by more than this is flagged in the tables


def timing_warning(load_before: float, load_after: float, spreads: Sequence[float]) -> str:
    """'' for a trustworthy timing, else why not: the machine was busy (1-minute load average above half the
    available CPUs, before or after) or the repeats disagree by more than SPREAD_WARNING_PCT."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    reasons = []
    if max(load_before, load_after) > cpus / 2:
        reasons.append(f"BUSY: load {load_before:.1f} -> {load_after:.1f} on {cpus} CPUs")
    if spreads and max(spreads) > SPREAD_WARNING_PCT:
        reasons.append(f"UNSTABLE: repeats differ by {max(spreads):.0f}%")
    return "; ".join(reasons)


class TeacherRunner:
    """A transformers classifier behind the same two calls as a student: texts -> labels, token ids ->
    logits."""

    def __init__(self, model: torch.nn.Module, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=TEACHER_MAX_LENGTH)["input_ids"]

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> list[int]:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=TEACHER_MAX_LENGTH, return_tensors="pt"
        )
        return self.model(**batch).logits.argmax(-1).tolist()

    @torch.inference_mode()
    def logits_from_ids(self, ids: list[list[int]]) -> torch.Tensor:
        input_ids, lengths = pad_ids(ids, self.tokenizer.pad_token_id)
        attention_mask = np.arange(input_ids.shape[1]) < lengths[:, None]
        return self.model(
            input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask).long()
        ).logits


def speed_row(
    model: str,
    kind: str,
    backend: str,
    params: int,
    predict: Callable,
    from_ids: Callable,
    texts: list[str],
    ids: list[list[int]],
    settings: Settings,
    repeats: int,
) -> dict:
    """One model's timings, end to end and model only."""
    row = {"model": model, "kind": kind, "backend": backend, "params": params}
    load_before = os.getloadavg()[0]
    for mode, call, items in (("end_to_end", predict, texts), ("model_only", from_ids, ids)):
        for key, value in time_calls(call, items, settings.latency_sentences, repeats).items():
            row[f"{mode}_{key}"] = value
    row["load_before"], row["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
    spreads = [v for k, v in row.items() if k.endswith("_spread_pct")]
    row["warning"] = timing_warning(row["load_before"], row["load_after"], spreads)
    throughput, spread = row["end_to_end_batch64_per_s"], row["end_to_end_batch64_per_s_spread_pct"]
    print(
        f"  {model:<20} {backend:<10} {throughput:>10,.0f} sentences/s at batch 64 (spread {spread:.0f}%), "
        f"{row['end_to_end_batch1_median_ms']:.3f} ms at batch 1 {row['warning']}",
        flush=True,
    )
    return row


def measure_speed(
    settings: Settings,
    texts: list[str],
    student_tokenizer,
    teacher_tokenizer,
    teachers: dict[TeacherSpec, torch.nn.Module],
) -> list[dict]:
    """Every student preset x backend and every timed teacher on the same sentences."""
    rows = []
    student_ids = encode(student_tokenizer, texts, StudentConfig.max_length)
    for preset in settings.presets:
        torch.manual_seed(settings.seed)
        model = BiLSTMClassifier(StudentConfig.from_size(preset, len(student_tokenizer)))
        backends = BACKENDS if preset in settings.exported_presets else ("torch",)
        for backend in backends:
            student = Student(model, student_tokenizer, backend=backend, threads=settings.threads)
            rows.append(
                speed_row(
                    f"student-{preset}",
                    "student",
                    backend,
                    count_parameters(model),
                    student.predict,
                    student.logits_from_ids,
                    texts,
                    student_ids,
                    settings,
                    settings.repeats,
                )
            )
    for spec, teacher in teachers.items():
        if spec.timed:
            runner = TeacherRunner(teacher, teacher_tokenizer)
            rows.append(
                speed_row(
                    spec.name,
                    "teacher",
                    "torch",
                    count_parameters(teacher),
                    runner.predict,
                    runner.logits_from_ids,
                    texts,
                    runner.encode(texts),
                    settings,
                    repeats=1,
                )
            )
    return rows


def speed_ratios(rows: list[dict]) -> list[dict]:
    """Student / teacher throughput, for each student row and timed teacher."""
    keys = (
        "end_to_end_batch1_per_s",
        "end_to_end_batch64_per_s",
        "model_only_batch1_per_s",
        "model_only_batch64_per_s",
    )
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
        ratio = next(
            r
            for r in ratios
            if r["backend"] == row["backend"] and r["teacher"] == biggest and r["student"] == row["model"]
        )
        for mode in ("end_to_end", "model_only"):
            throughput, latency = row[f"{mode}_batch64_per_s"], row[f"{mode}_batch1_median_ms"]
            targets.append(
                {
                    "backend": row["backend"],
                    "mode": mode,
                    "batch64_per_s": throughput,
                    "batch64_met": throughput >= 10_000,
                    "batch1_median_ms": latency,
                    "batch1_met": latency < 0.3,
                    f"x_{biggest}_batch64": ratio[f"{mode}_batch64_ratio"],
                    "ratio_met": ratio[f"{mode}_batch64_ratio"] >= 500,
                }
            )
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


def measure_size(
    settings: Settings, student_vocab: int, teachers: dict[TeacherSpec, torch.nn.Module]
) -> tuple[list[dict], list[dict]]:
    """Parameters and bytes of each student form and teacher, and the student / teacher reduction factors."""
    rows = []
    for preset in settings.presets:
        model = BiLSTMClassifier(StudentConfig.from_size(preset, student_vocab))
        params = count_parameters(model)
        rows.append(
            {
                "model": f"student-{preset}",
                "kind": "student",
                "format": "safetensors",
                "params": params,
                "bytes": safetensors_bytes(model),
            }
        )
        if preset in settings.exported_presets:
            for backend, quantize in (("onnx", False), ("onnx-int8", True)):
                rows.append(
                    {
                        "model": f"student-{preset}",
                        "kind": "student",
                        "format": backend,
                        "params": params,
                        "bytes": len(export_onnx(model, quantize=quantize)),
                    }
                )
    for spec, teacher in teachers.items():
        rows.append(
            {
                "model": spec.name,
                "kind": "teacher",
                "format": "safetensors",
                "params": count_parameters(teacher),
                "bytes": safetensors_bytes(teacher),
            }
        )
    reductions = [
        {
            "student": s["model"],
            "format": s["format"],
            "teacher": t["model"],
            "params_reduction": t["params"] / s["params"],
            "bytes_reduction": t["bytes"] / s["bytes"],
        }
        for s in rows
        if s["kind"] == "student"
        for t in rows
        if t["kind"] == "teacher"
    ]
    return rows, reductions


# -----------------------------------------------------------------------------
# 3. the logits cache


def _student_step_seconds(
    settings: Settings, student_ids: list[list[int]], labels: torch.Tensor, vocab_size: int, batches: list
) -> float:
    """Mean seconds of one base-student distillation step from cached logits (what a cache lookup returns)."""
    torch.manual_seed(settings.seed)
    model = BiLSTMClassifier(StudentConfig.from_size("base", vocab_size)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    cached_logits = torch.randn(len(student_ids), 2)

    def student_step(idx: np.ndarray) -> None:
        input_ids, lengths = pad_ids([student_ids[i] for i in idx])
        logits = model(torch.from_numpy(input_ids), torch.from_numpy(lengths))
        loss, _, _ = distil.distillation_loss(logits, labels[idx], cached_logits[idx], 0.1, 2.0, "kl")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return mean_seconds(student_step, cycle(batches, settings.student_steps))


def measure_cache(
    settings: Settings,
    train: pd.DataFrame,
    student_tokenizer,
    teacher_tokenizer,
    teachers: dict[TeacherSpec, torch.nn.Module],
) -> list[dict]:
    """Seconds per epoch of base-student distillation with cached teacher logits and with the teacher run in
    the loop, extrapolated to EPOCH_EXAMPLES from measured student steps and teacher batches."""
    rng = np.random.default_rng(settings.seed)
    n = min(len(train), BATCH * max(settings.student_steps, settings.teacher_batches))
    texts = train["text"].sample(n=n, random_state=settings.seed).tolist()
    labels = torch.tensor(rng.integers(0, 2, n))
    student_ids = encode(student_tokenizer, texts, StudentConfig.max_length)
    batches = distil.bucket_batches(np.array([len(s) for s in student_ids]), BATCH, rng)
    student_seconds = _student_step_seconds(settings, student_ids, labels, len(student_tokenizer), batches)
    steps = math.ceil(EPOCH_EXAMPLES / BATCH)
    rows = []
    for spec, teacher in ((s, t) for s, t in teachers.items() if s.timed):
        runner = TeacherRunner(teacher, teacher_tokenizer)
        teacher_ids = runner.encode(texts)
        teacher_seconds = mean_seconds(
            lambda idx, runner=runner, teacher_ids=teacher_ids: runner.logits_from_ids(
                [teacher_ids[i] for i in idx]
            ),
            cycle(batches, settings.teacher_batches),
        )
        rows.append(
            {
                "teacher": spec.name,
                "student": "student-base",
                "batch_size": BATCH,
                "epoch_examples": EPOCH_EXAMPLES,
                "steps_per_epoch": steps,
                "measured_student_steps": settings.student_steps,
                "measured_teacher_batches": settings.teacher_batches,
                "student_step_s": student_seconds,
                "teacher_batch_s": teacher_seconds,
                "epoch_s_with_cache": steps * student_seconds,
                "epoch_s_teacher_in_loop": steps * (student_seconds + teacher_seconds),
                "speedup": (student_seconds + teacher_seconds) / student_seconds,
                "cache_build_s": steps * teacher_seconds,
                "extrapolated": True,
            }
        )
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


GROUP_KEYS = [
    "dataset",
    "teacher",
    "vocab_size",
    "student_size",
    "embedding_dim",
    "hidden_dim",
    "alpha",
    "temperature",
    "kd_loss",
    "unlabeled",
    "n_train",
]
METRICS = ["val_accuracy", "test_accuracy", "test_f1"]


def read_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per finished run: every metrics.json under runs_dir that has the accuracy fields."""
    rows = []
    for path in sorted(Path(runs_dir).glob("**/metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if all(metrics.get(k) is not None for k in [*METRICS, "params"]):
            rows.append(
                {k: metrics.get(k) for k in GROUP_KEYS + METRICS + ["params", "seed"]}
                | {"run_dir": str(path.parent)}
            )
    return pd.DataFrame(rows, columns=GROUP_KEYS + METRICS + ["params", "seed", "run_dir"])


def accuracy_table(runs: pd.DataFrame) -> list[dict]:
    """Runs grouped by everything but the seed: mean and std (over seeds) of each accuracy metric."""
    table = []
    for _, group in runs.fillna({"teacher": "none", "unlabeled": "none", "n_train": "all"}).groupby(
        GROUP_KEYS, dropna=False, sort=False
    ):
        first = group.iloc[0]
        row = {
            "model": first["student_size"]
            if first["student_size"] != "custom"
            else f"e{first['embedding_dim']}h{first['hidden_dim']}",
            "teacher": display_name(str(first["teacher"])),
            "alpha": first["alpha"],
            "unlabeled": Path(first["unlabeled"]).name if first["unlabeled"] != "none" else "none",
            "vocab_size": int(first["vocab_size"]),
            "params": int(first["params"]),
            "dataset": first["dataset"],
            "n_train": first["n_train"],
            "seeds": len(group),
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
        directory = next(
            (d for d in (Path(name), Path(teacher_root) / name) if (d / teachers.TEACHER_INFO).is_file()),
            None,
        )
        if directory is None:
            continue
        info = json.loads((directory / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
        params = 0
        for weights in directory.glob("model*.safetensors"):
            with safe_open(str(weights), framework="pt") as f:
                # safe_open is not iterable: SIM118's `k in f` raises TypeError
                params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
        if info.get("test_accuracy") is not None and params:
            found.append(
                {"teacher": display_name(name), "test_accuracy": info["test_accuracy"], "params": params}
            )
    return found


def exported_accuracy(settings: Settings, runs: pd.DataFrame) -> list[dict]:
    """Accuracy of each backend on the test set (NSMC's, or --data's), for the best run (by validation
    accuracy) of each size."""
    splits = review_splits(settings.data_dir, settings.data)
    if splits is None or runs.empty:
        return []
    test = splits["test"]
    if settings.eval_sentences is not None and settings.eval_sentences < len(test):
        test = test.sample(n=settings.eval_sentences, random_state=settings.seed)
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    nsmc = runs[runs["dataset"] == dataset_name(settings)]
    best = (
        nsmc.loc[nsmc.groupby(["student_size", "params"])["val_accuracy"].idxmax()]
        if not nsmc.empty
        else nsmc
    )
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
            rows.append(
                {
                    "run": Path(run["run_dir"]).name,
                    "backend": backend,
                    "test_sentences": len(texts),
                    "accuracy": accuracy[backend],
                    "delta_points": 100 * delta,
                    "within_0.2_points": abs(delta) <= INT8_TOLERANCE,
                }
            )
    return rows


# -----------------------------------------------------------------------------
# 5. plots: test accuracy against size, validation curves (one implementation, for bench.py and the notebook)

# (marker, x offset factor on the log axis, shade: 0 dark / 1 light) of each kind of student point
KIND_STYLE = {
    "baseline": ("s", 0.95, 1),
    "distilled": ("o", 1.0, 0),
    "distilled + transfer set": ("D", 1.05, 0),
}
CURVE_LINES = {"baseline": "--", "distilled": "-", "distilled + transfer set": ":"}


def student_kind(teacher: str | None, unlabeled: str | None) -> str:
    """baseline (no teacher), distilled, or distilled + transfer set (unlabeled text the teacher labels)."""
    if pd.isna(teacher) or teacher == "none":
        return "baseline"
    return "distilled" if pd.isna(unlabeled) or unlabeled == "none" else "distilled + transfer set"


def short_label(model: str, vocab_size: int, kind: str = "baseline", alpha: float | None = None) -> str:
    """``base v3000`` for a baseline, ``base v3000 KD a0.1`` distilled, ``... +U`` with a transfer set."""
    label = f"{model} v{int(vocab_size)}"
    if kind != "baseline":
        label += f" KD a{alpha:g}" + (" +U" if kind == "distilled + transfer set" else "")
    return label


def family_colours(families: list) -> dict:
    """A colour pair (dark, light) per student family, so that a distilled point and its baseline match."""
    from matplotlib import colormaps

    pairs = colormaps["tab20"].colors
    unique = list(dict.fromkeys(families))
    return {family: (pairs[(2 * i) % 20], pairs[(2 * i + 1) % 20]) for i, family in enumerate(unique)}


def new_figure(size: tuple[float, float]):
    """A pyplot-free figure (no global state, no backend switch): saved to a file or shown by IPython."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# label offsets in points from its point: above, below, right, left, then further above and below
LABEL_SPOTS = [(0, 7, "center"), (0, -17, "center"), (9, -4, "left"), (-9, -4, "right")] + [
    (0, sign * (7 + 11 * k) - (10 if sign < 0 else 0), "center") for k in range(1, 12) for sign in (1, -1)
]


def dodge_labels(annotations: list, ax, renderer, avoid: list | None = None) -> None:
    """Place each annotation (in order of x) at the first spot inside the axes that overlaps no placed one,
    else at the spot with the least overlap."""
    placed = list(avoid or [])  # boxes to keep clear of, e.g. the legend
    inside = ax.get_window_extent(renderer)

    def clash(box) -> float:
        outside = not (
            inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
        )
        overlap = sum(
            max(0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0, min(box.y1, o.y1) - max(box.y0, o.y0))
            for o in placed
        )
        return overlap + (box.width * box.height if outside else 0)

    for annotation in sorted(annotations, key=lambda a: a.xy[0]):
        annotation.set_in_layout(False)
        scores = []
        for dx, dy, ha in LABEL_SPOTS:
            annotation.xyann = (dx, dy)
            annotation.set_horizontalalignment(ha)
            scores.append(clash(annotation.get_window_extent(renderer)))
            if scores[-1] == 0:
                break
        dx, dy, ha = LABEL_SPOTS[int(np.argmin(scores))]
        annotation.xyann = (dx, dy)
        annotation.set_horizontalalignment(ha)
        placed.append(annotation.get_window_extent(renderer))


def plot_students(ax, table: list[dict]) -> list:
    """One point per ``accuracy_table`` row (mean ± std), a colour per student family (dark when distilled,
    light for its baseline); returns the family labels placed above each family's best point."""
    colours = family_colours([(r["model"], r["vocab_size"]) for r in table])
    top: dict = {}
    for row in table:
        marker, shift, shade = KIND_STYLE[student_kind(row["teacher"], row["unlabeled"])]
        family = (row["model"], row["vocab_size"])
        y = 100 * row["test_accuracy_mean"]
        ax.errorbar(
            [row["params"] * shift],
            [y],
            yerr=[100 * (row["test_accuracy_std"] or 0)],
            fmt=marker,
            capsize=3,
            color=colours[family][shade],
            markeredgecolor=colours[family][0],
            markersize=7,
        )
        top[family] = max(top.get(family, (0, -1.0)), (row["params"], y), key=lambda p: p[1])
    return [label_point(ax, short_label(*family), point, 7) for family, point in top.items()]


def label_point(ax, text: str, point: tuple[float, float], above: float):
    """A small centred label ``above`` points over ``point``."""
    return ax.annotate(
        text,
        point,
        xytext=(0, above),
        textcoords="offset points",
        ha="center",
        fontsize=8,
        annotation_clip=False,
    )


def plot_legend(ax, table: list[dict], teachers: list[dict]):
    """The legend of the kinds of student shown (and the teacher star); None when nothing is plotted."""
    kinds = {student_kind(r["teacher"], r["unlabeled"]) for r in table}
    names = {k: "no teacher (α = 1)" if k == "baseline" else k for k in KIND_STYLE if k in kinds}
    handles = [ax.plot([], [], KIND_STYLE[k][0], color="grey", label=name)[0] for k, name in names.items()]
    handles += [ax.plot([], [], "*", color="black", markersize=12, label="teacher")[0]] if teachers else []
    return ax.legend(handles=handles, fontsize=8, loc="best") if handles else None


def plot_accuracy(table: list[dict], teachers: list[dict], path: str | Path | None = None):
    """Test accuracy (mean ± std over seeds) against parameters, log x; returns the figure (saved when path).

    ``table`` holds ``accuracy_table`` rows, ``teachers`` dicts with teacher, test_accuracy and params. A
    student family (size and vocabulary) has one colour: dark when distilled, light for its baseline, and one
    label.
    """
    fig = new_figure((8, 5))
    ax = fig.add_subplot()
    notes = plot_students(ax, table)
    for t in teachers:
        point = (t["params"], 100 * t["test_accuracy"])
        ax.plot([point[0]], [point[1]], "*", color="black", markersize=14)
        notes.append(label_point(ax, f"teacher {t['teacher']}", point, 9))
    if not table and not teachers:
        ax.text(0.5, 0.5, "no finished runs found", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.2)
    ax.set(
        xlabel="parameters (log scale)",
        ylabel="test accuracy (%), mean ± std over seeds",
        title="Test accuracy against size",
    )
    ax.grid(True, which="both", alpha=0.3)
    legend = plot_legend(ax, table, teachers)
    fig.canvas.draw()  # lays the axes and the legend out first
    renderer = fig.canvas.get_renderer()
    dodge_labels(notes, ax, renderer, avoid=[legend.get_window_extent(renderer)] if legend else [])
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def curve_groups(runs: list[dict]) -> dict[tuple, pd.DataFrame]:
    """Validation accuracy per epoch of each group of runs that differ only in the seed: mean, std, seeds."""
    histories: dict[tuple, list[pd.DataFrame]] = {}
    for metrics in runs:
        kind = student_kind(metrics.get("teacher"), metrics.get("unlabeled"))
        model = model_name(metrics["student_size"], metrics["embedding_dim"], metrics["hidden_dim"])
        key = (
            model,
            metrics["vocab_size"],
            kind,
            metrics["alpha"],
            metrics.get("teacher"),
            metrics.get("temperature"),
        )
        histories.setdefault(key, []).append(pd.DataFrame(metrics["history"]))
    return {
        key: pd.concat(parts).groupby("epoch")["val_accuracy"].agg(["mean", "std", "count"])
        for key, parts in histories.items()
    }


def plot_curves(runs: list[dict], path: str | Path | None = None):
    """Validation accuracy per epoch (mean ± std over seeds): distilled solid, its baseline dashed alike."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure((9, 4.5))
    ax = fig.add_subplot()
    groups = curve_groups(runs)
    colours = family_colours([key[:2] for key in groups])
    for (model, vocab, kind, alpha, _, _), curve in groups.items():
        shade = KIND_STYLE[kind][2]
        ax.errorbar(
            curve.index,
            100 * curve["mean"],
            yerr=100 * curve["std"].fillna(0),
            fmt=CURVE_LINES[kind],
            marker=KIND_STYLE[kind][0],
            markersize=4,
            capsize=2,
            color=colours[(model, vocab)][shade],
            label=short_label(model, vocab, kind, alpha),
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Learning curves (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    if groups:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def model_name(student_size: str, embedding_dim, hidden_dim) -> str:
    """The preset's name, or e<embedding>h<hidden> for a custom size."""
    return student_size if student_size != "custom" else f"e{int(embedding_dim)}h{int(hidden_dim)}"


# -----------------------------------------------------------------------------
# 6. notebook evaluation: one row per run directory, accumulated in runs/<dataset>/results.csv

RESULT_COLUMNS = [
    "run_dir",
    "kind",
    *GROUP_KEYS,
    "seed",
    "params",
    "size_bytes",
    *METRICS,
    "test_within_one",  # labels that are ordered numbers (stars): predicted within one class
    "cpu_sentences_per_s",
    "cpu_batch1_ms",
]


def cpu_speed(predict: Callable[[list], object], texts: list[str], repeats: int = 3) -> dict:
    """CPU sentences/s at batch 64 and median batch-1 milliseconds of predict(texts), timed by time_calls."""
    timing = time_calls(predict, texts, latency_items=min(16, len(texts)), repeats=repeats)
    return {"cpu_sentences_per_s": timing["batch64_per_s"], "cpu_batch1_ms": timing["batch1_median_ms"]}


def student_result(metrics: dict, texts: list[str]) -> dict:
    """A results row for a finished run (its metrics.json) with its student's CPU speed on texts."""
    student = Student.from_pretrained(Path(metrics["run_dir"]) / "student", device="cpu")
    row = {key: metrics.get(key) for key in RESULT_COLUMNS}
    row["kind"] = "baseline" if student_kind(metrics["teacher"], None) == "baseline" else "distilled"
    return row | cpu_speed(student.predict, texts)


def teacher_result(
    teacher: str,
    logits: dict[str, torch.Tensor],
    splits: dict[str, pd.DataFrame],
    texts: list[str],
    *,
    dataset: str,
    teacher_root: str | Path = "teacher_model",
    max_length: int = 128,
) -> dict:
    """A results row for the teacher: accuracy from its cached logits, size from its weights, CPU speed."""
    import teacher as teachers

    model = teachers.load_teacher(teacher, device="cpu", max_length=max_length, root=teacher_root)
    predicted = {split: logits[split].argmax(-1).numpy() for split in ("valid", "test")}
    labels = {split: splits[split]["label"].to_numpy() for split in ("valid", "test")}
    test = distil.classification_metrics(labels["test"], predicted["test"], corpus.label_names(splits))
    row = dict.fromkeys(RESULT_COLUMNS) | {
        "run_dir": str(teacher),
        "kind": "teacher",
        "dataset": dataset,
        "teacher": str(teacher),
        "params": model.num_parameters(),
        "size_bytes": model.size_bytes(),
        "val_accuracy": float((predicted["valid"] == labels["valid"]).mean()),
        "test_accuracy": test["accuracy"],
        "test_f1": test["f1"],
        "test_within_one": test.get("within_one"),
    }
    return row | cpu_speed(lambda batch: model.predict_logits(batch, show_progress=False), texts, repeats=1)


def accumulate_results(rows: list[dict], path: str | Path) -> pd.DataFrame:
    """Merge rows into the results CSV at path, one row per run directory (the latest wins); returns all."""
    return merge_csv(path, pd.DataFrame(rows, columns=RESULT_COLUMNS), ["run_dir"])


def merge_csv(path: str | Path, new: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Write ``new`` into the CSV at path (atomically), replacing the old rows with the same ``key`` values;
    returns all rows, in ``new``'s columns."""
    old = pd.read_csv(path).reindex(columns=new.columns) if Path(path).is_file() else new.iloc[:0]
    same = old.set_index(key).index.isin(new.set_index(key).index)
    parts = [df for df in (old[~same], new) if not df.empty]  # no empty concat
    frame = pd.concat(parts, ignore_index=True).reindex(columns=new.columns) if parts else new
    utils.atomic_write_text(path, frame.to_csv(index=False))
    return frame


def human_bytes(size: float) -> str:
    """Three significant digits in decimal units: 1,565,640 -> '1.57 MB', 110,504 -> '111 KB'."""
    exponent = min(int(math.log10(max(size, 1)) // 3), 3)
    value = size / 1000**exponent
    unit = ("B", "KB", "MB", "GB")[exponent]
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The reader's table: teachers, then students grouped over seeds (test accuracy in %, mean ± std)."""
    rows = []
    for t in frame[frame["kind"] == "teacher"].to_dict("records"):
        rows.append(
            {
                "model": "teacher",
                "vocab": "",
                "teacher": display_name(t["teacher"]),
                "alpha": "",
                "transfer set": "",
                "params": f"{int(t['params']):,}",
                "size": human_bytes(t["size_bytes"]),
                "test acc (%)": f"{100 * t['test_accuracy']:.2f}",
                "within one (%)": percent_or_dash(t.get("test_within_one")),
                "seeds": 1,
                "CPU sentences/s": round(t["cpu_sentences_per_s"]),
            }
        )
    for group in accuracy_table(frame[frame["kind"] != "teacher"]):
        part = frame[frame["run_dir"].isin(group["run_dirs"])]
        kind = student_kind(group["teacher"], group["unlabeled"])
        transfer = {"baseline": "", "distilled": "train"}.get(
            kind, f"train + {Path(str(group['unlabeled'])).stem}"
        )
        std = group["test_accuracy_std"]
        rows.append(
            {
                "model": group["model"],
                "vocab": group["vocab_size"],
                "teacher": group["teacher"],
                "alpha": f"{group['alpha']:g}",
                "transfer set": transfer,
                "params": f"{group['params']:,}",
                "size": human_bytes(part["size_bytes"].iloc[0]),
                "test acc (%)": f"{100 * group['test_accuracy_mean']:.2f}"
                + (f" ± {100 * std:.2f}" if std else ""),
                "within one (%)": percent_or_dash(part["test_within_one"].mean()),
                "seeds": group["seeds"],
                "CPU sentences/s": round(part["cpu_sentences_per_s"].mean()),
            }
        )
    columns = ["model", "vocab", "teacher", "alpha", "transfer set", "params", "size", "test acc (%)"]
    if frame["test_within_one"].notna().any():  # labels that are ordered numbers (stars)
        columns.append("within one (%)")
    return pd.DataFrame(rows, columns=[*columns, "seeds", "CPU sentences/s"])


def percent_or_dash(share: float | None) -> str:
    """A share in percent with two decimals; "–" when missing (NaN)."""
    return "–" if share is None or pd.isna(share) else f"{100 * share:.2f}"


def plot_results(frame: pd.DataFrame, path: str | Path | None = None):
    """plot_accuracy over a results table (runs/<dataset>/results.csv)."""
    teacher_rows = [  # not named ``teachers``: that is the teacher module
        {"teacher": display_name(t["teacher"]), "test_accuracy": t["test_accuracy"], "params": t["params"]}
        for t in frame[frame["kind"] == "teacher"].to_dict("records")
    ]
    return plot_accuracy(accuracy_table(frame[frame["kind"] != "teacher"]), teacher_rows, path)


# -----------------------------------------------------------------------------
# 6. serving: a bounded load test of serve.py on 127.0.0.1 (python bench.py serve ...)


@dataclass
class LoadTest:
    """One server per micro-batching window; every scenario runs `repeats` times against each."""

    student: str | None = None  # None: serve.py's default (model.bundled_student())
    backend: str = "onnx-int8"
    windows_ms: tuple[float, ...] = (0.0, 2.0)  # 0: micro-batching off
    scenarios: tuple[tuple[str, int, int], ...] = (  # (name, texts per request (0: GET /health), concurrency)
        ("health", 0, 64),
        ("single", 1, 1),
        ("single", 1, 16),
        ("single", 1, 64),
        ("batch64", 64, 4),
    )
    requests: int = 2000  # per scenario and repeat (a quarter of it for 64-text requests)
    time_cap_s: float = 10.0  # per scenario and repeat: no new request after this
    repeats: int = 3
    out: str = "bench_out"
    data_dir: str | None = None  # NSMC test reviews from here, else synthetic reviews
    data: str | None = None  # or the test reviews of your own data (distil.py --data)

    def __post_init__(self) -> None:
        if self.requests < 1 or self.repeats < 1 or self.time_cap_s <= 0:
            raise ValueError(
                "requests and repeats must be >= 1 and time_cap_s > 0, got "
                f"{self.requests}, {self.repeats}, {self.time_cap_s}"
            )
        if any(w < 0 for w in self.windows_ms):
            raise ValueError(f"windows_ms must be >= 0, got {self.windows_ms}")


async def drive(
    url: str, bodies: list[bytes | None], concurrency: int, requests: int, time_cap_s: float
) -> dict:
    """`concurrency` clients on keep-alive connections send up to `requests` requests in total (POST /predict
    with each body, or GET /health for None) until the time cap; latencies in seconds. The client is aiohttp:
    httpx's AsyncClient costs several times more CPU per request under concurrency (encode/httpx#3215), CPU
    that the server on the same machine would miss."""
    import aiohttp

    latencies, errors, issued = [], 0, 0
    headers = {"content-type": "application/json"}
    connector, timeout = aiohttp.TCPConnector(limit=concurrency), aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def one(body: bytes | None) -> int:
            if body is None:
                async with session.get("/health") as response:
                    await response.read()
            else:
                async with session.post("/predict", data=body, headers=headers) as response:
                    await response.read()
            return response.status

        await asyncio.gather(*(one(bodies[i % len(bodies)]) for i in range(2 * concurrency)))  # warm up
        stop_at = time.perf_counter() + time_cap_s

        async def worker() -> None:
            nonlocal errors, issued
            while issued < requests and time.perf_counter() < stop_at:
                body = bodies[issued % len(bodies)]
                issued += 1
                start = time.perf_counter()
                errors += await one(body) != 200
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed, "latencies": latencies}


def scenario_row(name: str, texts_per_request: int, concurrency: int, passes: list[dict]) -> dict:
    """Median and spread over the repeated passes of one scenario."""
    per_s = [p["requests"] / p["seconds"] for p in passes]
    p50 = [1e3 * float(np.percentile(p["latencies"], 50)) for p in passes]
    p99 = [1e3 * float(np.percentile(p["latencies"], 99)) for p in passes]
    return {
        "scenario": name,
        "concurrency": concurrency,
        "texts_per_request": texts_per_request,
        "requests": sum(p["requests"] for p in passes),
        "errors": sum(p["errors"] for p in passes),
        "req_per_s": statistics.median(per_s),
        "req_per_s_spread_pct": spread_pct(per_s),
        "sentences_per_s": statistics.median(per_s) * max(texts_per_request, 0),
        "p50_ms": statistics.median(p50),
        "p99_ms": statistics.median(p99),
    }


def start_server(load: LoadTest, window_ms: float, log: Path) -> tuple[subprocess.Popen, str]:
    """serve.py in its own process on a free 127.0.0.1 port; returns it once /health answers."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        str(Path(__file__).resolve().parent / "serve.py"),
        "--port",
        str(port),
        "--backend",
        load.backend,
        "--batch-window-ms",
        str(window_ms),
        "--log-level",
        "warning",
    ]
    if load.student:
        command += ["--student", load.student]
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a", encoding="utf-8") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    process.wait(timeout=30)
    reason = f"(exit code {process.returncode}): {last_line(log, start)}"
    raise ServerStartError(f"serve.py did not start on {url} {reason} (log: {log})")


class ServerStartError(RuntimeError):
    """serve.py exited or did not answer /health in time; the message ends with its last log line."""


def last_line(log: Path, start: int) -> str:
    """The last non-empty line written to log after byte offset start."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def serve_targets(rows: list[dict]) -> list[dict]:
    """Issue targets per window: single sentences at concurrency 64 >= 50 % of GET /health's requests/s with
    p99 <= 50 ms; 64-text requests >= 5,000 sentences/s."""
    targets = []
    for window in sorted({r["window_ms"] for r in rows}):
        mine = {(r["scenario"], r["concurrency"]): r for r in rows if r["window_ms"] == window}
        ceiling, single = mine.get(("health", 64)), mine.get(("single", 64))
        if ceiling and single:
            ratio = single["req_per_s"] / ceiling["req_per_s"]
            value = f"{100 * ratio:.0f}% of {ceiling['req_per_s']:,.0f} req/s, p99 {single['p99_ms']:.1f} ms"
            targets.append(
                {
                    "window_ms": window,
                    "target": "single c=64: >= 50% of /health, p99 <= 50 ms",
                    "value": value,
                    "met": ratio >= 0.5 and single["p99_ms"] <= 50,
                }
            )
        for (name, _), row in mine.items():
            if name == "batch64":
                targets.append(
                    {
                        "window_ms": window,
                        "target": "64-text requests: >= 5,000 sentences/s",
                        "value": f"{row['sentences_per_s']:,.0f} sentences/s",
                        "met": row["sentences_per_s"] >= 5000,
                    }
                )
    return targets


def scenario(
    load: LoadTest, url: str, window: float, spec: tuple, single: list[bytes], batches: list[bytes]
) -> dict:
    """One scenario (name, texts per request, concurrency) against a running server, ``load.repeats`` passes;
    its printed row."""
    name, size, concurrency = spec
    bodies = [None] if size == 0 else single if size == 1 else batches
    requests = load.requests // 4 if size > 1 else load.requests
    load_before = os.getloadavg()[0]
    passes = [
        asyncio.run(drive(url, bodies, concurrency, requests, load.time_cap_s)) for _ in range(load.repeats)
    ]
    row = {"window_ms": window, **scenario_row(name, size, concurrency, passes)}
    row["warning"] = timing_warning(load_before, os.getloadavg()[0], [row["req_per_s_spread_pct"]])
    print(
        f"  window {window:g} ms  {name:<8} c={concurrency:<3} {row['req_per_s']:>8,.0f} req/s "
        f"{row['sentences_per_s']:>8,.0f} sentences/s  p50 {row['p50_ms']:.1f} ms  "
        f"p99 {row['p99_ms']:.1f} ms {row['warning']}",
        flush=True,
    )
    return row


def serve_load_test(load: LoadTest) -> dict:
    """Every scenario against one server per window; prints the table and writes <out>/serve_results.json."""
    out = Path(load.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = review_splits(load.data_dir, load.data)
    if splits is not None:
        texts = splits["test"]["text"].tolist()[:4096]
    else:
        texts = synthetic_reviews(1024, seed=0)["text"].tolist()
    single = [json.dumps({"text": t}).encode() for t in texts]
    batches = [json.dumps({"texts": (texts * 2)[i : i + 64]}).encode() for i in range(0, len(texts), 64)]
    machine = machine_info(1)
    rows = []
    for window in load.windows_ms:
        process, url = start_server(load, window, out / "serve_server.log")
        try:
            rows += [scenario(load, url, window, spec, single, batches) for spec in load.scenarios]
        finally:
            process.terminate()
            process.wait(timeout=30)
    targets = serve_targets(rows)
    show(
        "6. serving: serve.py under load on 127.0.0.1 (median over repeats; spread = (max - min) / median)",
        rows,
        [
            "window_ms",
            "scenario",
            "concurrency",
            "texts_per_request",
            "req_per_s",
            "req_per_s_spread_pct",
            "sentences_per_s",
            "p50_ms",
            "p99_ms",
            "errors",
            "warning",
        ],
    )
    show("6. serving targets", targets)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {
        "machine": machine,
        "settings": dataclasses.asdict(load),
        "sentences": len(texts),
        "rows": rows,
        "targets": targets,
    }
    utils.atomic_write_json(out / "serve_results.json", results)
    print(f"wrote {out / 'serve_results.json'}")
    return results


def serve_main(argv: list[str]) -> dict:
    """python bench.py serve [--student DIR] [--backend B] [--requests N] [--time-cap S] [--repeats R] ..."""
    parser = argparse.ArgumentParser(prog="bench.py serve", description=serve_load_test.__doc__)
    parser.add_argument("--student", help="student folder or Hub id (default: serve.py's bundled student)")
    parser.add_argument("--backend", default="onnx-int8", choices=BACKENDS)
    parser.add_argument(
        "--windows-ms",
        type=float,
        nargs="+",
        default=[0.0, 2.0],
        help="micro-batching windows, one server each (0: off; default: %(default)s)",
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="per scenario and repeat (default: %(default)s)"
    )
    parser.add_argument(
        "--time-cap", type=float, default=10.0, help="seconds per scenario and repeat (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per scenario (default: %(default)s)")
    parser.add_argument("--data-dir", help="NSMC folder with test reviews (default: the sample in models/)")
    parser.add_argument("--data", help="or your own reviews (distil.py --data: a file or folder)")
    parser.add_argument("--out", default="bench_out", help="for serve_results.json (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        load = LoadTest(
            student=args.student,
            backend=args.backend,
            windows_ms=tuple(args.windows_ms),
            requests=args.requests,
            time_cap_s=args.time_cap,
            repeats=args.repeats,
            out=args.out,
            data_dir=args.data_dir,
            data=args.data,
        )
        # a missing or broken student fails here, before a server starts
        Student.from_pretrained(load.student or bundled_student(), backend=load.backend)
        return serve_load_test(load)  # a --data-dir without the NSMC files fails before a server starts too
    except (ValueError, FileNotFoundError, ServerStartError) as err:
        raise SystemExit(f"bench.py serve: {utils.one_line(err)}") from None


# -----------------------------------------------------------------------------
# 6. peers: what a user would pick instead (n-gram models), measured beside the students


@dataclass
class PeersConfig:
    """The n-gram peers: scikit-learn TF-IDF + LR (the scikit-learn teacher's pipeline) and fastText."""

    tfidf_lr: teachers.SklearnTeacherConfig = setting(
        help="the TF-IDF + logistic regression settings (teacher.SklearnTeacherConfig)",
        default_factory=teachers.SklearnTeacherConfig,
    )
    fasttext_dim: int = setting(64, "fastText word vector size", bounds="[1, inf)")
    fasttext_word_ngrams: int = setting(2, "fastText word n-grams (2: bigrams)", bounds="[1, inf)")
    fasttext_minn: int = setting(2, "shortest fastText character n-gram", bounds="[1, inf)")
    fasttext_maxn: int = setting(4, "longest fastText character n-gram", bounds="[1, inf)")
    fasttext_epochs: int = setting(10, "fastText training epochs", bounds="[1, inf)")
    fasttext_bucket: int = setting(2_000_000, "fastText n-gram hash buckets", bounds="[1, inf)")
    quantize_cutoff: int = setting(
        100_000, "words and n-grams kept by quantized fastText (then retrained)", bounds="[1, inf)"
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.fasttext_minn > self.fasttext_maxn or self.fasttext_dim % 2:
            raise ValueError(
                "PeersConfig needs fasttext_minn <= fasttext_maxn and an even fasttext_dim (for "
                f"quantization); got minn {self.fasttext_minn}, maxn {self.fasttext_maxn}, "
                f"dim {self.fasttext_dim}"
            )

    def fasttext_options(self) -> dict[str, int]:
        """The keyword arguments of fasttext.train_supervised that these settings name."""
        return {
            "dim": self.fasttext_dim,
            "wordNgrams": self.fasttext_word_ngrams,
            "minn": self.fasttext_minn,
            "maxn": self.fasttext_maxn,
            "epoch": self.fasttext_epochs,
            "bucket": self.fasttext_bucket,
        }


def _files_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _peer_row(
    model: str,
    predict: Callable[[list[str]], list[int]],
    test: pd.DataFrame,
    texts: list[str],
    settings: Settings,
    train_seconds: float,
    size_bytes: int,
    **extra,
) -> dict:
    """Test accuracy, train time, timings on the students' sentences and size of one peer."""
    accuracy = float(np.mean(np.array(predict(test["text"].tolist())) == test["label"].to_numpy()))
    timing = time_calls(predict, texts, settings.latency_sentences, settings.repeats)
    print(
        f"  {model:<24} test accuracy {accuracy:.4f}, {timing['batch64_per_s']:>9,.0f} sentences/s at "
        f"batch {BATCH}, {size_bytes / 1e6:,.1f} MB",
        flush=True,
    )
    return {
        "model": model,
        "kind": "peer",
        "test_accuracy": accuracy,
        "train_seconds": train_seconds,
        **timing,
        "size_bytes": size_bytes,
        **extra,
    }


def measure_tfidf_lr(
    settings: Settings,
    cfg: teachers.SklearnTeacherConfig,
    train: pd.DataFrame,
    test: pd.DataFrame,
    texts: list[str],
    tmp: Path,
) -> dict:
    """The scikit-learn teacher's pipeline as a peer; its size is that of the saved teacher (skops + JSON)."""
    pipeline = teachers.build_sklearn_pipeline(cfg)
    start = time.perf_counter()
    pipeline.fit(train["text"].tolist(), train["label"].to_numpy())
    train_seconds = time.perf_counter() - start
    directory = tmp / "tfidf-lr"
    directory.mkdir()
    teachers.save_sklearn_pipeline(pipeline, directory)
    features = int(pipeline.named_steps["classifier"].coef_.shape[1])
    return _peer_row(
        "tfidf-lr (scikit-learn)",
        lambda batch: pipeline.predict(batch).tolist(),
        test,
        texts,
        settings,
        train_seconds,
        _files_bytes(directory),
        features=features,
    )


def _fasttext_predict(model) -> Callable[[list[str]], list[int]]:
    def predict(batch: list[str]) -> list[int]:
        labels, _ = model.predict([" ".join(text.split()) for text in batch])
        return [int(label[0].removeprefix("__label__")) for label in labels]

    return predict


def measure_fasttext(
    settings: Settings, cfg: PeersConfig, train: pd.DataFrame, test: pd.DataFrame, texts: list[str], tmp: Path
) -> list[dict]:
    """fastText supervised, then its quantized form (product quantization, retrained on the kept n-grams).

    Not in a process that has built a Kiwi analyser (augment.py): fastText training then hits NaN
    (kiwipiepy 0.24.1, fasttext-numpy2-wheel)."""
    import fasttext

    train_file = tmp / "fasttext-train.txt"
    pairs = zip(train["text"], train["label"])
    lines = (f"__label__{label} {' '.join(text.split())}\n" for text, label in pairs)
    train_file.write_text("".join(lines), encoding="utf-8")
    options = cfg.fasttext_options()
    start = time.perf_counter()
    model = fasttext.train_supervised(input=str(train_file), thread=settings.threads, verbose=0, **options)
    train_seconds = time.perf_counter() - start
    model.save_model(str(tmp / "fasttext.bin"))
    rows = [
        _peer_row(
            "fasttext",
            _fasttext_predict(model),
            test,
            texts,
            settings,
            train_seconds,
            (tmp / "fasttext.bin").stat().st_size,
            options=options,
        )
    ]
    start = time.perf_counter()
    model.quantize(
        input=str(train_file),
        qnorm=True,
        retrain=True,
        cutoff=cfg.quantize_cutoff,
        thread=settings.threads,
        verbose=0,
    )
    quantize_seconds = time.perf_counter() - start
    model.save_model(str(tmp / "fasttext.ftz"))
    rows.append(
        _peer_row(
            "fasttext quantized",
            _fasttext_predict(model),
            test,
            texts,
            settings,
            train_seconds + quantize_seconds,
            (tmp / "fasttext.ftz").stat().st_size,
            quantize_seconds=quantize_seconds,
            cutoff=cfg.quantize_cutoff,
        )
    )
    return rows


def measure_peers(
    settings: Settings,
    train: pd.DataFrame,
    test: pd.DataFrame,
    texts: list[str],
    cfg: PeersConfig | None = None,
) -> list[dict]:
    """Both peers trained on ``train``, scored on all of ``test`` and timed on ``texts`` (the students'
    sentences, in calls of 64 and of 1 as in section 1) with ``settings.threads`` threads."""
    cfg = cfg or PeersConfig()
    train = train[train["label"] >= 0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure_tfidf_lr(settings, cfg.tfidf_lr, train, test, texts, Path(tmp))]
        rows += measure_fasttext(settings, cfg, train, test, texts, Path(tmp))
    return rows


def peer_data(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All train and test rows for the peers: NSMC's with --data-dir or --data's (the students' split), else
    synthetic."""
    splits = review_splits(settings.data_dir, settings.data)
    if splits is not None:
        return splits["train"], splits["test"]
    return synthetic_reviews(20_000, settings.seed), synthetic_reviews(5_000, settings.seed + 2)


# -----------------------------------------------------------------------------
# 8. the accuracy ladder: every run recorded in results/runs.csv, the README's table regenerated from it


@dataclass
class LadderConfig:
    """Where the ladder's runs and records are (the ``bench.py ladder`` command line comes from these)."""

    runs: tuple[str, ...] = setting(
        ("runs/ladder",), "folders of the ladder's runs (distil.py student --out)"
    )
    csv: str = setting("results/runs.csv", "every run's record (one row per run folder; updated in place)")
    bench: str | None = setting(None, "a bench_results.json whose peers the targets compare with")
    readme: str | None = setting(
        None, "a file whose block between <!-- ladder:start --> and <!-- ladder:end --> is rewritten"
    )
    out: str = setting("results/ladder.md", "where the generated tables go")

    def __post_init__(self) -> None:
        validate_fields(self)


RUN_COLUMNS = [
    "run_dir",
    "dataset",
    "teacher",
    "unlabeled",
    "vocab_size",
    "student_size",
    "params",
    "size_bytes",
    "alpha",
    "temperature",
    "kd_loss",
    "seed",
    "n_train",
    "epochs_run",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_f1",
    "train_seconds",
    "device",
    "seconds_per_epoch",
    "n_transfer",
    "teacher_members",
    "teacher_test_accuracy",
    "max_epochs",
    "patience",
    "teacher_fingerprint",
    "device_name",
    "options",
]
LADDER_MARKERS = ("<!-- ladder:start -->", "<!-- ladder:end -->")
SIZE_ORDER = {name: i for i, name in enumerate(SIZE_PRESETS)}


def single_teacher_accuracy(name: str) -> float | None:
    """A single teacher's test accuracy: a fine-tuned teacher's teacher.json, or the metrics.json in or beside
    a student folder (a bundle, or runs/<dataset>/<run>/student)."""
    path = Path(name)
    if (path / teachers.TEACHER_INFO).is_file():
        return json.loads((path / teachers.TEACHER_INFO).read_text(encoding="utf-8")).get("test_accuracy")
    if is_student_dir(path):
        return (read_student_info(path)[1] or {}).get("test_accuracy")
    return None


def run_record(metrics: dict, config: dict | None = None) -> dict:
    """One results/runs.csv row from a run's metrics.json and config.json (older runs: the transfer set
    counted from the unlabeled files, as training read them)."""
    row = {key: metrics.get(key) for key in RUN_COLUMNS}
    row["max_epochs"], row["patience"] = (config or {}).get("epochs"), (config or {}).get("patience")
    row["teacher_fingerprint"] = teacher_fingerprint(config)
    row["options"] = other_settings(config)
    if row["n_transfer"] is None:
        files = metrics.get("unlabeled_files") or ([metrics["unlabeled"]] if metrics.get("unlabeled") else [])
        row["n_transfer"] = metrics["n_train"] + sum(len(corpus.read_unlabeled(f)) for f in files)
    row["teacher_members"] = teacher_members(metrics)
    if row["teacher_test_accuracy"] is None and metrics.get("teacher") and not metrics.get("teachers"):
        row["teacher_test_accuracy"] = single_teacher_accuracy(metrics["teacher"])
    return row


def teacher_fingerprint(config: dict | None) -> str | None:
    """``sha256:`` and the short hash of the teacher's file fingerprints in a run's config.json (every
    member's for an ensemble; the prefix keeps an all-digit hash a string in the CSV): a teacher of the same
    name trained again, on another machine say, gets another."""
    prints = ((config or {}).get("fingerprints") or {}).get("teacher")
    return "sha256:" + utils.short_hash(prints) if prints else None


# Settings the ladder shows in columns of their own (or the run's name, or that only repeat a run: the seed).
LADDER_COLUMNS = distil.NAMED_FIELDS | {"teacher_weights", "epochs", "patience"}


def other_settings(config: dict | None) -> str:
    """A run's other settings that differ from their defaults, ``pooling=max dropout=0.3`` (pooling,
    dropout, lr, split, ...: rows that differ in them are not one row); "" for a run without config.json."""
    config = config or {}
    return " ".join(
        f"{f.name}={config[f.name]}"
        for f in dataclasses.fields(distil.RunConfig)
        if f.name in config and f.name not in LADDER_COLUMNS and config[f.name] != f.default
    )


def teacher_identity(frame: pd.DataFrame) -> pd.Series:
    """What tells teachers of the same name apart: the fingerprint of their files, or, for runs recorded
    before fingerprints were (no config.json left), the teacher's test accuracy; "" without a teacher."""
    accuracy = frame["teacher_test_accuracy"].map(lambda a: f"test {a:.5f}", na_action="ignore")
    return frame["teacher_fingerprint"].astype(object).fillna(accuracy).fillna("")


def record_runs(runs_dirs: Sequence[str | Path], csv: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Add every finished run under runs_dirs to the CSV; returns the whole record and the run folders found
    now. A run recorded before (same folder and training time) is replaced; a run trained again in the same
    folder is a new row, so the CSV keeps the history (the ladder shows each folder's latest row per
    teacher)."""
    found = [path.parent for runs_dir in runs_dirs for path in sorted(Path(runs_dir).glob("**/metrics.json"))]
    records = [
        run_record(metrics, read_json(folder / "config.json"))
        for folder in found
        if (metrics := read_json(folder / "metrics.json")).get("test_accuracy") is not None
    ]
    new = pd.DataFrame(records, columns=RUN_COLUMNS)
    return merge_csv(csv, new, ["run_dir", "train_seconds"]), new["run_dir"].tolist()


def read_json(path: Path) -> dict:
    """A JSON file's content ({} when it is missing)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def transfer_set(unlabeled: object) -> str:
    """``train`` plus the stem of each unlabeled file: ``train + unlabeled + nsmc-aug30k``."""
    if pd.isna(unlabeled) or not unlabeled:
        return "train"
    return " + ".join(["train", *(Path(part).stem for part in str(unlabeled).split("+"))])


def kd_setting(run: pd.Series) -> str:
    """A distilled row's loss: ``KL T2 α0.1`` or ``MSE α0.1`` (the temperature only softens KL)."""
    if run["kd_loss"] == "mse":
        return f"MSE α{run['alpha']:g}"
    return f"{str(run['kd_loss']).upper()} T{run['temperature']:g} α{run['alpha']:g}"


def mean_std(values: pd.Series, scale: float = 100.0) -> str:
    """``86.12 ± 0.08`` (percent) over seeds; the value alone for one seed."""
    text = f"{scale * values.mean():.2f}"
    return text + (f" ± {scale * values.std():.2f}" if len(values) > 1 else "")


def ladder_rows(frame: pd.DataFrame) -> list[dict]:
    """The ladder: runs grouped by everything but the seed (a teacher by its files, not only its name),
    ordered by student size, vocabulary, teacher and transfer set size, with each row's cost (transfer rows,
    seconds per epoch, total minutes)."""
    keys = ["dataset", "student_size", "vocab_size", "teacher_members", "teacher_identity", "unlabeled"]
    keys += ["alpha", "temperature", "kd_loss", "max_epochs", "patience", "options"]
    frame = frame.assign(teacher_identity=teacher_identity(frame), options=frame["options"].astype(object))
    several_datasets = frame["dataset"].nunique() > 1
    rows = []
    blanks = {"unlabeled": "", "max_epochs": 0, "patience": 0, "options": ""}
    for _, group in frame.fillna(blanks).groupby(keys, sort=False):
        first = group.iloc[0]
        distilled = first["teacher_members"] != "none"
        teacher_acc = group["teacher_test_accuracy"].dropna()
        rows.append(
            {
                "student": (f"{first['dataset']}: " if several_datasets else "")
                + f"{first['student_size']} v{int(first['vocab_size'])}"
                + (f" ({first['options']})" if first["options"] else ""),
                "teacher": (first["teacher"] if "×" in first["teacher_members"] else first["teacher_members"])
                + (f" ({100 * teacher_acc.iloc[0]:.2f})" if len(teacher_acc) else ""),
                "KD": kd_setting(first) if distilled else "",
                "transfer set": transfer_set(first["unlabeled"]) if distilled else "",
                "rows": f"{int(first['n_transfer']):,}",
                "seeds": len(group),
                "test acc (%)": mean_std(group["test_accuracy"]),
                "val acc (%)": mean_std(group["val_accuracy"]),
                "epochs (patience)": f"{int(first['max_epochs'])} ({int(first['patience'])})"
                if first["max_epochs"]
                else "",
                "best / last epoch": ", ".join(
                    f"{int(b)}/{int(e)}" for b, e in zip(group["best_epoch"], group["epochs_run"])
                ),
                "s / epoch": f"{group['seconds_per_epoch'].mean():.0f}",
                "total (min)": f"{group['train_seconds'].mean() / 60:.0f}",
                "_order": (
                    first["dataset"],
                    SIZE_ORDER.get(first["student_size"], 99),
                    int(first["vocab_size"]),
                    distilled,
                    first["teacher_members"],
                    int(first["n_transfer"]),
                    int(first["patience"]),
                    first["options"],
                ),
                "_size": first["student_size"],
                "_test": float(group["test_accuracy"].mean()),
                "_teacher_test": float(teacher_acc.iloc[0]) if len(teacher_acc) else None,
                "_members": first["teacher_members"],
                "_identity": first["teacher_identity"],
            }
        )
    return sorted(name_teachers_apart(rows), key=lambda r: r["_order"])


def name_teachers_apart(rows: list[dict]) -> list[dict]:
    """Rows that would read the same but for their teacher's files get the fingerprint after its name."""

    def shown(row: dict) -> tuple:
        return tuple(row[k] for k in ("student", "teacher", "KD", "transfer set", "epochs (patience)"))

    counts = collections.Counter(shown(row) for row in rows)
    for row in rows:
        if counts[shown(row)] > 1 and row["_identity"].startswith("sha256:"):
            row["teacher"] += f" [{row['_identity'].removeprefix('sha256:')}]"
    return rows


def target_row(
    target: str, value: float | None, goal: float, seeds: int | None = None, ok: bool = True
) -> dict:
    """One line of the targets table: the best value (with its seeds) and whether it meets the goal."""
    shown = (
        "not run"
        if value is None
        else f"{100 * value:.2f}" + (f" ({seeds} seed{'s' * (seeds > 1)})" if seeds else "")
    )
    return {
        "target": target,
        "best (%)": shown,
        "met": "yes" if value is not None and value >= goal and ok else "no",
    }


def ladder_targets(rows: list[dict], peers: list[dict]) -> list[dict]:
    """Issue 10's targets, met or not: an ensemble teacher >= 88.0 %, the base student >= 87.5 % and above
    the TF-IDF+LR peer of the bench run given, the tiny student >= 85.5 %; a student row counts with 3 seeds
    (mean), and a row of 3 seeds is shown before a better one of fewer."""
    tfidf = next((p["test_accuracy"] for p in peers if p["model"].startswith("tfidf-lr")), None)
    ensembles = [r["_teacher_test"] for r in rows if "×" in r["_members"] and r["_teacher_test"] is not None]
    best = {
        size: max(
            (r for r in rows if r["_size"] == size), key=lambda r: (r["seeds"] >= 3, r["_test"]), default=None
        )
        for size in ("base", "tiny")
    }
    base, tiny = best["base"], best["tiny"]
    above_peer = base is not None and tfidf is not None and base["_test"] > tfidf
    table = [
        target_row("ensemble teacher ≥ 88.0 %", max(ensembles, default=None), 0.88),
        target_row(
            "base ≥ 87.5 % (3 seeds) and > TF-IDF+LR",
            base and base["_test"],
            0.875,
            base and base["seeds"],
            above_peer and base["seeds"] >= 3,
        ),
        target_row(
            "tiny ≥ 85.5 % (3 seeds)",
            tiny and tiny["_test"],
            0.855,
            tiny and tiny["seeds"],
            tiny is not None and tiny["seeds"] >= 3,
        ),
    ]
    if tfidf is not None:
        table.append(
            {"target": "TF-IDF+LR peer (same bench run)", "best (%)": f"{100 * tfidf:.2f}", "met": ""}
        )
    return table


def peer_rows(peers: list[dict]) -> list[dict]:
    """The peers of a bench run as ladder rows: accuracy, training time, speed at batch 64, size."""
    return [
        {
            "peer (same bench run)": p["model"],
            "test acc (%)": f"{100 * p['test_accuracy']:.2f}",
            "train (s)": f"{p['train_seconds']:.0f}",
            "sentences/s, batch 64": f"{p['batch64_per_s']:,.0f}",
            "size": human_bytes(p["size_bytes"]),
        }
        for p in peers
    ]


def bench_summary(path: str | Path) -> tuple[list[dict], str]:
    """A bench_results.json's peers and the ladder's text about them (a table and the machine it ran on)."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    machine, threads = results["machine"], results["settings"]["threads"]
    load = machine["load_average_at_start"][0], machine["load_average_at_end"][0]
    text = (
        markdown(peer_rows(results["peers"]))
        + f"\n\nPeers trained and timed by `python bench.py` ({path}) on {machine['cpu']}, {threads} "
        + f"thread(s), load average {load[0]:.2f} at the start and {load[1]:.2f} at the end."
    )
    return results["peers"], text


def ensemble_legend(rows: list[dict]) -> str:
    """What each ensemble in the ladder is: its label, its members and their weights."""
    ensembles = {r["teacher"].split(" (")[0]: r["_members"] for r in rows if "×" in r["_members"]}
    return "\n".join(f"- `{label}` = {members}" for label, members in ensembles.items())


def markdown(rows: list[dict]) -> str:
    """A GitHub table of the rows' public columns (those not starting with _)."""
    columns = [c for c in rows[0] if not c.startswith("_")] if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def replace_block(path: str | Path, text: str) -> None:
    """Rewrite the part of ``path`` between the ladder markers (both must be there)."""
    content = Path(path).read_text(encoding="utf-8")
    start, end = LADDER_MARKERS
    if content.count(start) != 1 or content.count(end) != 1 or content.index(start) > content.index(end):
        raise ValueError(f"{path}: needs one {start} line before one {end} line")
    head, rest = content.split(start)
    utils.atomic_write_text(path, head + start + "\n" + text + "\n" + end + rest.split(end)[1])


def ladder(cfg: LadderConfig) -> str:
    """Record the runs in --csv, print the ladder and the targets, write them to --out (and the README)."""
    frame, found = record_runs(cfg.runs, cfg.csv)
    # the runs found now (a copied run keeps its first run_dir) and those recorded before under the folders;
    # a folder's latest run per teacher (a folder trained again from a rebuilt teacher keeps both)
    latest = frame[~frame.assign(t=teacher_identity(frame)).duplicated(["run_dir", "t"], keep="last")]
    ours = [d in found or any(Path(str(d)).is_relative_to(r) for r in cfg.runs) for d in latest["run_dir"]]
    rows = ladder_rows(latest.loc[ours])
    if not rows:
        raise ValueError(
            f"no finished run under {' '.join(cfg.runs)}: train with `distil.py student --out DIR`"
        )
    peers, about_peers = bench_summary(cfg.bench) if cfg.bench else ([], "")
    legend = ensemble_legend(rows)
    text = (
        markdown(rows)
        + (f"\n\n{legend}" if legend else "")
        + "\n\n"
        + markdown(ladder_targets(rows, peers))
        + (f"\n\n{about_peers}" if about_peers else "")
        + f"\n\n_Generated by `python bench.py ladder --runs {' '.join(cfg.runs)}"
        + (f" --bench {cfg.bench}" if cfg.bench else "")
        + f"` from {cfg.csv}._"
    )
    utils.atomic_write_text(cfg.out, text + "\n")
    if cfg.readme:
        replace_block(cfg.readme, text)
    print(text)  # after the writes: a reader that stops early (| head) must not lose them
    return text


def ladder_main(argv: list[str]) -> str:
    """python bench.py ladder [--runs runs/ladder] [--csv results/runs.csv] [--bench F] [--readme F]"""
    parser = argparse.ArgumentParser(prog="bench.py ladder", description=ladder.__doc__)
    add_arguments(parser, LadderConfig)
    args = parser.parse_args(argv)
    try:
        return ladder(LadderConfig(**vars(args)))
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"bench.py ladder: {utils.one_line(err)}") from None


# -----------------------------------------------------------------------------
# driver


def show(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    print(f"\n== {title}")
    if not rows:
        print("  (nothing to show)")
        return
    frame = pd.DataFrame(rows)
    print(frame[columns or list(frame.columns)].to_string(index=False, float_format=lambda x: f"{x:,.4g}"))


SPEED_COLUMNS = [
    "model",
    "backend",
    "params",
    "end_to_end_batch1_median_ms",
    "end_to_end_batch1_median_ms_spread_pct",
    "end_to_end_batch64_per_s",
    "end_to_end_batch64_per_s_spread_pct",
    "model_only_batch1_median_ms",
    "model_only_batch64_per_s",
    "model_only_batch64_per_s_spread_pct",
    "warning",
]
CACHE_COLUMNS = [
    "teacher",
    "student_step_s",
    "teacher_batch_s",
    "epoch_s_with_cache",
    "epoch_s_teacher_in_loop",
    "speedup",
    "cache_build_s",
]
ACCURACY_COLUMNS = [
    "model",
    "teacher",
    "alpha",
    "unlabeled",
    "vocab_size",
    "params",
    "seeds",
    "val_accuracy_mean",
    "test_accuracy_mean",
    "test_accuracy_std",
    "test_f1_mean",
]


def report_machine(threads: int) -> dict:
    """The machine's description, printed, with a warning when other processes keep it busy."""
    machine = machine_info(threads)
    print(
        f"machine: {machine['cpu']}, {machine['cpus_available']} of {machine['cpus']} CPUs, "
        f"{threads} threads "
        f"(torch and onnxruntime), load average {machine['load_average_at_start']}"
    )
    print(
        f"python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"onnxruntime {machine['onnxruntime']}, tokenizers {machine['tokenizers']}"
    )
    if machine["load_average_at_start"][0] > machine["cpus_available"] / 2:
        print(
            "WARNING: other processes keep this machine busy: timings are unreliable, "
            "multi-threaded ones most"
        )
    return machine


def model_sections(
    settings: Settings,
    train: pd.DataFrame,
    texts: list[str],
    tokenizers: tuple,
    teachers: Sequence[TeacherSpec],
) -> dict:
    """Sections 1-3 (speed, size, the logits cache) on the models built once; printed and returned.
    ``tokenizers``: the student's and the teachers' stand-in, from ``load_tokenizers``."""
    student_tokenizer, teacher_tokenizer = tokenizers
    built = {spec: spec.build() for spec in teachers}
    print("\n== 1. speed (timing; sentences/s, wall clock)")
    speed = measure_speed(settings, texts, student_tokenizer, teacher_tokenizer, built)
    ratios = speed_ratios(speed)
    targets = check_targets(speed, ratios)
    show("1. speed: end to end (text in, label out) and model only (token ids in)", speed, SPEED_COLUMNS)
    show("1. speed ratios, student / teacher (same run, same sentences)", ratios)
    show("1. targets for the base student", targets)

    size, reductions = measure_size(settings, len(student_tokenizer), built)
    show("2. size", size)
    show("2. size reduction, teacher / student", reductions)

    cache = measure_cache(settings, train, student_tokenizer, teacher_tokenizer, built)
    show(
        f"3. seconds per distillation epoch on this CPU ({EPOCH_EXAMPLES:,} examples, batch {BATCH}; "
        "EXTRAPOLATED from measured training steps and teacher forward passes)",
        cache,
        CACHE_COLUMNS,
    )
    return {
        "speed": speed,
        "speed_ratios": ratios,
        "targets": targets,
        "size": size,
        "size_reduction": reductions,
        "cache": cache,
    }


def accuracy_sections(settings: Settings, texts: list[str], out: Path) -> dict:
    """Sections 4 and 6 (the runs' accuracy, the peers trained and timed here) and the plot."""
    runs = read_runs(settings.runs)
    accuracy = accuracy_table(runs)
    teacher_accuracy = teacher_accuracies(runs, settings.teacher_root)
    exported = exported_accuracy(settings, runs)
    show(f"4. accuracy of the runs in {settings.runs} (mean and std over seeds)", accuracy, ACCURACY_COLUMNS)
    show("4. teachers", teacher_accuracy)
    show("4. accuracy of the exported forms (NSMC test)", exported)

    print("\n== 6. peers (training and timing)")
    peers = measure_peers(settings, *peer_data(settings), texts)
    show(
        f"6. peers: n-gram models trained and timed in this run ({settings.threads} threads)",
        peers,
        ["model", "test_accuracy", "train_seconds", "batch64_per_s", "batch1_median_ms", "size_bytes"],
    )
    plot = out / "accuracy_vs_params.png"
    plot_accuracy(accuracy, teacher_accuracy, plot)
    return {
        "accuracy": accuracy,
        "teacher_accuracy": teacher_accuracy,
        "exported_accuracy": exported,
        "plot": str(plot),
        "peers": peers,
    }


def run(settings: Settings, teachers: Sequence[TeacherSpec] = TEACHERS) -> dict:
    """Every section; prints the tables, writes <out>/bench_results.json and the plot, and returns the
    JSON's content."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.threads)
    machine = report_machine(settings.threads)
    train, texts, source = load_texts(settings)
    tokenizers = load_tokenizers(train, out / "tokenizer")
    lengths = [len(s) for s in encode(tokenizers[0], texts, StudentConfig.max_length)]
    print(
        f"sentences: {len(texts)} {source}; {np.mean(lengths):.1f} student tokens on average "
        f"(max {max(lengths)}); student vocabulary {len(tokenizers[0])} (asked for {STUDENT_VOCAB}), "
        f"trained on {len(train):,} texts"
    )
    print(
        "teachers: random weights in their real shapes; their tokenizer is a stand-in WordPiece of "
        f"{len(tokenizers[1])} tokens trained on the same texts"
    )
    sections = model_sections(settings, train, texts, tokenizers, teachers)
    sections |= accuracy_sections(settings, texts, out)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {
        "machine": machine,
        "settings": dataclasses.asdict(settings),
        "sentences": {"source": source, "count": len(texts), "mean_student_tokens": float(np.mean(lengths))},
        "teachers": [dataclasses.asdict(t) for t in teachers],
        "tokenizers": {
            "student_vocab": len(tokenizers[0]),
            "teacher_stand_in_vocab": len(tokenizers[1]),
            "trained_on_texts": len(train),
        },
        **sections,
    }
    text = json.dumps(
        results,
        indent=2,
        ensure_ascii=False,
        default=lambda x: x.item() if isinstance(x, np.generic) else str(x),
    )
    (out / "bench_results.json").write_text(text + "\n", encoding="utf-8")
    print(
        f"\nwrote {out / 'bench_results.json'} and {sections['plot']}; "
        f"load average at the end {machine['load_average_at_end']}"
    )
    return json.loads(text)


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    add_arguments(parser, Settings)
    quick = "fewer sentences and repeats, ONNX forms of the base student only"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the options; --quick changes the values that were left at their defaults."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    if args.quick:
        defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
        values.update({k: v for k, v in QUICK.items() if values[k] == defaults[k]})
    return Settings(**values)


def main(argv: list[str] | None = None) -> dict:
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    if argv and argv[0] == "ladder":
        return ladder_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as err:
        if args.debug:
            raise
        print(f"error: {utils.one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    return run(settings)


if __name__ == "__main__":
    main(sys.argv[1:])
