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
6. peers    n-gram models a user would try instead (peers.py), trained on the same train split and timed
            on the same sentences: scikit-learn TF-IDF + LogisticRegression and fastText (and its quantized
            form).

The load test of serve.py is `python loadtest.py`, the accuracy ladder `python ladder.py`.

Every timing is the median over repeats with its spread; rows measured while the machine was busy (load
average above half the CPUs) or whose repeats disagree are flagged in a "warning" column.

Batch 64 means one call per 64 consecutive sample sentences (each call sorts and pads its own), batch 1 one
call per sentence. Every model runs with --threads threads (default 1); speed ratios compare numbers
measured in the same run on the same sentences. Timings on a busy machine are unreliable: the header
prints the CPU, versions and load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import corpus
import utils
import vocab
from config import BACKENDS, SIZE_PRESETS, StudentConfig
from model import BiLSTMClassifier, Student, encode, export_onnx, pad_ids
from peers import measure_peers, peer_data
from report import accuracy_table, plot_accuracy, read_runs, show, teacher_accuracies
from settings import add_arguments, setting, validate_fields
from synthetic import synthetic_reviews
from timing import BATCH, cycle, machine_busy, machine_info, mean_seconds, time_calls, timing_warning
from train import bucket_batches, distillation_loss
from utils import count_parameters

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
# data


def load_texts(settings: Settings) -> tuple[pd.DataFrame, list[str], str]:
    """Training texts (for the tokenizers and the cache section), the timed test sentences, and their
    source."""
    splits = corpus.load_reviews(settings.data, settings.data_dir)
    if splits is not None:
        where = f"NSMC ({settings.data_dir})"
        if settings.data:
            where = f"{corpus.data_name(settings.data)} ({settings.data})"
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

    student = vocab.get_tokenizer(train, STUDENT_VOCAB, "bench", root)
    teacher = vocab.get_tokenizer(train, TEACHER_VOCAB, "bench", root)
    cls_id, sep_id = teacher.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    teacher.backend_tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    return student, teacher


# -----------------------------------------------------------------------------
# 1. speed


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
        loss, _, _ = distillation_loss(logits, labels[idx], cached_logits[idx], 0.1, 2.0, "kl")
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
    batches = bucket_batches(np.array([len(s) for s in student_ids]), BATCH, rng)
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


# -----------------------------------------------------------------------------
# 4. accuracy of the exported forms


def exported_accuracy(settings: Settings, runs: pd.DataFrame) -> list[dict]:
    """Accuracy of each backend on the test set (NSMC's, or --data's), for the best run (by validation
    accuracy) of each size."""
    splits = corpus.load_reviews(settings.data, settings.data_dir)
    if splits is None or runs.empty:
        return []
    test = splits["test"]
    if settings.eval_sentences is not None and settings.eval_sentences < len(test):
        test = test.sample(n=settings.eval_sentences, random_state=settings.seed)
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    nsmc = runs[runs["dataset"] == (corpus.data_name(settings.data) if settings.data else "nsmc")]
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
# driver


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
    if machine_busy(machine["load_average_at_start"][0], machine["cpus_available"]):
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
    """Run every section with the settings on the command line; returns bench_results.json's content."""
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
