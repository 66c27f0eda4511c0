"""The CLI's scikit-learn teacher, multi-teacher distillation, several --unlabeled files, augment stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import config
import corpus
import distil
import finetune
import logits_cache
import teacher as teachers
from config import RunConfig
from conftest import cli_common, make_reviews

FAST = ["--vocab-size", "300", "--epochs", "3", "--batch-size", "32", "--lr", "0.01", "--warmup-ratio", "0"]


def write_unlabeled(path: Path, seed: int, n: int = 120) -> Path:
    path.write_text("\n".join(text for text, _ in make_reviews(n, seed=seed)) + "\n", encoding="utf-8")
    return path


def sklearn_dir(tmp_path: Path) -> Path:
    [folder] = (tmp_path / "teachers").glob("tfidf-lr-nsmc-*")
    return folder


# --- settings ---------------------------------------------------------------------------------------------


def test_one_teacher_in_a_list_is_exactly_one_teacher_and_ensembles_get_short_unique_names():
    one = RunConfig(teacher="runs/nsmc/x/student")
    assert RunConfig(teacher=["runs/nsmc/x/student"]) == one and one.teacher == "runs/nsmc/x/student"
    assert one.run_name() == "base-v3000-x-a0.1-T2"
    pair = RunConfig(teacher=["a/t1", "b/t2"])
    other = RunConfig(teacher=["a/t1", "c/t2"])
    assert pair.teacher == ("a/t1", "b/t2") and pair.run_name().startswith("base-v3000-ens2-")
    assert len(pair.teacher_label()) == len("ens2-") + 8 and pair.run_name() != other.run_name()
    weighted = RunConfig(teacher=["a/t1", "b/t2"], teacher_weights=[1, 3])
    assert weighted.teacher_weights == (1.0, 3.0) and weighted.run_name() != pair.run_name()
    assert RunConfig(teacher="t", unlabeled=["d/aug.txt"]).unlabeled == "d/aug.txt"
    two = RunConfig(teacher="t", unlabeled=["d/aug.txt", "e/unlabeled.txt"])
    assert two.run_name().endswith("-u-aug+unlabeled")
    many = RunConfig(teacher="t", unlabeled=[f"d/a-rather-long-transfer-set-{i}.txt" for i in range(3)])
    assert "-u3-" in many.run_name() and len(many.run_name()) < 60


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(teacher=["a", "b"], teacher_weights=[1.0]), "one weight per teacher"),
        (dict(teacher="a", teacher_weights=[1.0]), "one weight per teacher of several"),
        (dict(teacher=["a", "b"], teacher_weights=[1.0, 0.0]), "must be finite numbers > 0"),
        (dict(teacher=["a", "b"], teacher_weights=[1.0, float("nan")]), "must be finite numbers > 0"),
        (dict(teacher=["a", "a"]), "lists the same value twice"),
        (dict(teacher=["a", ""]), "teacher"),
        (dict(teacher="t", unlabeled=["x/u.txt", "y/u.txt"]), "distinct names"),
        (dict(teacher=["a", "b"], alpha=1.0), "baseline"),
    ],
)
def test_bad_teacher_lists_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**settings)


def test_cli_takes_several_teachers_weights_and_unlabeled_files():
    args = distil.build_parser().parse_args(
        ["student", "--teacher", "a", "b", "--teacher-weights", "1", "2", "--unlabeled", "u.txt", "v.txt"]
    )
    [cfg] = distil.student_configs(args, args.teacher)
    assert cfg.teacher == ("a", "b") and cfg.teacher_weights == (1.0, 2.0)
    assert cfg.unlabeled == ("u.txt", "v.txt")
    [single] = distil.student_configs(distil.build_parser().parse_args(["student", "--teacher", "a"]), ["a"])
    assert single.teacher == "a" and single.teacher_weights is None


def test_notebook_params_take_several_teachers_and_files():
    params = {"vocab_size": [200, 300], "teacher": None, "unlabeled": ["u.txt", "v.txt"], "alpha": [0.1, 1]}
    _, configs = config.configs_from_params(params, teacher=["a", "b"])
    assert {(c.teacher, c.unlabeled) for c in configs if c.alpha < 1} == {(("a", "b"), ("u.txt", "v.txt"))}
    assert {(c.teacher, c.unlabeled) for c in configs if c.alpha == 1} == {(None, None)}


# --- the scikit-learn teacher through the CLI ---------------------------------------------------------------


def test_tfidf_lr_teacher_stage_fits_reports_and_caches(tmp_path, data_dir, capsys, count_teacher_runs):
    unlabeled = write_unlabeled(tmp_path / "extra.txt", seed=7)
    command = ["teacher", *cli_common(tmp_path, data_dir), "--model", "tfidf-lr", "--lr-c", "2"]
    assert distil.main([*command, "--tfidf-min-df", "1", "--unlabeled", str(unlabeled)]) is None
    folder = sklearn_dir(tmp_path)
    info = json.loads((folder / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
    assert info["settings"]["c"] == 2.0 and info["settings"]["min_df"] == 1 and info["test_accuracy"] > 0.8
    out = capsys.readouterr().out
    assert f"valid accuracy {info['val_accuracy']}" in out and "teacher test accuracy" in out
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    caches = sorted(p.name for p in (folder / "logits").iterdir())
    assert caches == [f"nsmc-{s}.safetensors" for s in ("test", "train", "unlabeled-extra", "valid")]
    # The cached logits are the pipeline's log-probabilities.
    cached = logits_cache.LogitsCache.load(folder / "logits" / "nsmc-test.safetensors").lookup(splits["test"])
    fresh = teachers.load_teacher(str(folder)).predict_logits(splits["test"]["text"].tolist())
    assert torch.allclose(cached, fresh) and torch.allclose(cached.exp().sum(-1), torch.ones(len(fresh)))
    runs = len(count_teacher_runs)
    distil.main([*command, "--tfidf-min-df", "1", "--unlabeled", str(unlabeled)])  # reused, all cached
    assert len(count_teacher_runs) == runs and sklearn_dir(tmp_path) == folder
    distil.main([*command, "--tfidf-min-df", "1", "--no-tfidf-sublinear-tf"])  # another teacher
    assert len(list((tmp_path / "teachers").glob("tfidf-lr-nsmc-*"))) == 2


# --- multi-teacher distillation -----------------------------------------------------------------------------


def test_ensemble_logits_are_the_weighted_mean_of_the_members_caches(tmp_path, data_dir, tiny_teacher):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    fitted = finetune.fit_sklearn_teacher(config.SklearnTeacherConfig(), splits, "nsmc", tmp_path / "t")
    members = [str(tiny_teacher), str(fitted)]
    options = dict(teacher_root=tmp_path / "t", device="cpu")
    valid = splits["valid"]
    mean = logits_cache.ensemble_logits(members, valid, "nsmc", "valid", **options)
    weighted = logits_cache.ensemble_logits(members, valid, "nsmc", "valid", weights=[1.0, 3.0], **options)
    a, b = (
        logits_cache.LogitsCache.load(logits_cache.cache_file(Path(m) / "logits", "nsmc", "valid")).lookup(
            valid
        )
        for m in members
    )
    assert not torch.allclose(a, b)
    assert torch.allclose(mean, (a + b) / 2) and torch.allclose(weighted, (a + 3 * b) / 4)
    assert torch.equal(logits_cache.ensemble_logits(members[:1], valid, "nsmc", "valid", **options), a)


def test_weights_are_ranked_by_accuracy_with_ties_to_the_simplest():
    import pandas as pd

    rows = pd.DataFrame({"label": [0, 0, 0, 0, 1, 1, 1, 1]})
    # each member is wrong, by a small margin, on two rows the other gets right by a large one
    a = torch.tensor([[0.1, 0.5], [0.1, 0.5], [4, 0], [4, 0], [0, 4], [0, 4], [0, 4], [0, 4]]).float()
    b = torch.tensor([[4, 0], [4, 0], [4, 0], [4, 0], [0.5, 0.1], [0.5, 0.1], [0, 4], [0, 4]]).float()
    ranked = logits_cache.rank_weights([a, b], rows, grid=(0, 1, 2))
    assert len(ranked) == 3 * 3 - 1  # every weighting but all zeros
    assert ranked[0] == ((1.0, 1.0), 1.0)  # the mean fixes both; (2, 2) ties and loses to smaller weights
    assert dict(ranked)[(1.0, 0.0)] == dict(ranked)[(0.0, 2.0)] == 0.75  # alone: two rows wrong


def test_ensemble_weights_tool_picks_on_validation(tmp_path, data_dir, tiny_teacher, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import ensemble_weights

    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    fitted = finetune.fit_sklearn_teacher(config.SklearnTeacherConfig(), splits, "nsmc", tmp_path / "t")
    args = ["--data-dir", str(data_dir), "--teacher-root", str(tmp_path / "t"), "--device", "cpu"]
    ranked = ensemble_weights.main(
        [*args, "--teacher", str(tiny_teacher), str(fitted), "--grid", "0", "1", "3"]
    )
    out = capsys.readouterr().out
    assert len(ranked) == 8 and ranked[0][1] == max(score for _, score in ranked)
    assert f"{tiny_teacher}: valid " in out and ", test " in out
    best = ranked[0][0]
    assert f"weights {best[0]:g} {best[1]:g}: valid {ranked[0][1]:.4f}" in out
    assert "best on validation: --teacher " in out
    with pytest.raises(SystemExit):  # one member is no ensemble
        ensemble_weights.main([*args, "--teacher", str(fitted)])
    with pytest.raises(SystemExit, match="^error: .*no-such-teacher"):  # one line, no traceback
        ensemble_weights.main([*args, "--teacher", str(fitted), str(tmp_path / "no-such-teacher")])


def test_ensemble_of_a_student_and_tfidf_lr_distils_beats_chance_and_reruns_no_member(
    tmp_path, data_dir, capsys, count_teacher_runs
):
    common = cli_common(tmp_path, data_dir)
    [big] = distil.main(["run", *common, *FAST, "--size", "small", "--alpha", "1"])
    student_teacher = str(Path(big["run_dir"]) / "student")
    files = [str(write_unlabeled(tmp_path / "aug.txt", 11)), str(write_unlabeled(tmp_path / "more.txt", 12))]
    distil_args = ["--size", "tiny", "--alpha", "0.1", "--teacher-weights", "1", "2", "--unlabeled", *files]
    [metrics] = distil.main(
        ["run", *common, *FAST, "--finetune", "tfidf-lr", "--teacher", student_teacher, *distil_args]
    )
    fitted = str(sklearn_dir(tmp_path))
    assert metrics["test_accuracy"] > 0.8 and metrics["teachers"] == [student_teacher, fitted]
    assert metrics["teacher"].startswith("ens2-") and metrics["teacher_weights"] == [1.0, 2.0]
    assert Path(metrics["run_dir"]).name.startswith(f"tiny-v300-{metrics['teacher']}-a0.1-T2-u-aug+more")
    assert metrics["teacher_test_accuracy"] > 0.8 and metrics["unlabeled_files"] == files
    out = capsys.readouterr().out
    assert "ensemble teacher (2 members) test accuracy" in out
    assert f"test accuracy {metrics['teacher_test_accuracy']:.4f}" in out
    saved = json.loads((Path(metrics["run_dir"]) / "config.json").read_text(encoding="utf-8"))
    assert saved["teacher"] == [student_teacher, fitted] and len(saved["fingerprints"]["teacher"]) == 2
    # The ensemble's accuracy is that of the weighted mean of the cached member logits.
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    test = splits["test"]
    caches = [
        logits_cache.LogitsCache.load(logits_cache.cache_file(Path(m) / "logits", "nsmc", "test")).lookup(
            test
        )
        for m in (student_teacher, fitted)
    ]
    expected = ((caches[0] + 2 * caches[1]).argmax(-1).numpy() == test["label"].to_numpy()).mean()
    assert metrics["teacher_test_accuracy"] == pytest.approx(expected)
    for m in (student_teacher, fitted):
        names = {p.name for p in (Path(m) / "logits").iterdir()}
        assert {"nsmc-unlabeled-aug.safetensors", "nsmc-unlabeled-more.safetensors"} <= names
    # A second student (another size and loss) reruns no member: every cache hits.
    runs = len(count_teacher_runs)
    ensemble = ["--teacher", student_teacher, fitted, "--teacher-weights", "1", "2", "--unlabeled", *files]
    [second] = distil.main(["student", *common, *FAST, "--size", "mini", "--kd-loss", "mse", *ensemble])
    assert len(count_teacher_runs) == runs and second["test_accuracy"] > 0.8
    assert second["teacher_test_accuracy"] == metrics["teacher_test_accuracy"]
    # The finished ensemble run is reused as it is (its settings and fingerprints match).
    written = (Path(second["run_dir"]) / "metrics.json").stat().st_mtime_ns
    again = distil.main(["student", *common, *FAST, "--size", "mini", "--kd-loss", "mse", *ensemble])
    assert again == [second] and (Path(second["run_dir"]) / "metrics.json").stat().st_mtime_ns == written


def test_cli_refuses_mismatched_teacher_weights(tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        distil.main(
            ["student", *cli_common(tmp_path, data_dir), "--teacher", "a", "b", "--teacher-weights", "1"]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "one weight per teacher" in err and err.count("\n") == 1


# --- the augment stage ------------------------------------------------------------------------------------


def test_augment_stage_writes_a_deterministic_transfer_set_without_split_texts(tmp_path, data_dir):
    common = cli_common(tmp_path, data_dir)
    options = [
        "--n-iter",
        "2",
        "--p-mask",
        "0.2",
        "--p-pos",
        "0.2",
        "--p-ng",
        "0.3",
        "--max-sentences",
        "120",
    ]
    first, again, other = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    distil.main(["augment", *common, "--out", str(first), *options])
    distil.main(["augment", *common, "--out", str(again), *options])
    distil.main(["augment", *common, "--out", str(other), *options, "--seed", "7"])
    lines = first.read_text(encoding="utf-8").splitlines()
    assert lines == again.read_text(encoding="utf-8").splitlines() and lines != other.read_text().splitlines()
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    texts = {" ".join(t.split()) for df in splits.values() for t in df["text"]}
    assert 120 <= len(lines) <= 240 and len(set(lines)) == len(lines) and not set(lines) & texts
    assert sum("[MASK]" in line for line in lines) > len(lines) / 4
    assert not (tmp_path / "runs").exists()  # --out is the file here, not the runs folder
    with pytest.raises(SystemExit) as exit_info:
        distil.main(["augment", *common, "--out", str(first), "--p-mask", "1.5"])
    assert exit_info.value.code == 2


def test_run_augment_writes_the_transfer_set_once_and_distils_from_it(
    tmp_path, data_dir, tiny_teacher, count_teacher_runs, capsys
):
    common = cli_common(tmp_path, data_dir)
    args = ["run", *common, "--teacher", str(tiny_teacher), "--alpha", "0.5", *FAST, "--augment"]
    args += ["--n-iter", "1", "--max-sentences", "100", "--p-mask", "0.3"]
    [metrics] = distil.main(args)
    [augmented] = (tmp_path / "data").glob("nsmc-augmented-*.txt")
    lines = augmented.read_text(encoding="utf-8").splitlines()
    assert 50 <= len(lines) <= 100 and sum("[MASK]" in line for line in lines) > len(lines) / 4
    assert metrics["unlabeled"] == str(augmented) and metrics["n_transfer"] == metrics["n_train"] + len(lines)
    assert metrics["test_accuracy"] > 0.6
    assert sum(count_teacher_runs) <= 1200 + len(lines)  # train/valid/test and the augmented texts, once
    written = augmented.stat().st_mtime_ns
    runs_before = len(count_teacher_runs)
    # same texts (threads only change speed): the file, the teacher's logits and the run are reused
    distil.main([*args, "--threads", "2"])
    assert augmented.stat().st_mtime_ns == written and len(count_teacher_runs) == runs_before
    distil.main([*args[:-7], "--augment", "--n-iter", "1", "--max-sentences", "100", "--p-mask", "0.2"])
    assert len(list((tmp_path / "data").glob("nsmc-augmented-*.txt"))) == 2  # other settings: another file
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        distil.main(["run", *common, "--alpha", "1", *FAST, "--augment"])
    assert exit_info.value.code == 2
    assert "--augment: the augmented texts are learnt from a teacher" in capsys.readouterr().err


# --- the notebook ----------------------------------------------------------------------------------------


def test_notebook_distils_from_an_ensemble_with_augmentation(tmp_path, data_dir, tiny_teacher, monkeypatch):
    from test_notebook import execute, kernel_pythonpath, text_of

    params = {
        "data_dir": str(data_dir),
        "teacher_base_model": [
            str(tiny_teacher),
            "tfidf-lr",
        ],  # a transformer fine-tuned briefly, and TF-IDF + LR
        "teacher_weights": [1, 2],
        "teacher_max_steps": 2,
        "teacher_batch_size": 16,
        "teacher_max_length": 32,
        "augment": True,
        "n_iter": 1,
        "p_mask": 0.2,
        "vocab_size": [200],
        "size": "tiny",
        "alpha": [0.5],
        "epochs": 2,
        "batch_size": 32,
        "lr": 1e-2,
        "baseline": False,
        "speed_sentences": 20,
        "show_tensorboard": False,
    }
    monkeypatch.setenv("DISTILKO_PARAMS", json.dumps(params))
    monkeypatch.setenv("PYTHONPATH", kernel_pythonpath())
    out = text_of(execute(tmp_path))
    [augmented] = (tmp_path / "data").glob("nsmc-augmented-*.txt")
    members = [next((tmp_path / "teacher_model").glob(f"{g}-nsmc-*")) for g in ("tiny-bert-nsmc", "tfidf-lr")]
    for member in members:
        assert (member / "logits" / f"nsmc-unlabeled-{augmented.stem}.safetensors").is_file()
    assert "ensemble teacher (2 members) test accuracy" in out  # distil.cache_all's line, as in the CLI
    [run_dir] = (tmp_path / "runs" / "nsmc").glob("tiny-v200-ens2-*")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["teachers"] == [str(m.relative_to(tmp_path)) for m in members]
    assert metrics["teacher_weights"] == [1.0, 2.0] and metrics["unlabeled"] == str(
        augmented.relative_to(tmp_path)
    )
    assert (
        f"-u-{augmented.stem}" in run_dir.name
        and len(augmented.read_text(encoding="utf-8").splitlines()) > 100
    )
    results = (tmp_path / "runs" / "nsmc" / "results.csv").read_text(encoding="utf-8")
    assert all(str(m.relative_to(tmp_path)) in results for m in members)  # one row per member teacher
