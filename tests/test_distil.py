"""Teacher-logits cache, losses, the distillation trainer and the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corpus
import distil
import ladder
import logits_cache
import teacher as teachers
import train
import utils
import vocab
from config import DEFAULT_ALPHA, DataConfig, Paths, RunConfig, TeacherConfig, configs_from_params, grid
from conftest import cli_common, write_nsmc
from model import BiLSTMClassifier

FAST = dict(epochs=3, batch_size=32, size="tiny", vocab_size=300, lr=1e-2, warmup_ratio=0.0)


def paths_for(tmp_path: Path, data_dir: Path, teacher_root: Path | None = None) -> Paths:
    return Paths(
        str(data_dir),
        str(tmp_path / "data"),
        str(tmp_path / "tokenizer"),
        str(teacher_root or tmp_path / "teachers"),
        str(tmp_path / "runs"),
    )


# --- losses and batching ---------------------------------------------------------------------------------


def test_alpha_one_is_plain_cross_entropy():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 2), torch.randn(8, 2), torch.randint(0, 2, (8,))
    total, ce, kd = train.distillation_loss(s, y, t, alpha=1.0)
    assert torch.allclose(total, F.cross_entropy(s, y)) and torch.allclose(ce, total) and kd.item() == 0.0


def test_kl_loss_is_hinton_with_t_squared():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 2), torch.randn(8, 2), torch.randint(0, 2, (8,))
    T, alpha = 3.0, 0.25
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, -1))).sum(-1).mean() * T**2
    total, ce, kd = train.distillation_loss(s, y, t, alpha=alpha, temperature=T, kd_loss="kl")
    assert torch.allclose(kd, kl, atol=1e-6) and torch.allclose(ce, F.cross_entropy(s, y))
    assert torch.allclose(total, alpha * F.cross_entropy(s, y) + (1 - alpha) * kl, atol=1e-6)
    # Same distributions: no KD loss.
    assert train.distillation_loss(t, y, t.clone(), alpha=0.0)[0].abs().item() < 1e-6


def test_mse_loss_on_logits_and_unlabeled_rows():
    torch.manual_seed(0)
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    y = torch.tensor([1, 0, -1, -1, 1, 0])
    total, ce, kd = train.distillation_loss(s, y, t, alpha=0.5, kd_loss="mse")
    assert torch.allclose(kd, ((s - t) ** 2).mean())
    labelled = y >= 0
    assert torch.allclose(ce, F.cross_entropy(s[labelled], y[labelled]))  # unlabeled rows only in KD
    assert torch.allclose(total, 0.5 * ce + 0.5 * kd)


def test_bucket_batches_cover_every_example_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=1000)
    batches = train.bucket_batches(lengths, 16, np.random.default_rng(1), bucket=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 15  # random batches would spread over ~90 tokens


def test_run_config_validates_and_names_runs():
    with pytest.raises(ValueError, match="--alpha 1 or --teacher"):
        RunConfig(teacher=None, alpha=0.5)
    with pytest.raises(ValueError, match="kd_loss"):
        RunConfig(teacher="t", kd_loss="l1")
    cfg = RunConfig(teacher="teacher_model/koelectra-nsmc", alpha=0.1, temperature=2)
    assert cfg.run_name() == "base-v3000-koelectra-nsmc-a0.1-T2"
    assert RunConfig(alpha=1.0).run_name() == "base-v3000-none-a1"
    assert RunConfig(alpha=1.0, size="tiny", hidden_dim=40, seed=7).run_name() == "e8h40-v3000-none-a1-s7"
    assert RunConfig().alpha == 1.0 and RunConfig(teacher="t").alpha == DEFAULT_ALPHA


def test_a_baseline_has_no_teacher_and_the_grid_builds_baselines_explicitly():
    for extra in (dict(teacher="x"), dict(temperature=5.0), dict(kd_loss="mse"), dict(teacher_max_length=64)):
        with pytest.raises(ValueError, match="alpha 1 is the baseline.*" + next(iter(extra))):
            RunConfig(alpha=1.0, **extra)
    configs = grid(RunConfig(teacher="t", temperature=5.0, kd_loss="mse"), alpha=[0.1, 1.0])
    distilled, baseline = configs
    assert (distilled.teacher, distilled.temperature, distilled.kd_loss) == ("t", 5.0, "mse")
    assert baseline == RunConfig(alpha=1.0)  # no teacher, default distillation settings
    # Two temperatures share one baseline.
    assert len(grid(RunConfig(teacher="t"), alpha=[0.1, 1.0], temperature=[2.0, 5.0])) == 3


def test_grid_runs_every_combination():
    configs = grid(RunConfig(teacher="t"), vocab_size=[2000, 3000], alpha=[0.1, 0.5, 1.0], seed=[1])
    assert len(configs) == 6
    assert {(c.vocab_size, c.alpha) for c in configs} == {
        (v, a) for v in (2000, 3000) for a in (0.1, 0.5, 1.0)
    }


BAD_VALUES = [
    ("batch_size", 0, "[1, inf)"),
    ("batch_size", -3, "[1, inf)"),
    ("batch_size", 2.5, "an integer"),
    ("batch_size", True, "an integer"),
    ("max_train", 0, "[1, inf)"),
    ("grad_clip", -1.0, "[0, inf)"),
    ("temperature", float("nan"), "finite"),
    ("temperature", float("inf"), "finite"),
    ("temperature", 0.0, "(0, inf)"),
    ("lr", 0.0, "(0, 1]"),
    ("lr", -1e-3, "(0, 1]"),
    ("lr", 5.0, "(0, 1]"),
    ("epochs", 0, "[1, inf)"),
    ("patience", 0, "[1, inf)"),
    ("warmup_ratio", 1.0, "[0, 1)"),
    ("warmup_ratio", -0.1, "[0, 1)"),
    ("valid_fraction", 0.0, "(0, 1)"),
    ("test_fraction", 1.0, "(0, 1)"),
    ("dropout", 1.0, "[0, 1)"),
    ("vocab_size", 10, "[50, inf)"),
    ("embedding_dim", 0, "[1, inf)"),
    ("seed", -1, "[0, 4294967295]"),
    ("dataset", "../../x", "one of nsmc"),
    ("size", "huge", "one of tiny"),
    ("pooling", "mean", "one of last"),
    ("optimizer", "sgd", "one of adamw"),
    ("scheduler", "warmup", "one of linear"),
]


@pytest.mark.parametrize("name, value, allowed", BAD_VALUES)
def test_every_bad_value_is_refused_in_one_line_with_the_allowed_range(name, value, allowed):
    with pytest.raises(ValueError) as err:
        RunConfig(alpha=1.0, **{name: value})
    message = str(err.value)
    assert (
        "\n" not in message
        and name in message
        and allowed in message
        and "--" + name.replace("_", "-") in message
    )


def test_fractions_must_leave_training_data():
    with pytest.raises(ValueError, match="valid_fraction \\+ test_fraction must be < 1"):
        DataConfig(valid_fraction=0.5, test_fraction=0.6)


def test_a_bad_dataset_name_writes_nothing(tmp_path, data_dir):
    with pytest.raises(ValueError, match="dataset"):
        train.train_student(
            RunConfig(alpha=1.0, dataset="../../x"), paths_for(tmp_path, data_dir), device="cpu"
        )
    assert not any(tmp_path.rglob("config.json"))


def test_device_is_checked():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            utils.get_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        utils.get_device("gpu0")
    assert utils.get_device("cpu").type == "cpu"


def test_runs_differing_in_any_setting_get_their_own_folder():
    base = RunConfig(teacher="t", **FAST)
    names = {grid(base, pooling=[p])[0].run_name() for p in ("last", "max", "attention")} | {
        dataclasses.replace(base, dropout=d).run_name() for d in (0.1, 0.3)
    }
    assert len(names) == 5
    assert all(name.startswith("tiny-v300-t-a0.1-T2-h") for name in names)
    # The hash covers only settings that differ from their defaults: stable; default runs keep short names.
    assert (
        dataclasses.replace(base, pooling="max").run_name()
        == dataclasses.replace(base, pooling="max").run_name()
    )
    assert "-h" not in RunConfig(teacher="t").run_name()


def test_notebook_params_are_checked_against_the_fields():
    params = {
        "dataset": "nsmc",
        "data_dir": None,
        "vocab_size": [200, 300],
        "size": "tiny",
        "alpha": [0.5, 1.0],
        "epochs": 2,
        "teacher_base_model": None,
        "baseline": True,
    }
    data, configs = configs_from_params(params, teacher="t", extra_keys=["baseline"])
    assert data == DataConfig() and len(configs) == 4
    assert {(c.vocab_size, c.alpha, c.teacher) for c in configs} == {
        (v, a, "t" if a < 1 else None) for v in (200, 300) for a in (0.5, 1.0)
    }
    _, baselines = configs_from_params(params, alphas=[1.0], extra_keys=["baseline"])
    assert [c.teacher for c in baselines] == [None, None]
    for typo, near in (("patiance", "patience"), ("vocab_sise", "vocab_size")):
        with pytest.raises(ValueError, match=f"unknown parameter '{typo}': did you mean '{near}'"):
            configs_from_params({**params, typo: 3}, extra_keys=["baseline"])
    with pytest.raises(ValueError, match="'lr' takes one value"):
        configs_from_params({**params, "lr": [0.1, 0.2]}, teacher="t", extra_keys=["baseline"])
    with pytest.raises(ValueError, match="epochs"):
        configs_from_params({**params, "epochs": 0}, teacher="t", extra_keys=["baseline"])


def test_cli_options_are_generated_from_the_fields():
    parser = distil.build_parser()
    args = parser.parse_args(["student", "--teacher", "t", "--alpha", "0.1", "1", "--pooling", "max"])
    for f in dataclasses.fields(RunConfig):
        assert hasattr(args, f.name), f.name  # every setting has its option
    configs = distil.student_configs(args, "t")
    assert [(c.alpha, c.teacher, c.pooling) for c in configs] == [(0.1, "t", "max"), (1.0, None, "max")]
    help_text = parser._subparsers._group_actions[0].choices["student"].format_help()
    assert "[0, 1)" in help_text and "{tiny,mini,small,base,large}" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["student", "--size", "huge"])


def test_teacher_max_length_is_one_setting_for_fine_tuning_and_caching():
    run = {f.name: f for f in dataclasses.fields(RunConfig)}["teacher_max_length"]
    tune = {f.name: f for f in dataclasses.fields(TeacherConfig)}["max_length"]
    assert (run.default, dict(run.metadata)) == (tune.default, dict(tune.metadata))
    for config in (lambda: RunConfig(teacher_max_length=1), lambda: TeacherConfig(max_length=1)):
        with pytest.raises(ValueError, match=r"--teacher-max-length\) must be in \[2, inf\), got 1"):
            config()
    args = distil.build_parser().parse_args(["run", "--finetune", "m", "--teacher-max-length", "64"])
    student = distil.student_configs(args, "t")[0]
    assert distil.teacher_config(args).max_length == student.teacher_max_length == 64


# --- logits cache -----------------------------------------------------------------------------------------


def test_cache_build_hit_and_rebuild_on_changed_data(tmp_path, data_dir, fresh_teacher, count_teacher_runs):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    root = tmp_path / "teachers"
    train_split = splits["train"]
    first = logits_cache.teacher_logits(str(fresh_teacher), train_split, "nsmc", "train", teacher_root=root)
    path = fresh_teacher / "logits" / "nsmc-train.safetensors"
    assert (
        path.is_file() and first.shape == (len(train_split), 2) and count_teacher_runs == [len(train_split)]
    )
    # Hit: same data, and any subset or reordering of it, without running the teacher.
    again = logits_cache.teacher_logits(str(fresh_teacher), train_split, "nsmc", "train", teacher_root=root)
    subset = train_split.sample(50, random_state=0)
    part = logits_cache.teacher_logits(str(fresh_teacher), subset, "nsmc", "train", teacher_root=root)
    assert torch.equal(first, again) and torch.equal(part, first[torch.tensor(subset.index.to_numpy())])
    assert count_teacher_runs == [len(train_split)]
    # A changed text is never looked up misaligned: refused, or rebuilt.
    changed = train_split.copy()
    changed.loc[3, "text"] = "완전히 다른 리뷰"
    with pytest.raises(logits_cache.CacheMismatch, match="different text"):
        logits_cache.teacher_logits(
            str(fresh_teacher), changed, "nsmc", "train", teacher_root=root, on_mismatch="error"
        )
    logits_cache.teacher_logits(str(fresh_teacher), changed, "nsmc", "train", teacher_root=root)
    assert count_teacher_runs == [len(train_split), len(train_split)]
    # Another max length means other logits: rebuilt.
    logits_cache.teacher_logits(
        str(fresh_teacher), changed, "nsmc", "train", teacher_root=root, max_length=16
    )
    assert len(count_teacher_runs) == 3


def test_cache_rebuilt_when_teacher_weights_change(tmp_path, data_dir, fresh_teacher, count_teacher_runs):
    valid = corpus.load_dataset("nsmc", data_dir=data_dir)["valid"]
    logits_cache.teacher_logits(str(fresh_teacher), valid, "nsmc", "valid")
    from safetensors.torch import load_file, save_file

    weights = load_file(fresh_teacher / "model.safetensors")
    name = next(k for k in weights if k.startswith("classifier"))
    weights[name] = weights[name] + 1.0
    save_file(weights, fresh_teacher / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(logits_cache.CacheMismatch, match="teacher_fingerprint"):
        logits_cache.teacher_logits(str(fresh_teacher), valid, "nsmc", "valid", on_mismatch="error")
    logits_cache.teacher_logits(str(fresh_teacher), valid, "nsmc", "valid")
    assert len(count_teacher_runs) == 2


def test_cache_teacher_loads_the_teacher_once(tmp_path, data_dir, fresh_teacher, monkeypatch, capsys):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    loads: list[str] = []
    original = teachers.load_teacher

    def counting(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(teachers, "load_teacher", counting)
    unlabeled = tmp_path / "extra.txt"
    unlabeled.write_text("정말 최고\n완전 별로\n", encoding="utf-8")
    logits = logits_cache.cache_teacher(str(fresh_teacher), splits, "nsmc", device="cpu", unlabeled=unlabeled)
    assert len(loads) == 1  # four caches built, one teacher load
    sizes = {split: len(df) for split, df in splits.items()}
    assert {split: len(v) for split, v in logits.items()} == {**sizes, "unlabeled-extra": 2}
    assert "teacher test accuracy" in capsys.readouterr().out
    again = logits_cache.cache_teacher(str(fresh_teacher), splits, "nsmc", device="cpu", unlabeled=unlabeled)
    assert len(loads) == 1 and all(torch.equal(again[k], logits[k]) for k in logits)  # all cached: no load


def test_logits_cache_file_round_trip(tmp_path):
    cache = logits_cache.LogitsCache(
        ["a", "나", "c-3"],
        logits_cache.text_hashes(["x", "y", "z"]),
        torch.randn(3, 2),
        {"format": logits_cache.CACHE_FORMAT},
    )
    cache.save(tmp_path / "c.safetensors")
    loaded = logits_cache.LogitsCache.load(tmp_path / "c.safetensors")
    assert (
        loaded.ids == cache.ids
        and torch.equal(loaded.logits, cache.logits)
        and torch.equal(loaded.hashes, cache.hashes)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


# --- training ---------------------------------------------------------------------------------------------


def test_baseline_learns_and_writes_its_run(tmp_path, data_dir):
    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(alpha=1.0, **FAST)
    metrics = train.train_student(cfg, paths, device="cpu")
    run_dir = Path(paths.out) / "nsmc" / cfg.run_name()
    assert cfg.run_name().startswith("tiny-v300-none-a1-h") and metrics["run_dir"] == str(run_dir)
    assert metrics["test_accuracy"] > 0.8 and metrics["test_f1"] > 0.8
    required = {
        "dataset",
        "teacher",
        "vocab_size",
        "student_size",
        "params",
        "size_bytes",
        "alpha",
        "temperature",
        "kd_loss",
        "epochs_run",
        "best_epoch",
        "val_accuracy",
        "test_accuracy",
        "test_f1",
        "train_seconds",
    }
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert required <= set(saved) and saved["params"] > 0 and saved["epochs_run"] == 3
    assert saved["device"] == "cpu" and saved["device_name"] == utils.cpu_name() != ""  # what timed it
    assert (run_dir / "student" / "model.safetensors").stat().st_size == saved["size_bytes"]
    config = json.loads((run_dir / "config.json").read_text())
    assert {k: v for k, v in config.items() if k != "fingerprints"} == dataclasses.asdict(cfg)
    assert len(config["fingerprints"]["data"]) == 64 and config["fingerprints"]["teacher"] is None
    # the best student's valid and test predictions: they give the recorded accuracies exactly
    with np.load(run_dir / saved["predictions"]) as predictions:
        assert float(np.mean(predictions["test"] == predictions["test_labels"])) == saved["test_accuracy"]
        assert float(np.mean(predictions["valid"] == predictions["valid_labels"])) == saved["val_accuracy"]
        splits = train.load_splits(cfg, paths)
        for split in ("valid", "test"):
            fingerprint = corpus.data_fingerprint(splits[split], splits.labels)
            assert str(predictions[f"{split}_fingerprint"]) == fingerprint
            assert (predictions[f"{split}_labels"] == splits[split]["label"].to_numpy()).all()
        assert str(predictions["data_fingerprint"]) == config["fingerprints"]["data"]
    assert not (run_dir / train.PID_NAME).exists()  # the lock is released
    # Finished: a second call reuses it; other settings in the same directory are refused.
    assert train.train_student(cfg, paths, device="cpu") == saved
    config["lr"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(train.RunStateError, match="other settings \\(lr;.*--overwrite"):
        train.train_student(cfg, paths, device="cpu")


def hparams_data(run_dir: str | Path, tag: str):
    """The HParams plugin's data under ``tag`` in a run's event files, and the accumulator (its scalars)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")[tag]
    return events, plugin_data_pb2.HParamsPluginData.FromString(content)


def scalars_and_hparams(run_dir: str | Path) -> tuple[dict[str, list[int]], dict, str]:
    """The scalar tags of a run with their steps, its HParams values by column, and its trial ID."""
    events, data = hparams_data(run_dir, "_hparams_/session_start_info")
    steps = {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    info = data.session_start_info
    values = {key: info.hparams[hparam.name].string_value for key, hparam in train.HPARAMS.items()}
    assert all(info.hparams[h.name].WhichOneof("kind") == "string_value" for h in train.HPARAMS.values())
    return steps, values, info.group_name


def test_tensorboard_one_step_axis_test_once_and_readable_hparams(tmp_path, data_dir):
    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(alpha=1.0, **{**FAST, "epochs": 2})
    metrics = train.train_student(cfg, paths, device="cpu", log_every=5)
    steps, hparams, trial = scalars_and_hparams(metrics["run_dir"])
    assert {"train/loss", "train/ce", "train/kd", "train/lr", "valid/accuracy", "valid/f1"} <= set(steps)
    # the final numbers: once each, at the last step, in a group that sorts after the curves
    final = {tag for tag in steps if tag.startswith("zfinal/")}
    assert final == {"zfinal/val_accuracy", "zfinal/test_accuracy", "zfinal/test_f1"}
    assert max(set(steps) - final) < min(final) and not [t for t in steps if t.startswith(("test", "hparam"))]
    # one x axis: each epoch's validation point sits on the global step of that epoch's last train point
    per_epoch = -(-len(corpus.load_dataset("nsmc", data_dir=data_dir)["train"]) // FAST["batch_size"])
    assert steps["valid/accuracy"] == [per_epoch, 2 * per_epoch] == steps["valid/loss"]
    assert {per_epoch, 2 * per_epoch} <= set(steps["train/loss"]) and max(
        steps["train/loss"]
    ) == 2 * per_epoch
    assert all(steps[tag] == [2 * per_epoch] for tag in final)
    assert trial == f"nsmc/{cfg.run_name()}"  # the run's folder under the log root, as TensorBoard names it
    assert hparams["teacher"] == "none" and hparams["size"] == "tiny" and hparams["vocab_size"] == "300"
    assert hparams["alpha"] == "1" and hparams["seed"] == "42" and hparams["params"] == str(metrics["params"])
    assert hparams["tokenizer"] == "wordpiece"
    assert hparams["temperature"] == "-" and hparams["kd_loss"] == "-"  # a baseline has no KD settings
    assert hparams["embedding_dim"] == str(metrics["embedding_dim"])  # the preset's dims, not "none"
    assert hparams["hidden_dim"] == str(metrics["hidden_dim"]) and hparams["max_train"] == "all"


def test_hparams_columns_and_metrics_are_declared_once_at_the_log_root(tmp_path):
    root = tmp_path / "runs"
    train.write_hparams_config(root)
    first = list(root.iterdir())
    train.write_hparams_config(root)  # the same declaration: nothing new
    assert list(root.iterdir()) == first and len(first) == 1
    _, data = hparams_data(root, "_hparams_/experiment")
    # the dashboard sorts the columns by name and ticks the first five: these
    infos = sorted(data.experiment.hparam_infos, key=lambda info: info.name)
    assert [info.display_name for info in infos[:5]] == ["teacher", "size", "vocab_size", "alpha", "seed"]
    assert [info.display_name for info in infos] == list(train.HPARAM_COLUMNS)
    assert [m.name.tag for m in data.experiment.metric_infos] == [
        "zfinal/val_accuracy",
        "zfinal/test_accuracy",
        "zfinal/test_f1",
    ]
    stale = root / "events.out.tfevents.1.host.1.1.hparams-00000000"  # another version's declaration
    first[0].rename(stale)
    train.write_hparams_config(root)
    [current] = root.iterdir()  # replaced
    assert current.name.split(".hparams-")[1] == first[0].name.split(".hparams-")[1]


def test_teacher_and_student_logs_live_under_one_root(tmp_path, data_dir, tiny_teacher):
    paths = paths_for(tmp_path, data_dir)
    splits = train.load_splits(RunConfig(alpha=1.0), paths)
    cfg = TeacherConfig(model=str(tiny_teacher), epochs=1, train_batch_size=32, max_length=32)
    teacher_dir = distil.finetune(cfg, splits, "nsmc", paths, device="cpu")
    student = RunConfig(teacher=str(teacher_dir), alpha=0.5, **{**FAST, "epochs": 1})
    metrics = train.train_student(student, paths, device="cpu", splits=splits)
    root = Path(paths.out) / "nsmc"
    assert Path(metrics["run_dir"]) == root / student.run_name()
    teacher_logs = root / "teachers" / teacher_dir.name
    assert list(teacher_logs.rglob("events.out.tfevents.*")) and list(
        root.glob(f"{student.run_name()}/events*")
    )
    _, hparams, _ = scalars_and_hparams(metrics["run_dir"])
    assert hparams["teacher"] == teacher_dir.name and hparams["kd_loss"] == "kl"
    assert hparams["temperature"] == "2" and hparams["alpha"] == "0.5"


def test_stale_temporaries_are_removed_when_a_run_starts(tmp_path, data_dir):
    import os
    import time

    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(alpha=1.0, **{**FAST, "epochs": 1})
    run_dir = Path(paths.out) / "nsmc" / cfg.run_name()
    old = time.time() - 2 * 3600  # older than remove_stale_temporaries' limit (one hour)
    stale = [
        run_dir / ".checkpoint.pt.abcd1234.tmp",
        run_dir / ".student.tmp-abcd1234",
        Path(paths.out) / ".x.tmp-abcd1234",
    ]
    fresh = run_dir.parent / ".other.tmp-efgh5678"  # another writer's, still at work
    for path in [*stale, fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
        if path != fresh:
            os.utime(path, (old, old))
    train.train_student(cfg, paths, device="cpu")
    assert not [path for path in stale if path.exists()] and fresh.exists()


def test_resume_continues_where_it_stopped(tmp_path, data_dir, monkeypatch):
    cfg = RunConfig(alpha=1.0, **{**FAST, "epochs": 3, "patience": 10})
    straight = train.train_student(cfg, paths_for(tmp_path / "a", data_dir), device="cpu")

    paths = paths_for(tmp_path / "b", data_dir)
    original = train.evaluate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # validation after the second epoch: the runtime disconnects
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.train_student(cfg, paths, device="cpu")
    monkeypatch.setattr(train, "evaluate", original)
    run_dir = Path(paths.out) / "nsmc" / cfg.run_name()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]["epoch"] == 1
    resumed = train.train_student(cfg, paths, device="cpu")
    assert resumed["epochs_run"] == 3
    assert [h["val_accuracy"] for h in resumed["history"]] == [h["val_accuracy"] for h in straight["history"]]
    assert resumed["test_accuracy"] == straight["test_accuracy"]


def test_distillation_reuses_cache_across_vocab_sizes(tmp_path, data_dir, fresh_teacher, count_teacher_runs):
    paths = paths_for(tmp_path, data_dir)
    base = RunConfig(teacher=str(fresh_teacher), alpha=0.5, **{**FAST, "epochs": 1})
    first = train.train_student(base, paths, device="cpu")
    assert count_teacher_runs and first["teacher"] == str(fresh_teacher)
    runs = len(count_teacher_runs)
    second = train.train_student(
        dataclasses.replace(base, vocab_size=200, size="mini", kd_loss="mse"), paths, device="cpu"
    )
    assert len(count_teacher_runs) == runs  # new vocab size, size and loss: the teacher did not run again
    assert second["vocab_size"] == 200 and second["kd_loss"] == "mse"


def test_student_teacher_distillation_beats_chance_via_cli(tmp_path, data_dir, capsys):
    common = cli_common(tmp_path, data_dir)
    fast = [
        "--vocab-size",
        "300",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr",
        "0.01",
        "--warmup-ratio",
        "0",
    ]
    [big] = distil.main(["run", *common, *fast, "--size", "small", "--alpha", "1"])
    assert big["test_accuracy"] > 0.8
    teacher_dir = Path(big["run_dir"]) / "student"
    distil.main(["cache", *common, "--teacher", str(teacher_dir)])
    assert sorted(p.name for p in (teacher_dir / "logits").iterdir()) == [
        "nsmc-test.safetensors",
        "nsmc-train.safetensors",
        "nsmc-valid.safetensors",
    ]
    results = distil.main(
        ["student", *common, *fast, "--size", "tiny", "--teacher", str(teacher_dir), "--alpha", "0.1", "1"]
    )
    assert {r["alpha"] for r in results} == {0.1, 1.0}
    assert all(r["test_accuracy"] > 0.8 for r in results)
    out = capsys.readouterr().out
    assert distil.summary_text(results) in out and "teacher test accuracy" in out
    for backend in ("torch", "onnx-int8"):
        distil.main(
            [
                "predict",
                "--student",
                str(Path(results[0]["run_dir"]) / "student"),
                "--backend",
                backend,
                "정말 최고 명작",
                "최악 노잼",
            ]
        )
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].startswith("positive") and lines[1].startswith("negative")


def test_summary_fits_100_columns_and_names_each_run_folder():
    distilled = {
        "student_size": "base",
        "vocab_size": 10000,
        "teacher": "teacher_model/nsmc/koelectra-base-v3-discriminator-nsmc",
        "alpha": 0.1,
        "temperature": 2.0,
        "seed": 4294967295,
        "params": 1234567,
        "embedding_dim": 128,
        "hidden_dim": 256,
        "best_epoch": 12,
        "val_accuracy": 0.87654,
        "test_accuracy": 0.87543,
        "test_f1": 0.87542,
        "train_seconds": 12345.67,
        "run_dir": "runs/nsmc/base-v10000-koelectra-base-v3-discriminator-nsmc-a0.1-T2-u-unlabeled-s429",
    }
    custom = {**distilled, "student_size": "custom", "teacher": None, "alpha": 1.0, "run_dir": "runs/nsmc/b"}
    results = [distilled, custom] * 6  # 12 rows: two-digit row numbers
    lines = distil.summary_text(results).splitlines()
    assert len(lines) == 1 + 2 * len(results) and max(map(len, lines)) <= 100
    assert lines[0].split() == [
        *["size", "vocab", "teacher", "alpha", "seed", "params"],
        *["epoch", "val_acc", "test_acc", "seconds"],
    ]
    assert lines[1].split() == [  # a long teacher name is cut
        *["1", "base", "10000", "koelectra-base-…", "0.1", "4294967295", "1,234,567"],
        *["12", "0.8765", "0.8754", "12346"],
    ]
    assert lines[12].split()[:4] == ["12", "e128h256", "10000", "none"]  # a custom size as in run names
    assert lines[13:] == [f"{i}  {r['run_dir']}" for i, r in enumerate(results, start=1)]  # named in full


def test_cli_help_documents_stages(capsys):
    with pytest.raises(SystemExit):
        distil.main(["--help"])
    out = capsys.readouterr().out
    for stage in ("download", "tokenizer", "teacher", "cache", "student", "run", "predict"):
        assert stage in out


# Runs distil.py as `python distil.py ARGS` does, then names the heavy libraries it loaded.
CLI_PROBE = """
import os, runpy, sys
sys.path.insert(0, os.getcwd())
sys.argv = ["distil.py", *sys.argv[1:]]
try:
    runpy.run_path("distil.py", run_name="__main__")
except SystemExit as exit:
    print("exit", exit.code, sorted(m for m in ("torch", "transformers", "sklearn") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--help"], 0),
        (["student", "--help"], 0),
        (["student", "--alpha", "2"], 2),  # a bound: checked by RunConfig
        (["run", "--finetune", "m", "--teacher-lr", "5"], 2),  # and by TeacherConfig
        (["student", "--size", "huge"], 2),  # a choice: checked by argparse
    ],
)
def test_help_and_refused_settings_answer_before_torch_loads(argv, code):
    import subprocess
    import sys

    from conftest import ROOT

    command = [sys.executable, "-c", CLI_PROBE, *argv]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == f"exit {code} []", result.stderr[-2000:]
    assert "Traceback" not in result.stderr and (code == 0 or "error: " in result.stderr)


def test_predict_without_student_uses_the_bundled_one(capsys):
    from model import bundled_student

    texts = ["이 영화 정말 재밌어요 최고예요", "시간 아깝다 최악의 영화", "", "   "]
    distil.main(["predict", *texts])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(texts)  # an empty or blank text gets its line too
    rows = [line.split("\t") for line in lines]
    assert [row[0] for row in rows[:2]] == ["positive", "negative"] and all(
        0.5 <= float(r[1]) <= 1 for r in rows
    )
    assert [row[2] if len(row) > 2 else "" for row in rows] == texts
    distil.main(["predict", "--student", str(bundled_student()), texts[0]])  # the same student, named
    assert capsys.readouterr().out.splitlines() == lines[:1]


def test_unlabeled_text_is_learnt_through_the_teacher(tmp_path, data_dir, fresh_teacher, count_teacher_runs):
    from conftest import make_reviews

    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(text for text, _ in make_reviews(150, seed=9)) + "\n", encoding="utf-8")
    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(teacher=str(fresh_teacher), alpha=0.5, unlabeled=str(unlabeled), **{**FAST, "epochs": 1})
    metrics = train.train_student(cfg, paths, device="cpu")
    assert metrics["n_train"] > 0 and "u-unlabeled" in metrics["run_dir"]
    assert metrics["n_transfer"] == metrics["n_train"] + len(corpus.read_unlabeled(unlabeled))
    before = {k: v for k, v in metrics.items() if k != "n_transfer"}  # a run recorded before n_transfer
    assert ladder.run_record(before)["n_transfer"] == metrics["n_transfer"]
    assert (fresh_teacher / "logits" / "nsmc-unlabeled-unlabeled.safetensors").is_file()
    assert 150 - 5 <= count_teacher_runs[-1] <= 150  # the unlabeled texts went through the teacher once
    with pytest.raises(ValueError, match="baseline.*teacher, unlabeled"):
        RunConfig(teacher=str(fresh_teacher), alpha=1.0, unlabeled=str(unlabeled))


# --- run identity, run state and errors -------------------------------------------------------------------

ONE_EPOCH = RunConfig(alpha=1.0, **{**FAST, "epochs": 2, "patience": 10})


def interrupt_after_first_epoch(cfg: RunConfig, paths: Paths, monkeypatch) -> Path:
    """A half-done run: the validation of epoch 2 is interrupted, so checkpoint.pt holds epoch 1."""
    original = train.evaluate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train, "evaluate", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train.train_student(cfg, paths, device="cpu")
    run_dir = Path(paths.out) / "nsmc" / cfg.run_name()
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "metrics.json").exists()
    return run_dir


def test_other_data_is_refused_for_reuse_and_for_resume(tmp_path, data_dir, monkeypatch):
    other = write_nsmc(tmp_path / "other", seed=5)
    paths = paths_for(tmp_path, data_dir)
    other_paths = dataclasses.replace(paths, data_dir=str(other))
    cfg = dataclasses.replace(ONE_EPOCH, epochs=1)
    train.train_student(cfg, paths, device="cpu")
    with pytest.raises(train.RunStateError, match="other settings \\(data fingerprint;.*--overwrite .*--out"):
        train.train_student(cfg, other_paths, device="cpu")  # finished run, other --data-dir

    half_done = dataclasses.replace(cfg, epochs=2)
    interrupt_after_first_epoch(half_done, paths, monkeypatch)
    with pytest.raises(train.RunStateError, match="data fingerprint"):
        train.train_student(half_done, other_paths, device="cpu")  # half-done run, other --data-dir
    fresh = train.train_student(half_done, other_paths, device="cpu", overwrite=True)
    assert fresh["epochs_run"] == 2


def test_a_run_that_failed_before_its_first_epoch_blocks_nothing(tmp_path, data_dir, monkeypatch):
    paths = paths_for(tmp_path, data_dir)
    cfg = dataclasses.replace(ONE_EPOCH, epochs=1)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train.train_student(
            dataclasses.replace(cfg, teacher="t", alpha=0.5, unlabeled=str(tmp_path / "missing.txt")),
            paths,
            device="cpu",
        )

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(train, "evaluate", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        train.train_student(cfg, paths, device="cpu")
    assert not any(Path(paths.out).rglob("config.json"))
    monkeypatch.undo()
    # The corrected command (here: the same one) trains from scratch, not stopped by a stale config.json.
    assert train.train_student(cfg, paths, device="cpu")["epochs_run"] == 1


def test_nan_loss_stops_training_naming_the_step(tmp_path, data_dir, monkeypatch):
    paths = paths_for(tmp_path, data_dir)
    original = train.distillation_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        total, ce, kd = original(*args, **kwargs)
        return (total * float("nan"), ce, kd) if len(calls) == 7 else (total, ce, kd)

    monkeypatch.setattr(train, "distillation_loss", poisoned)
    with pytest.raises(train.TrainingDiverged, match="non-finite loss .* at epoch 1, step 7 of"):
        train.train_student(ONE_EPOCH, paths, device="cpu", log_every=5)
    run_dir = Path(paths.out) / "nsmc" / ONE_EPOCH.run_name()
    assert len(calls) == 10  # found at the next log interval, without a sync per step
    assert not (run_dir / "student").exists() and not (run_dir / "config.json").exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    tokenizer = vocab.train_tokenizer(["좋아요 최고", "별로 최악"] * 20, 100, tmp_path / "tok")
    model = BiLSTMClassifier(RunConfig(alpha=1.0, size="tiny", vocab_size=100).student_config())
    with torch.no_grad():
        model.embedding.weight[3, 0] = float("inf")
    with pytest.raises(train.TrainingDiverged, match="not finite .*embedding"):
        train.save_best(model, tokenizer, tmp_path / "student", {"epoch": 1})
    assert not (tmp_path / "student").exists()


class Payload:
    """A pickle that would create a marker file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_and_truncated_checkpoints_are_refused_without_running_code(tmp_path, data_dir, monkeypatch):
    paths = paths_for(tmp_path, data_dir)
    run_dir = interrupt_after_first_epoch(ONE_EPOCH, paths, monkeypatch)
    checkpoint = run_dir / "checkpoint.pt"
    good = checkpoint.read_bytes()
    marker = tmp_path / "pwned"
    torch.save({"state": Payload(marker)}, checkpoint)
    with pytest.raises(train.RunStateError) as err:
        train.train_student(ONE_EPOCH, paths, device="cpu")
    assert not marker.exists()
    message = str(err.value)
    assert "\n" not in message and str(checkpoint) in message and "--overwrite" in message
    assert "could run arbitrary code, so it is refused" in message  # said in full, in our words
    assert "\x1b" not in message and "weights_only" not in message and "trust" not in message
    checkpoint.write_bytes(good[: len(good) // 2])
    with pytest.raises(train.RunStateError, match="checkpoint.pt is corrupt .*--overwrite"):
        train.train_student(ONE_EPOCH, paths, device="cpu")
    checkpoint.write_bytes(good)
    assert train.train_student(ONE_EPOCH, paths, device="cpu")["epochs_run"] == 2  # the real one resumes
    weights = run_dir / "student" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(train.RunStateError, match="student is unusable .*--overwrite"):
        train.load_best(run_dir, torch.device("cpu"))


LOCK_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import train
from pathlib import Path
with train.run_lock(Path(sys.argv[2])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_process_on_the_same_run_is_refused_and_stale_locks_do_not_block(tmp_path, data_dir):
    import subprocess
    import sys

    paths = paths_for(tmp_path, data_dir)
    cfg = dataclasses.replace(ONE_EPOCH, epochs=1)
    run_dir = Path(paths.out) / "nsmc" / cfg.run_name()
    root = str(Path(distil.__file__).parent)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, root, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(train.RunStateError, match=f"run in progress \\(pid {holder.pid}\\)"):
            train.train_student(cfg, paths, device="cpu")
    finally:
        holder.kill()  # dies holding the lock: the kernel releases it
        holder.wait()
    assert train.train_student(cfg, paths, device="cpu")["epochs_run"] == 1


@pytest.mark.parametrize(
    "option, code, expected",
    [
        (["--batch-size", "0"], 2, "batch_size (--batch-size) must be in [1, inf), got 0"),
        (["--lr", "nan"], 2, "lr (--lr) must be a finite number"),
        (["--alpha", "0.5"], 2, "without a teacher only the baseline"),
        (["--device", "gpu"], 2, "unknown device 'gpu'"),
        (["--data-dir", "/nonexistent"], 1, "/nonexistent/ratings_train.txt not found"),
        (["--teacher-batch-size", "0"], 2, "batch_size (--teacher-batch-size) must be in [1, inf), got 0"),
    ],
)
def test_cli_errors_are_one_line_with_an_exit_code(tmp_path, data_dir, capsys, option, code, expected):
    with pytest.raises(SystemExit) as exit_info:
        distil.main(["student", *cli_common(tmp_path, data_dir), *option])
    err = capsys.readouterr().err
    assert exit_info.value.code == code
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not any(tmp_path.rglob("config.json"))


@pytest.mark.parametrize(
    "option, expected",
    [
        (
            ["--model", "org/model", "--teacher-lr", "0"],
            "lr (--teacher-lr) must be a number in (0, 1], got 0.0",
        ),
        (["--model", "tfidf-lr", "--lr-c", "0"], "c (--lr-c) must be a number in (0, inf), got 0.0"),
    ],
)
def test_the_teacher_stage_checks_its_settings_before_any_work(tmp_path, data_dir, capsys, option, expected):
    with pytest.raises(SystemExit) as exit_info:
        distil.main(["teacher", *cli_common(tmp_path, data_dir), *option])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""  # no data-loading lines before the refusal
    assert captured.err == f"error: {expected}\n"


DAMAGED_RUN_FILES = [
    ("metrics.json", '{"test_accuracy":\n', "metrics.json is unreadable (Expecting value: line 2 column 1"),
    ("metrics.json", "{}", "metrics.json lacks student_size, vocab_size, teacher, ..."),
    ("config.json", "[]", "config.json holds a list, not a JSON object"),
]


def test_damaged_files_of_a_finished_run_are_one_line_errors(tmp_path, data_dir, capsys):
    command = [
        "student",
        *cli_common(tmp_path, data_dir),
        "--alpha",
        "1",
        "--size",
        "tiny",
        "--vocab-size",
        "300",
    ]
    [metrics] = distil.main([*command, "--epochs", "1", "--batch-size", "32"])
    run_dir = Path(metrics["run_dir"])
    capsys.readouterr()
    for name, text, expected in DAMAGED_RUN_FILES:
        good = (run_dir / name).read_text(encoding="utf-8")
        (run_dir / name).write_text(text, encoding="utf-8")
        with pytest.raises(SystemExit) as exit_info:
            distil.main([*command, "--epochs", "1", "--batch-size", "32"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"error: {run_dir / expected}") and err.endswith(
            "pass --overwrite to train the run again\n"
        )
        (run_dir / name).write_text(good, encoding="utf-8")
    assert distil.main([*command, "--epochs", "1", "--batch-size", "32"]) == [metrics]


def test_cli_debug_shows_the_traceback(tmp_path, data_dir):
    import subprocess
    import sys

    command = [
        sys.executable,
        str(Path(distil.__file__)),
        "student",
        *cli_common(tmp_path, data_dir),
        "--epochs",
        "0",
    ]
    plain = subprocess.run(command, capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stderr.strip().splitlines() == [
        "error: epochs (--epochs) must be in [1, inf), got 0"
    ]
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ValueError: epochs" in debug.stderr


def test_a_changed_teacher_is_refused_for_reuse(tmp_path, data_dir, fresh_teacher):
    from safetensors.torch import load_file, save_file

    paths = paths_for(tmp_path, data_dir)
    cfg = RunConfig(teacher=str(fresh_teacher), alpha=0.5, **{**FAST, "epochs": 1})
    train.train_student(cfg, paths, device="cpu")
    saved = json.loads((Path(paths.out) / "nsmc" / cfg.run_name() / "config.json").read_text())
    assert len(saved["fingerprints"]["teacher"]) == 64
    weights = load_file(fresh_teacher / "model.safetensors")
    name = next(k for k in weights if k.startswith("classifier"))
    save_file(
        {**weights, name: weights[name] + 1.0}, fresh_teacher / "model.safetensors", metadata={"format": "pt"}
    )
    with pytest.raises(train.RunStateError, match=r"other settings \(teacher fingerprint;"):
        train.train_student(cfg, paths, device="cpu")
