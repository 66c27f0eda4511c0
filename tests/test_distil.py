"""Teacher-logits cache, losses, the distillation trainer and the command line."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import distil
import teacher
import utils
from conftest import write_nsmc
from distil import Paths, RunConfig

FAST = dict(epochs=3, batch_size=32, size="tiny", vocab_size=300, lr=1e-2, warmup_ratio=0.0)


def paths_for(tmp_path: Path, data_dir: Path, teacher_root: Path | None = None) -> Paths:
    return Paths(str(data_dir), str(tmp_path / "data"), str(tmp_path / "tokenizer"), str(teacher_root or tmp_path / "teachers"), str(tmp_path / "runs"))


@pytest.fixture
def count_teacher_runs(monkeypatch) -> list[int]:
    """Count how many texts the teacher is run on, call by call."""
    import teacher as teachers

    calls: list[int] = []
    original = teachers.Teacher.predict_logits

    def counting(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(teachers.Teacher, "predict_logits", counting)
    return calls


# --- losses and batching ---------------------------------------------------------------------------------


def test_alpha_one_is_plain_cross_entropy():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 2), torch.randn(8, 2), torch.randint(0, 2, (8,))
    total, ce, kd = distil.distillation_loss(s, y, t, alpha=1.0)
    assert torch.allclose(total, F.cross_entropy(s, y)) and kd.item() == 0.0


def test_kl_loss_is_hinton_with_t_squared():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 2), torch.randn(8, 2), torch.randint(0, 2, (8,))
    T, alpha = 3.0, 0.25
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, -1))).sum(-1).mean() * T**2
    total, ce, kd = distil.distillation_loss(s, y, t, alpha=alpha, temperature=T, kd_loss="kl")
    assert torch.allclose(kd, kl, atol=1e-6)
    assert torch.allclose(total, alpha * F.cross_entropy(s, y) + (1 - alpha) * kl, atol=1e-6)
    # Same distributions: no KD loss.
    assert distil.distillation_loss(t, y, t.clone(), alpha=0.0)[0].abs().item() < 1e-6


def test_mse_loss_on_logits_and_unlabeled_rows():
    torch.manual_seed(0)
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    y = torch.tensor([1, 0, -1, -1, 1, 0])
    total, ce, kd = distil.distillation_loss(s, y, t, alpha=0.5, kd_loss="mse")
    assert torch.allclose(kd, ((s - t) ** 2).mean())
    labelled = y >= 0
    assert torch.allclose(ce, F.cross_entropy(s[labelled], y[labelled]))  # unlabeled rows only in KD
    assert torch.allclose(total, 0.5 * ce + 0.5 * kd)


def test_bucket_batches_cover_every_example_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=1000)
    batches = distil.bucket_batches(lengths, 16, np.random.default_rng(1), bucket=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 15  # random batches would spread over ~90 tokens


def test_run_config_validates_and_names_runs():
    with pytest.raises(ValueError, match="--alpha 1 or --teacher"):
        RunConfig(teacher=None, alpha=0.5)
    with pytest.raises(ValueError, match="kd_loss"):
        RunConfig(teacher="t", kd_loss="l1")
    assert RunConfig(teacher="teacher_model/koelectra-nsmc", alpha=0.1, temperature=2).run_name() == "base-v3000-koelectra-nsmc-a0.1-T2"
    baseline = RunConfig(teacher="x", alpha=1.0, temperature=5)
    assert baseline.teacher is None and baseline.run_name() == "base-v3000-none-a1"
    assert RunConfig(alpha=1.0, size="tiny", hidden_dim=40, seed=7).run_name() == "e8h40-v3000-none-a1-s7"


def test_grid_runs_every_combination():
    configs = distil.grid(RunConfig(teacher="t"), vocab_size=[2000, 3000], alpha=[0.1, 0.5, 1.0], seed=[1])
    assert len(configs) == 6
    assert {(c.vocab_size, c.alpha) for c in configs} == {(v, a) for v in (2000, 3000) for a in (0.1, 0.5, 1.0)}


# --- logits cache -----------------------------------------------------------------------------------------


def test_cache_build_hit_and_rebuild_on_changed_data(tmp_path, data_dir, tiny_teacher, count_teacher_runs):
    splits = utils.load_dataset("nsmc", data_dir=data_dir)
    root = tmp_path / "teachers"
    train = splits["train"]
    first = teacher.teacher_logits(str(tiny_teacher), train, "nsmc", "train", teacher_root=root)
    path = tiny_teacher / "logits" / "nsmc-train.safetensors"
    assert path.is_file() and first.shape == (len(train), 2) and count_teacher_runs == [len(train)]
    # Hit: same data, and any subset or reordering of it, without running the teacher.
    again = teacher.teacher_logits(str(tiny_teacher), train, "nsmc", "train", teacher_root=root)
    subset = train.sample(50, random_state=0)
    part = teacher.teacher_logits(str(tiny_teacher), subset, "nsmc", "train", teacher_root=root)
    assert torch.equal(first, again) and torch.equal(part, first[torch.tensor(subset.index.to_numpy())])
    assert count_teacher_runs == [len(train)]
    # A changed text is never looked up misaligned: refused, or rebuilt.
    changed = train.copy()
    changed.loc[3, "text"] = "완전히 다른 리뷰"
    with pytest.raises(utils.CacheMismatch, match="different text"):
        teacher.teacher_logits(str(tiny_teacher), changed, "nsmc", "train", teacher_root=root,
                               on_mismatch="error")
    teacher.teacher_logits(str(tiny_teacher), changed, "nsmc", "train", teacher_root=root)
    assert count_teacher_runs == [len(train), len(train)]
    # Another max length means other logits: rebuilt.
    teacher.teacher_logits(str(tiny_teacher), changed, "nsmc", "train", teacher_root=root, max_length=16)
    assert len(count_teacher_runs) == 3


def test_cache_rebuilt_when_teacher_weights_change(tmp_path, data_dir, tiny_teacher, count_teacher_runs):
    import shutil

    teacher_dir = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher_dir, ignore=shutil.ignore_patterns("logits"))
    valid = utils.load_dataset("nsmc", data_dir=data_dir)["valid"]
    teacher.teacher_logits(str(teacher_dir), valid, "nsmc", "valid")
    from safetensors.torch import load_file, save_file

    weights = load_file(teacher_dir / "model.safetensors")
    name = next(k for k in weights if k.startswith("classifier"))
    weights[name] = weights[name] + 1.0
    save_file(weights, teacher_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(utils.CacheMismatch, match="teacher_fingerprint"):
        teacher.teacher_logits(str(teacher_dir), valid, "nsmc", "valid", on_mismatch="error")
    teacher.teacher_logits(str(teacher_dir), valid, "nsmc", "valid")
    assert len(count_teacher_runs) == 2


def test_cache_all_loads_the_teacher_once(tmp_path, data_dir, tiny_teacher, monkeypatch, capsys):
    import shutil

    teacher_dir = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher_dir, ignore=shutil.ignore_patterns("logits"))
    splits = utils.load_dataset("nsmc", data_dir=data_dir)
    loads: list[str] = []
    original = teacher.load_teacher

    def counting(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(teacher, "load_teacher", counting)
    unlabeled = tmp_path / "extra.txt"
    unlabeled.write_text("정말 최고\n완전 별로\n", encoding="utf-8")
    logits = teacher.cache_all(str(teacher_dir), splits, "nsmc", device="cpu", unlabeled=unlabeled)
    assert len(loads) == 1  # four caches built, one teacher load
    sizes = {split: len(df) for split, df in splits.items()}
    assert {split: len(v) for split, v in logits.items()} == {**sizes, "unlabeled-extra": 2}
    assert "teacher test accuracy" in capsys.readouterr().out
    again = teacher.cache_all(str(teacher_dir), splits, "nsmc", device="cpu", unlabeled=unlabeled)
    assert len(loads) == 1 and all(torch.equal(again[k], logits[k]) for k in logits)  # all cached: no load


def test_logits_cache_file_round_trip(tmp_path):
    cache = utils.LogitsCache(["a", "나", "c-3"], utils.text_hashes(["x", "y", "z"]), torch.randn(3, 2), {"format": utils.CACHE_FORMAT})
    cache.save(tmp_path / "c.safetensors")
    loaded = utils.LogitsCache.load(tmp_path / "c.safetensors")
    assert loaded.ids == cache.ids and torch.equal(loaded.logits, cache.logits) and torch.equal(loaded.hashes, cache.hashes)
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


# --- training ---------------------------------------------------------------------------------------------


def test_baseline_learns_and_writes_its_run(tmp_path, data_dir):
    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(alpha=1.0, **FAST)
    metrics = distil.train_student(cfg, paths, device="cpu")
    run_dir = Path(paths.out) / "nsmc" / "tiny-v300-none-a1"
    assert metrics["test_accuracy"] > 0.8 and metrics["test_f1"] > 0.8
    required = {"dataset", "teacher", "vocab_size", "student_size", "params", "size_bytes", "alpha", "temperature", "kd_loss",
                "epochs_run", "best_epoch", "val_accuracy", "test_accuracy", "test_f1", "train_seconds"}
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert required <= set(saved) and saved["params"] > 0 and saved["epochs_run"] == 3
    assert (run_dir / "student" / "model.safetensors").stat().st_size == saved["size_bytes"]
    assert json.loads((run_dir / "config.json").read_text()) == dataclasses.asdict(cfg)
    # Finished: a second call reuses it; other settings in the same directory are refused.
    assert distil.train_student(cfg, paths, device="cpu") == saved
    with pytest.raises(ValueError, match="other settings .*lr"):
        distil.train_student(dataclasses.replace(cfg, lr=0.5), paths, device="cpu")


def test_tensorboard_tags_and_hparams(tmp_path, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    paths = paths_for(tmp_path, data_dir)
    metrics = distil.train_student(RunConfig(alpha=1.0, **{**FAST, "epochs": 1}), paths, device="cpu", log_every=5)
    events = EventAccumulator(metrics["run_dir"])
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/ce", "train/kd", "train/lr", "valid/accuracy", "valid/f1", "hparam/test_accuracy"} <= tags
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(events.PluginTagToContent("hparams"))


def test_resume_continues_where_it_stopped(tmp_path, data_dir, monkeypatch):
    cfg = RunConfig(alpha=1.0, **{**FAST, "epochs": 3, "patience": 10})
    straight = distil.train_student(cfg, paths_for(tmp_path / "a", data_dir), device="cpu")

    paths = paths_for(tmp_path / "b", data_dir)
    original = distil.evaluate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # validation after the second epoch: the runtime disconnects
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(distil, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distil.train_student(cfg, paths, device="cpu")
    monkeypatch.setattr(distil, "evaluate", original)
    run_dir = Path(paths.out) / "nsmc" / cfg.run_name()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
    resumed = distil.train_student(cfg, paths, device="cpu")
    assert resumed["epochs_run"] == 3
    assert [h["val_accuracy"] for h in resumed["history"]] == [h["val_accuracy"] for h in straight["history"]]
    assert resumed["test_accuracy"] == straight["test_accuracy"]


def test_distillation_reuses_cache_across_vocab_sizes(tmp_path, data_dir, tiny_teacher, count_teacher_runs):
    paths = paths_for(tmp_path, data_dir)
    base = RunConfig(teacher=str(tiny_teacher), alpha=0.5, **{**FAST, "epochs": 1})
    first = distil.train_student(base, paths, device="cpu")
    assert count_teacher_runs and first["teacher"] == str(tiny_teacher)
    runs = len(count_teacher_runs)
    second = distil.train_student(dataclasses.replace(base, vocab_size=200, size="mini", kd_loss="mse"), paths, device="cpu")
    assert len(count_teacher_runs) == runs  # new vocab size, size and loss: the teacher did not run again
    assert second["vocab_size"] == 200 and second["kd_loss"] == "mse"


def test_student_teacher_distillation_beats_chance_via_cli(tmp_path, data_dir, capsys):
    common = ["--dataset", "nsmc", "--data-dir", str(data_dir), "--data-root", str(tmp_path / "data"), "--tokenizer-root",
              str(tmp_path / "tok"), "--teacher-root", str(tmp_path / "teachers"), "--out", str(tmp_path / "runs"), "--device", "cpu", "-q"]
    fast = ["--vocab-size", "300", "--epochs", "3", "--batch-size", "32", "--lr", "0.01", "--warmup-ratio", "0"]
    [big] = distil.main(["run", *common, *fast, "--size", "small", "--alpha", "1"])
    assert big["test_accuracy"] > 0.8
    teacher_dir = Path(big["run_dir"]) / "student"
    distil.main(["cache", *common, "--teacher", str(teacher_dir)])
    assert sorted(p.name for p in (teacher_dir / "logits").iterdir()) == ["nsmc-test.safetensors", "nsmc-train.safetensors", "nsmc-valid.safetensors"]
    results = distil.main(["student", *common, *fast, "--size", "tiny", "--teacher", str(teacher_dir), "--alpha", "0.1", "1"])
    assert {r["alpha"] for r in results} == {0.1, 1.0}
    assert all(r["test_accuracy"] > 0.8 for r in results)
    out = capsys.readouterr().out
    assert "test_accuracy" in out and "teacher test accuracy" in out
    for backend in ("torch", "onnx-int8"):
        distil.main(["predict", "--student", str(Path(results[0]["run_dir"]) / "student"), "--backend", backend, "정말 최고 명작", "최악 노잼"])
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].startswith("positive") and lines[1].startswith("negative")


def test_cli_help_documents_stages(capsys):
    with pytest.raises(SystemExit):
        distil.main(["--help"])
    out = capsys.readouterr().out
    for stage in ("download", "tokenizer", "teacher", "cache", "student", "run", "predict"):
        assert stage in out


def test_unlabeled_text_is_learnt_through_the_teacher(tmp_path, data_dir, tiny_teacher, count_teacher_runs):
    from conftest import make_reviews

    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(text for text, _ in make_reviews(150, seed=9)) + "\n", encoding="utf-8")
    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(teacher=str(tiny_teacher), alpha=0.5, unlabeled=str(unlabeled), **{**FAST, "epochs": 1})
    metrics = distil.train_student(cfg, paths, device="cpu")
    assert metrics["n_train"] > 0 and "u-unlabeled" in metrics["run_dir"]
    assert (tiny_teacher / "logits" / "nsmc-unlabeled-unlabeled.safetensors").is_file()
    assert 150 - 5 <= count_teacher_runs[-1] <= 150  # the unlabeled texts went through the teacher once
    with pytest.raises(ValueError, match="needs alpha < 1"):
        RunConfig(teacher=str(tiny_teacher), alpha=1.0, unlabeled=str(unlabeled))
