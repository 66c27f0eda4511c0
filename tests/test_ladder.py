"""ladder.py: every run recorded in a CSV, the ladder grouped from it, its targets and its files."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import corpus
import ladder
import paired
import train
from config import DataConfig, Paths, SklearnTeacherConfig
from finetune import fit_sklearn_teacher
from model import STUDENT_MODEL_TYPE


def ladder_run(
    runs: Path, name: str, size: str, seed: int, test: float, prints: object = None, **extra
) -> None:
    """A metrics.json as distil.py writes it (without n_transfer, as runs before it was recorded), and a
    config.json with the teacher's file fingerprints ``prints`` when given."""
    run_dir = runs / "nsmc" / name
    run_dir.mkdir(parents=True, exist_ok=True)  # an existing folder: the run trained again
    metrics = {
        "dataset": "nsmc",
        "teacher": None,
        "vocab_size": 3000,
        "student_size": size,
        "params": 27394,
        "size_bytes": 110504,
        "alpha": 1.0,
        "temperature": 2.0,
        "kd_loss": "kl",
        "unlabeled": None,
        "seed": seed,
        "n_train": 600,
        "epochs_run": 9,
        "best_epoch": 6,
        "val_accuracy": test + 0.01,
        "test_accuracy": test,
        "test_f1": test,
        "train_seconds": 540.0,
        "seconds_per_epoch": 60.0,
        "device": "cpu",
        "device_name": "Some CPU",
        "run_dir": str(run_dir),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics | extra))
    config = {"epochs": 12, "patience": 2 + (seed == 7)}
    if prints:
        config["fingerprints"] = {"data": "d" * 64, "teacher": prints}
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.fixture
def ladder_files(tmp_path, monkeypatch) -> ladder.LadderConfig:
    """Three runs (a baseline over two seeds, an ensemble-distilled run with two transfer files), an older
    record of one of them and of another run, a README with the ladder block and a bench run's peers."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs/ladder")
    for name, lines in (("u1.txt", 3), ("u2.txt", 2)):
        Path(name).write_text("".join(f"리뷰 {name} {i}\n" for i in range(lines)), encoding="utf-8")
    ladder_run(runs, "tiny-base-s1", "tiny", 1, 0.80)
    ladder_run(runs, "tiny-base-s2", "tiny", 2, 0.82)
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.885, "teacher_val_accuracy": 0.89}
    kd |= {"unlabeled": "u1.txt+u2.txt", "unlabeled_files": ["u1.txt", "u2.txt"]}
    ladder_run(runs, "tiny-kd-s1", "tiny", 1, 0.86, **kd)
    ladder_run(runs, "tiny-base-s7", "tiny", 7, 0.84)  # patience 3: another protocol, its own row
    ladder_run(Path("runs/members"), "base-v9000", "base", 42, 0.865, vocab_size=9000)
    member = Path("runs/members/nsmc/base-v9000/student")  # a student teacher: its metrics.json is beside it
    member.mkdir()
    (member / "config.json").write_text(json.dumps({"model_type": STUDENT_MODEL_TYPE}))
    ladder_run(runs, "tiny-bilstm-s1", "tiny", 1, 0.85, alpha=0.1, teacher=str(member))
    ladder_run(Path("models"), "nsmc-base", "base", 42, 0.86, run_dir="runs/nsmc/base-baseline")  # bundled
    (runs / "nsmc" / "unfinished").mkdir()
    (runs / "nsmc" / "unfinished" / "metrics.json").write_text(json.dumps({"dataset": "nsmc"}))
    old = pd.DataFrame(
        [
            {"run_dir": "runs/nsmc/elsewhere", "test_accuracy": 0.5},
            {"run_dir": "runs/ladder/nsmc/tiny-base-s1", "test_accuracy": 0.1, "train_seconds": 9.0},
            {"run_dir": "runs/ladder/nsmc/tiny-base-s2", "test_accuracy": 0.82, "train_seconds": 540.0},
        ]
    )
    old.to_csv("runs.csv", index=False)
    Path("README.md").write_text("before\n<!-- ladder:start -->\nold table\n<!-- ladder:end -->\nafter\n")
    peer = {"model": "tfidf-lr (scikit-learn)", "test_accuracy": 0.873, "train_seconds": 61.4}
    peers = [peer | {"batch64_per_s": 1234.5, "size_bytes": 6_620_151}]
    peers.append({"model": "fasttext", "test_accuracy": 0.8658, "train_seconds": 15.0, "batch64_per_s": 9e4})
    peers[-1]["size_bytes"] = 608e6
    machine = {"cpu": "Some CPU", "load_average_at_start": [0.5, 0, 0], "load_average_at_end": [1.25, 0, 0]}
    Path("bench.json").write_text(
        json.dumps({"peers": peers, "machine": machine, "settings": {"threads": 1}})
    )
    return ladder.LadderConfig(
        runs=(str(runs), "runs/members", "models"),
        csv="runs.csv",
        bench="bench.json",
        readme="README.md",
        out="ladder.md",
    )


def test_ladder_records_every_run_and_groups_seeds(ladder_files):
    text = ladder.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    # tiny-base-s2's earlier record (same training time) was replaced; tiny-base-s1 was trained again (another
    # time): both rows stay, the ladder shows the latest
    assert len(frame) == 9 and list(frame["test_accuracy"][:2]) == [0.5, 0.1]
    assert list(frame["run_dir"]).count("runs/ladder/nsmc/tiny-base-s2") == 1
    assert frame["device_name"].isna().sum() == 2 and set(frame["device_name"].dropna()) == {"Some CPU"}
    latest = frame.drop_duplicates("run_dir", keep="last")
    # ordered by validation accuracy (test + 0.01 here), best first; kd and base tie: the smaller first
    base9000, kd, base, bilstm, patient, baseline = ladder.ladder_rows(
        latest[latest["run_dir"].str.startswith("runs/")]
    )
    assert (patient["seeds"], patient["test acc (%)"], patient["epochs (patience)"]) == (1, "84.00", "12 (3)")
    assert (bilstm["teacher"], bilstm["test acc (%)"]) == ("base-v9000 (86.50)", "85.00")
    assert (base9000["student"], base9000["seeds"], base9000["test acc (%)"]) == ("base v9000", 1, "86.50")
    assert (base["student"], base["test acc (%)"]) == ("base v3000", "86.00")  # recorded by its run_dir
    assert "| base v3000 | none |" in text and "elsewhere" not in text
    assert (baseline["teacher"], baseline["seeds"], baseline["test acc (%)"]) == ("none", 2, "81.00 ± 1.41")
    assert baseline["transfer set"] == baseline["KD"] == "" and baseline["rows"] == "600"
    assert baseline["epochs (patience)"] == "12 (2)"
    assert (
        kd["teacher"] == "ens2-abcd1234 (88.50)" and "- `ens2-abcd1234` = tfidf-lr-nsmc-1×3 + b×1\n" in text
    )
    assert (kd["KD"], kd["transfer set"], kd["rows"]) == ("KL T2 α0.1", "train + u1 + u2", "605")  # 600+3+2
    assert (kd["s / epoch"], kd["total (min)"], kd["best / last epoch"]) == ("60", "9", "6/9")
    assert Path("ladder.md").read_text(encoding="utf-8") == text + "\n"
    readme = Path("README.md").read_text(encoding="utf-8")
    assert readme.startswith("before\n<!-- ladder:start -->\n| student |") and readme.endswith("-->\nafter\n")
    assert "old table" not in readme and text in readme
    ladder.ladder(ladder_files)  # regenerating changes nothing
    assert Path("README.md").read_text(encoding="utf-8") == readme and len(pd.read_csv("runs.csv")) == 9


def test_ladder_keeps_teachers_of_one_name_apart(ladder_files):
    # the same ensemble name and test accuracy, but one member trained again (another machine): its runs
    # are not seeds of the other teacher's row; runs recorded without fingerprints go by test accuracy
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.88}
    runs = Path(ladder_files.runs[0])
    for seed, prints in ((1, ["a" * 64, "b" * 64]), (2, ["a" * 64, "b" * 64]), (3, ["a" * 64, "c" * 64])):
        ladder_run(runs, f"tiny-kd-train-s{seed}", "tiny", seed, 0.85, prints, **kd)
    ladder.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    assert frame["teacher_fingerprint"].dropna().nunique() == 2
    rows = ladder.ladder_rows(frame[frame["run_dir"].str.contains("tiny-kd")])
    shown = sorted((row["teacher"], row["transfer set"], row["seeds"]) for row in rows)
    first, second = (
        ladder.recorded_teacher_fingerprint({"fingerprints": {"teacher": ["a" * 64, m * 64]}}) for m in "bc"
    )
    assert first != second
    assert shown == sorted(
        [
            ("ens2-abcd1234 (88.00) [" + first.removeprefix("sha256:") + "]", "train", 2),
            ("ens2-abcd1234 (88.00) [" + second.removeprefix("sha256:") + "]", "train", 1),
            ("ens2-abcd1234 (88.50)", "train + u1 + u2", 1),
        ]
    )
    assert (
        ladder.recorded_teacher_fingerprint({"epochs": 12}) is None
        and ladder.recorded_teacher_fingerprint(None) is None
    )


def test_ladder_keeps_a_folder_trained_again_from_another_teacher(ladder_files):
    # a run folder's name does not hold the teacher's fingerprint: trained again from a rebuilt teacher, the
    # folder's earlier run still counts for its own teacher; trained again from the same teacher, only the
    # latest counts
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.88}
    runs = Path(ladder_files.runs[0])
    ladder_run(runs, "tiny-again", "tiny", 1, 0.84, ["a" * 64], **kd)
    ladder.ladder(ladder_files)
    ladder_run(runs, "tiny-again", "tiny", 1, 0.86, ["b" * 64], train_seconds=600.0, **kd)  # rebuilt teacher
    ladder.ladder(ladder_files)
    ladder_run(runs, "tiny-again", "tiny", 1, 0.87, ["b" * 64], train_seconds=700.0, **kd)  # same teacher
    ladder.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    assert list(frame.loc[frame["run_dir"].str.endswith("tiny-again"), "test_accuracy"]) == [0.84, 0.86, 0.87]
    rows = ladder.ladder_rows(frame[frame["run_dir"].str.endswith("tiny-again")])  # as recorded
    assert len(rows) == 2  # the two teachers; the ladder itself keeps each one's latest run
    lines = Path("ladder.md").read_text(encoding="utf-8").splitlines()
    again = "| tiny v3000 | ens2-abcd1234 (88.00) ["
    shown = [line.split(" | ")[6] for line in lines if line.startswith(again)]
    assert sorted(shown) == ["84.00", "87.00"]  # one seed each: 0.86 was replaced by the later 0.87


def test_ladder_shows_the_kd_loss_of_each_row(ladder_files):
    # the same student, teacher and transfer set distilled with KL at two temperatures and with MSE: three
    # rows that differ in their KD cell (the temperature of an MSE run does not matter and is not shown)
    runs = Path(ladder_files.runs[0])
    kd = {"alpha": 0.1, "teacher": "ens2-abcd1234", "teachers": ["teacher_model/tfidf-lr-nsmc-1", "models/b"]}
    kd |= {"teacher_weights": [3.0, 1.0], "teacher_test_accuracy": 0.88}
    for name, loss in (("kl2", {}), ("kl4", {"temperature": 4.0}), ("mse", {"kd_loss": "mse", "alpha": 0.0})):
        ladder_run(runs, f"tiny-loss-{name}", "tiny", 1, 0.85, ["a" * 64], **(kd | loss))
    ladder.ladder(ladder_files)
    frame = pd.read_csv("runs.csv")
    rows = ladder.ladder_rows(frame[frame["run_dir"].str.contains("tiny-loss")])
    assert sorted(row["KD"] for row in rows) == ["KL T2 α0.1", "KL T4 α0.1", "MSE α0"]
    assert {row["teacher"] for row in rows} == {"ens2-abcd1234 (88.00)"}  # told apart without fingerprints


def ladder_accuracies(cfg: ladder.LadderConfig, run_dirs: str) -> dict[str, str]:
    """Record the runs, then each ladder row's student cell and test accuracy, of the runs whose folder
    matches the regular expression ``run_dirs``."""
    ladder.ladder(cfg)
    frame = pd.read_csv("runs.csv")
    rows = ladder.ladder_rows(frame[frame["run_dir"].str.contains(run_dirs)])
    return {row["student"]: row["test acc (%)"] for row in rows}


def test_ladder_keeps_runs_with_other_model_settings_apart(ladder_files):
    # two seeds of the default student and two with max pooling and more dropout: two rows, the second
    # naming what differs (before, the four seeds were averaged into one row)
    runs = Path(ladder_files.runs[0])
    for seed in (1, 2):
        ladder_run(runs, f"tiny-last-s{seed}", "tiny", seed, 0.84)
        ladder_run(runs, f"tiny-max-s{seed}", "tiny", seed, 0.86)
        config = runs / "nsmc" / f"tiny-max-s{seed}" / "config.json"
        changed = {"pooling": "max", "dropout": 0.3, "seed": seed, "lr": 0.002}  # lr is the default
        config.write_text(json.dumps(json.loads(config.read_text()) | changed))
    assert ladder_accuracies(ladder_files, "tiny-last|tiny-max") == {
        "tiny v3000": "84.00 ± 0.00",
        "tiny v3000 (pooling=max dropout=0.3)": "86.00 ± 0.00",
    }


def test_ladder_keeps_datasets_apart(ladder_files):
    # the same baseline trained on NSMC and on the shopping reviews is two rows, each naming its dataset
    runs = Path(ladder_files.runs[0])
    ladder_run(runs, "tiny-nsmc", "tiny", 1, 0.84)
    ladder_run(runs, "tiny-shopping", "tiny", 1, 0.90, dataset="shopping")
    assert ladder_accuracies(ladder_files, "tiny-nsmc|tiny-shopping") == {
        "nsmc: tiny v3000": "84.00",
        "shopping: tiny v3000": "90.00",
    }


def test_ladder_targets_say_met_or_not(ladder_files):
    ladder.ladder(ladder_files)
    table = Path("ladder.md").read_text(encoding="utf-8")
    # the distilled rows are of one seed: the best on validation is shown, against the bench run's peer
    picked = "tiny v3000, ens2-abcd1234 (88.50), KL T2 α0.1, train + u1 + u2 | 1 | 87.00 | 86.00 | 87.30 "
    assert f"| {picked}(bench TF-IDF+LR) | -1.30, no intervals | no |" in table
    assert f"| tiny distilled student ≥ reference (mean over ≥ 3 seeds) | {picked}" in table
    assert "| ensemble teacher" not in table and "Targets (issue 25): each is judged on" in table
    assert "| tfidf-lr (scikit-learn) | 87.30 | 61 | 1,234 | 6.62 MB |" in table
    assert "| fasttext | 86.58 | 15 | 90,000 | 608 MB |" in table
    assert "on Some CPU, 1 thread(s), load average 0.50 at the start and 1.25 at the end." in table
    nothing = ladder.ladder_targets([], [])
    assert [(t["row (best validation)"], t["met"]) for t in nothing] == [("not run", "no")] * 2


def recorded_run(seed: int, valid: float, test: float, **extra) -> dict:
    """A runs.csv row of a tiny v3000 run distilled from ``ens2`` (``teacher_members="none"``: without a
    teacher), 0.87 being its reference's test accuracy on the same examples (paired columns of ``ref``)."""
    return (
        dict.fromkeys(ladder.RUN_COLUMNS)
        | {
            "run_dir": f"runs/{seed}-{valid}-{test}-{sorted(extra.items())}",
            "dataset": "nsmc",
            "teacher": "ens2",
            "teacher_members": "a×1 + b×2",
            "teacher_test_accuracy": 0.88,
            "vocab_size": 3000,
            "student_size": "tiny",
            "params": 27394,
            "alpha": 0.1,
            "temperature": 2.0,
            "kd_loss": "kl",
            "seed": seed,
            "n_transfer": 600,
            "epochs_run": 4,
            "best_epoch": 3,
            "val_accuracy": valid,
            "test_accuracy": test,
            "train_seconds": 100.0,
            "seconds_per_epoch": 25.0,
            "max_epochs": 12,
            "patience": 2,
            "reference": "ref",
            "test_vs_reference": test - 0.87,
            "test_vs_reference_low": 0.001,
        }
        | extra
    )


def test_ladder_targets_pick_rows_on_validation_and_need_every_interval_above_zero():
    # "steady" is the best distilled row of 3 seeds on validation: +1.00 point over the reference, but one
    # seed's interval includes 0; "lucky" is better on test and every interval is above 0, but is not picked;
    # nor are rows that are better on validation but have one seed, no teacher or too many parameters
    steady = [recorded_run(s, 0.87, 0.88) for s in (1, 2)]
    steady.append(recorded_run(3, 0.87, 0.88, test_vs_reference_low=-0.002))
    lucky = [recorded_run(s, 0.86, 0.89, alpha=0.5) for s in (1, 2, 3)]
    others = [recorded_run(1, 0.95, 0.95, alpha=0.3)]
    others += [recorded_run(s, 0.93, 0.93, teacher=None, teacher_members="none") for s in (1, 2, 3)]
    others += [recorded_run(s, 0.94, 0.94, student_size="large", params=6_600_000) for s in (1, 2, 3)]
    frame = pd.DataFrame(steady + lucky + others, columns=ladder.RUN_COLUMNS)
    peer = [{"model": "tfidf-lr (scikit-learn)", "test_accuracy": 0.8755}]
    flagship, tiny = ladder.ladder_targets(ladder.ladder_rows(frame, "ref"), peer)
    picked = "tiny v3000, ens2 (88.00), KL T2 α0.1, train"
    assert flagship == flagship | {"row (best validation)": picked, "seeds": 3, "valid (%)": "87.00 ± 0.00"}
    assert (flagship["test (%)"], flagship["reference test (%)"]) == ("88.00 ± 0.00", "87.00 (paired)")
    assert (flagship["test − reference (points)"], flagship["met"]) == ("+1.00, 2/3 above", "no")
    assert (tiny["row (best validation)"], tiny["met"]) == (picked, "yes")
    frame.loc[2, "test_vs_reference_low"] = 0.0005  # every seed's interval above 0 now
    flagship, _ = ladder.ladder_targets(ladder.ladder_rows(frame, "ref"), peer)
    assert (flagship["test − reference (points)"], flagship["met"]) == ("+1.00, 3/3 above", "yes")
    # without --reference: the bench run's peer, 0.45 point below; no intervals, so no flagship
    flagship, tiny = ladder.ladder_targets(ladder.ladder_rows(frame), peer)
    assert flagship["reference test (%)"] == tiny["reference test (%)"] == "87.55 (bench TF-IDF+LR)"
    assert (flagship["test − reference (points)"], flagship["met"]) == ("+0.45, no intervals", "no")
    assert (tiny["test − reference (points)"], tiny["met"]) == ("+0.45", "yes")
    flagship, tiny = ladder.ladder_targets(ladder.ladder_rows(frame), [])
    assert (flagship["reference test (%)"], flagship["met"], tiny["met"]) == ("no reference", "no", "no")


def test_ladder_targets_compare_rows_of_different_valid_splits_by_their_gap_to_the_reference():
    # "easy" was validated on rows where the reference scores 0.868 (valid 0.870: +0.2 points); "hard" on
    # rows where it scores 0.850 (valid 0.860: +1.0 point): a fair pick takes "hard", not the higher mean
    easy = [recorded_run(s, 0.870, 0.875, valid_vs_reference=0.002) for s in (1, 2, 3)]
    hard = [recorded_run(s, 0.860, 0.872, alpha=0.5, valid_vs_reference=0.010) for s in (1, 2, 3)]
    frame = pd.DataFrame(easy + hard, columns=ladder.RUN_COLUMNS)
    rows = ladder.ladder_rows(frame, "ref")
    assert [r["valid − reference (points)"] for r in rows] == ["+0.20", "+1.00"]  # ordered by valid mean
    _, tiny = ladder.ladder_targets(rows, [])
    assert tiny["row (best validation)"] == "tiny v3000, ens2 (88.00), KL T2 α0.5, train"
    frame.loc[0:2, "valid_vs_reference"] = None  # "easy" without the gap (a run of before): after "hard"
    _, tiny = ladder.ladder_targets(ladder.ladder_rows(frame, "ref"), [])
    assert tiny["row (best validation)"] == "tiny v3000, ens2 (88.00), KL T2 α0.5, train"
    frame["valid_vs_reference"] = None  # no row with the gap: by validation mean
    _, tiny = ladder.ladder_targets(ladder.ladder_rows(frame, "ref"), [])
    assert tiny["row (best validation)"] == "tiny v3000, ens2 (88.00), KL T2 α0.1, train"


def test_ladder_writes_its_files_before_printing(ladder_files, monkeypatch):
    class ClosedPipe(io.StringIO):  # stdout of `ladder.py | head -1` once head has exited
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(BrokenPipeError):
        ladder.ladder(ladder_files)
    assert Path("ladder.md").read_text(encoding="utf-8").startswith("| student |")
    assert "| tiny v3000 | none |" in Path("README.md").read_text(encoding="utf-8")


def test_ladder_errors_are_one_line(ladder_files, capsys):
    Path("README.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="README.md: needs one <!-- ladder:start --> line before one"):
        ladder.main(["--runs", *ladder_files.runs, "--csv", "runs.csv", "--readme", "README.md"])
    with pytest.raises(SystemExit, match="no finished run under empty"):
        ladder.main(["--runs", "empty", "--csv", "other.csv"])


# --- against a reference on the runs' own examples ---------------------------------------------------------


@pytest.fixture
def paired_setup(tmp_path, monkeypatch, data_dir) -> tuple[corpus.Splits, dict, ladder.LadderConfig]:
    """The splits of the default data settings, a weak TF-IDF+LR reference's predictions of them and the
    ladder's settings comparing the runs under runs/paired with it."""
    monkeypatch.chdir(tmp_path)
    splits = train.load_splits(DataConfig(), Paths(data_dir=str(data_dir)))
    reference = fit_sklearn_teacher(SklearnTeacherConfig(c=0.01), splits, "nsmc", tmp_path / "teachers")
    theirs = paired.predict_labels(str(reference), splits, "nsmc")
    cfg = ladder.LadderConfig(
        runs=("runs/paired",),
        csv="runs.csv",
        out="ladder.md",
        reference=str(reference),
        data_dir=str(data_dir),
    )
    return splits, theirs, cfg


def command_line(cfg: ladder.LadderConfig) -> list[str]:
    """ladder.py's options for the runs, the CSV, the reference and the data of ``cfg``."""
    options = ["--csv", cfg.csv, "--reference", cfg.reference, "--data-dir", cfg.data_dir]
    return ["--runs", *cfg.runs, *options]


def paired_run(name: str, size: str, seed: int, splits: corpus.Splits, right: dict[str, float]) -> Path:
    """A finished run whose config.json records the default data settings and whose predictions.npz is right
    on the first ``right[split]`` share of each split's examples (wrong on the rest)."""
    ladder_run(
        Path("runs/paired"), name, size, seed, 0.5, val_accuracy=right["valid"], test_accuracy=right["test"]
    )
    run_dir = Path("runs/paired/nsmc") / name
    write_run_config(run_dir, splits)
    predicted = {}
    for split in paired.SPLITS:
        labels = splits[split]["label"].to_numpy()
        correct = np.arange(len(labels)) < right[split] * len(labels)
        predicted[split] = np.where(correct, labels, 1 - labels)
    train.write_predictions(run_dir, splits, predicted, "d" * 64)
    return run_dir


def write_run_config(run_dir: Path, splits: corpus.Splits, **data: object) -> None:
    """config.json as training writes it: the data settings (defaults, but ``data``) and the fingerprint of
    the run's examples."""
    prints = {"data": corpus.splits_fingerprint(splits, splits["train"]), "teacher": None}
    config = dataclasses.asdict(DataConfig()) | data | {"epochs": 12, "patience": 2, "fingerprints": prints}
    (run_dir / "config.json").write_text(json.dumps(config))


def test_the_ladder_compares_runs_with_the_reference_and_orders_rows_by_validation(paired_setup):
    splits, theirs, cfg = paired_setup
    for seed in (1, 2):  # best on validation, worst on test
        paired_run(f"tiny-s{seed}", "tiny", seed, splits, {"valid": 1.0, "test": 0.5})
    paired_run("base-s1", "base", 1, splits, {"valid": 0.6, "test": 1.0})
    text = ladder.ladder(cfg)
    frame = pd.read_csv("runs.csv").set_index("run_dir")
    for name, right in (("tiny-s1", {"valid": 1.0, "test": 0.5}), ("base-s1", {"valid": 0.6, "test": 1.0})):
        run = frame.loc[f"runs/paired/nsmc/{name}"]
        assert (run["reference"], run["reference_fingerprint"][:7]) == (cfg.reference, "sha256:")
        for split in paired.SPLITS:
            labels = splits[split]["label"].to_numpy()
            expected = right[split] - float(np.mean(theirs[split] == labels))
            difference = run[f"{split}_vs_reference"]
            assert difference == pytest.approx(expected, abs=1 / len(labels))
            assert run[f"{split}_vs_reference_low"] <= difference <= run[f"{split}_vs_reference_high"]
    lines = [line for line in text.splitlines() if line.startswith(("| tiny v3000 |", "| base v3000 |"))]
    assert [line.split(" | ")[0] for line in lines] == ["| tiny v3000", "| base v3000"]  # higher validation
    tiny_gap = 100 * frame.loc[["runs/paired/nsmc/tiny-s1", "runs/paired/nsmc/tiny-s2"], "test_vs_reference"]
    assert lines[0].endswith(f"| {tiny_gap.mean():+.2f} | 0/2 | 12 (2) | 6/9, 6/9 | 60 | 9 |")
    assert "| 1/1 |" in lines[1] and "Rows are ordered by validation accuracy" in text
    assert f"--reference {cfg.reference} --data-dir {cfg.data_dir}`" in text


def test_a_run_without_predictions_is_predicted_in_memory_and_nothing_written_into_it(paired_setup, run_dir):
    splits, theirs, cfg = paired_setup
    old = Path("runs/paired/nsmc/old-run")
    ladder_run(Path("runs/paired"), "old-run", "tiny", 1, 0.5)
    shutil.copytree(run_dir / "student", old / "student")  # untrained: its predictions are its own
    write_run_config(old, splits)
    before = sorted(p.name for p in old.iterdir())
    ladder.ladder(cfg)
    ours = paired.predict_labels(str(old / "student"), splits, "nsmc")
    labels = splits["test"]["label"].to_numpy()
    expected = float(np.mean(ours["test"] == labels) - np.mean(theirs["test"] == labels))
    recorded = pd.read_csv("runs.csv").set_index("run_dir").loc[str(old), "test_vs_reference"]
    assert recorded == pytest.approx(expected) and sorted(p.name for p in old.iterdir()) == before
    write_run_config(old, splits, valid_fraction=0.1)  # other examples than its fingerprint's
    Path("runs.csv").unlink()
    with pytest.raises(SystemExit) as exit_info:
        ladder.main(command_line(cfg))
    message = str(exit_info.value)
    assert message.startswith(f"ladder.py: {old}: the examples loaded") and "\n" not in message


def test_predictions_of_other_examples_are_refused_in_one_line(paired_setup):
    splits, _, cfg = paired_setup
    run = paired_run("tiny-s1", "tiny", 1, splits, {"valid": 1.0, "test": 0.5})
    write_run_config(run, splits, valid_fraction=0.1)  # its recorded settings now load another valid split
    with pytest.raises(SystemExit) as exit_info:
        ladder.main(command_line(cfg))
    message = str(exit_info.value)
    assert message.startswith(
        f"ladder.py: {run / train.PREDICTIONS_NPZ}: its valid labels or examples differ"
    )
    assert "\n" not in message and not Path("runs.csv").exists()


def test_the_paired_columns_are_kept_without_a_reference_and_reused_with_the_same_one(
    paired_setup, monkeypatch
):
    splits, _, cfg = paired_setup
    paired_run("tiny-s1", "tiny", 1, splits, {"valid": 1.0, "test": 0.5})
    ladder.ladder(cfg)
    recorded = pd.read_csv("runs.csv")
    plain = ladder.ladder(dataclasses.replace(cfg, reference=None, data_dir=None))
    header, *_, command = plain.splitlines()
    assert "test − reference" not in header and "--reference" not in command
    pd.testing.assert_frame_equal(pd.read_csv("runs.csv"), recorded)  # the earlier comparison is kept

    def refuse(*args):
        raise AssertionError("compared again")

    monkeypatch.setattr(ladder, "paired_record", refuse)
    ladder.ladder(cfg)  # the same reference files: the recorded columns are reused
    pd.testing.assert_frame_equal(pd.read_csv("runs.csv"), recorded)


def test_tokenizer_and_custom_dimensions_are_rows_of_their_own(tmp_path, monkeypatch):
    """Runs that differ only in the tokenizer kind are two rows, named as their run folders name them."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs/ladder")
    custom = {"student_size": "custom", "embedding_dim": 256, "hidden_dim": 128, "vocab_size": 12000}
    ladder_run(runs, "kiwi-s1", "custom", 1, 0.87, tokenizer="kiwi", **custom)
    ladder_run(runs, "kiwi-s2", "custom", 2, 0.88, tokenizer="kiwi", **custom)
    ladder_run(runs, "wordpiece-s1", "custom", 1, 0.86, tokenizer="wordpiece", **custom)
    ladder_run(runs, "old-s1", "tiny", 1, 0.80)  # recorded before the tokenizer was: WordPiece
    ladder.ladder(ladder.LadderConfig(runs=(str(runs),), csv="runs.csv", out="ladder.md"))
    rows = ladder.ladder_rows(ladder.latest_runs(pd.read_csv("runs.csv")))
    assert [(r["student"], r["seeds"]) for r in rows] == [
        ("e256h128 v12000 kiwi", 2),
        ("e256h128 v12000", 1),
        ("tiny v3000", 1),
    ]
