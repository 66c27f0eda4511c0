"""Your own data (issue 24): any review file (CSV, TSV, JSON Lines, Parquet, a datasets folder, a folder of
splits) with any label set, read by the one reader the built-in corpora use; fingerprints that cover labels;
N-class students, teachers, metrics, serving and model cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import config
import corpus
import distil
import reader
import train
from card import model_card
from conftest import NEGATIVE, NEUTRAL, POSITIVE, cli_roots, labelled_reviews
from model import Student

STARS = {"1": NEGATIVE, "2": NEUTRAL, "3": POSITIVE}  # three ordered classes
BINARY = {"부정": NEGATIVE, "긍정": POSITIVE}


def write(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as a CSV, TSV, JSON Lines or Parquet file (by extension) or a datasets folder (no suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        import datasets

        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    return path


# --- reading: formats, columns, labels, splits ------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl", "a.parquet", "saved"])
def test_every_format_reads_the_same_examples_and_split(tmp_path, name):
    frame = labelled_reviews(300, BINARY)
    splits = corpus.load_file(write(frame, tmp_path / name))
    reference = corpus.load_file(write(frame, tmp_path / "reference.csv"))
    assert splits.labels == ("긍정", "부정")  # sorted
    for split in corpus.SPLITS:
        assert splits[split][["id", "text", "label"]].equals(reference[split][["id", "text", "label"]])
    assert sum(len(df) for df in splits.values()) == 300 and len(splits["test"]) > 30


def test_a_file_without_ids_is_split_by_its_text_and_splits_are_stable(tmp_path):
    frame = labelled_reviews(400, BINARY)[["text", "label"]].rename(
        columns={"text": "review", "label": "sentiment"}
    )
    first = corpus.load_file(write(frame, tmp_path / "x.csv"))
    moved = corpus.load_file(write(frame.iloc[::-1], tmp_path / "other" / "y.csv"))  # renamed, reordered
    for split in corpus.SPLITS:
        assert set(first[split]["text"]) == set(moved[split]["text"])
    assert first["train"]["id"].str.startswith("text-").all()


def test_labels_are_sorted_numerically_or_fixed_by_labels(tmp_path):
    frame = labelled_reviews(200, {"10": POSITIVE, "9": NEUTRAL, "1": NEGATIVE})
    path = write(frame, tmp_path / "stars.csv")
    assert corpus.load_file(path).labels == ("1", "9", "10")  # numbers numerically, not "1" < "10" < "9"
    fixed = corpus.load_file(path, corpus.ReadSettings(labels=("10", "9", "1")))
    assert fixed.labels == ("10", "9", "1")
    rows = fixed["train"]
    original = frame.set_index("id")["label"]
    assert [fixed.labels[i] for i in rows["label"]] == original[rows["id"]].tolist()


def test_a_folder_of_splits_keeps_them_and_carves_valid_from_train(tmp_path):
    write(labelled_reviews(300, BINARY, seed=1), tmp_path / "data" / "train.jsonl")
    write(
        labelled_reviews(80, BINARY, seed=2).assign(id=lambda d: "t" + d["id"]),
        tmp_path / "data" / "test.jsonl",
    )
    splits = corpus.load_file(tmp_path / "data", valid_fraction=0.1)
    assert len(splits["test"]) == 80 and len(splits["train"]) + len(splits["valid"]) == 300
    assert 10 < len(splits["valid"]) < 60


def test_a_datasets_dict_with_class_names_keeps_their_order(tmp_path):
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["pos", "neg"]),
        }
    )
    parts = {
        split: datasets.Dataset.from_dict(
            {
                "id": (split + frame["id"]).tolist(),
                "text": frame["text"].tolist(),
                "label": (frame["label"] == "부정").astype(int).tolist(),
            },
            features=features,
        )
        for split, frame in (
            ("train", labelled_reviews(200, BINARY, 3)),
            ("validation", labelled_reviews(40, BINARY, 4)),
        )
    }
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "dd"))
    splits = corpus.load_file(tmp_path / "dd")
    assert splits.labels == ("pos", "neg") and len(splits["valid"]) == 40  # the ClassLabel order, not sorted
    assert len(splits["train"]) + len(splits["test"]) == 200


@pytest.mark.parametrize(
    "content, options, message",
    [
        (
            "review,stars\n좋다,1\n",
            ["--text-column", "reveiw"],
            "no column 'reveiw' (--text-column); its columns are review, stars; did you mean 'review'?",
        ),
        ("body,mood\n좋다,1\n", [], "no text column among body, mood"),
        (
            "text,label\n좋다,긍정\n별로,부정\n싫다,화남\n",
            ["--labels", "부정", "긍정"],
            "row 3: label '화남' is not one of --labels 부정 긍정: fix the row",
        ),
        ("text,label\n좋다,긍정\n최고,긍정\n", [], "only one label, '긍정': a classifier needs at least two"),
        ("", [], "is empty"),
        ("text,label\n", [], "is empty"),
        ("text,label\n좋다,1\n,,,\n", [], "not a well-formed CSV file"),
        ("text,label\n좋다,\n", [], "row 1: empty label"),
    ],
)
def test_malformed_input_is_one_line_naming_the_file_and_the_fix(tmp_path, capsys, content, options, message):
    path = tmp_path / "mine.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        distil.main(["download", "--data", str(path), *options])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith(f"error: {path}") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_formats_and_bad_json_lines_name_the_file(tmp_path):
    (tmp_path / "a.xlsx").write_bytes(b"PK")
    with pytest.raises(reader.DataFormatError, match=r"a.xlsx: unknown file type '.xlsx': use .csv, .tsv"):
        corpus.load_file(tmp_path / "a.xlsx")
    (tmp_path / "b.jsonl").write_text('{"text": "좋다", "label": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(reader.DataFormatError, match=r"b.jsonl:2: a list, not a JSON object"):
        corpus.load_file(tmp_path / "b.jsonl")
    (tmp_path / "folder").mkdir()
    with pytest.raises(reader.DataFormatError, match="a data folder needs a train split"):
        corpus.load_file(tmp_path / "folder")


def test_skip_bad_rows_counts_unknown_labels(tmp_path, caplog):
    path = tmp_path / "mine.csv"
    frame = labelled_reviews(100, BINARY)
    frame.loc[3, "label"] = "화남"
    write(frame, path)
    with caplog.at_level("INFO", logger="distilkobilstm"):
        splits = corpus.load_file(path, corpus.ReadSettings(labels=("부정", "긍정")), skip_bad_rows=True)
    assert sum(len(df) for df in splits.values()) == 99 and "1 malformed skipped" in caplog.text


def test_encoding_hints_tell_cp949_from_damaged_utf8(tmp_path):
    cp949 = tmp_path / "cp949.csv"
    cp949.write_bytes("text,label\n재밌다,1\n".encode("cp949"))
    with pytest.raises(reader.DataEncodingError, match="looks like CP949/EUC-KR.*iconv -f cp949 -t utf-8"):
        corpus.load_file(cp949)
    damaged = tmp_path / "damaged.csv"
    damaged.write_bytes("text,label\n재밌다,1\n".encode() + b"\xff\xfe bad,0\n")
    with pytest.raises(reader.DataEncodingError) as err:
        corpus.load_file(damaged)
    message = str(err.value)
    assert f"{damaged}:3: not valid UTF-8" in message and "no CP949/EUC-KR either" in message
    assert f"iconv -f utf-8 -t utf-8 -c {damaged} > {damaged}.utf8" in message and "-f cp949" not in message


def test_a_failed_download_is_one_line_with_the_url_and_where_to_put_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(
        corpus.DATASETS, "steam", corpus.DatasetSpec({"all": "steam.txt"}, "http://127.0.0.1:9/", "label")
    )
    monkeypatch.setattr(corpus.download, "__defaults__", (5.0, 1, 0.0))  # one attempt
    with pytest.raises(SystemExit) as exit_info:
        distil.main(["download", "--dataset", "steam", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert (
        "Could not download http://127.0.0.1:9/steam.txt" in err
        and str(tmp_path / "steam" / "steam.txt") in err
    )


def test_data_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="--text-column, --labels describe --data"):
        config.DataConfig(text_column="review", labels=("a", "b"))
    with pytest.raises(ValueError, match="--dataset steam and --data x.csv: give one of them"):
        config.DataConfig(dataset="steam", data="x.csv")
    with pytest.raises(ValueError, match="two or more distinct names"):
        config.DataConfig(data="x.csv", labels=("a", "a"))
    cfg = config.DataConfig(data=str(tmp_path / "my reviews.csv"), labels=[1, 2, 3])
    assert cfg.labels == ("1", "2", "3") and cfg.data_name() == "my_reviews"
    assert config.DataConfig().data_name() == "nsmc"


def test_metrics_name_each_class_and_count_within_one_for_ordered_labels():
    labels, preds = np.array([0, 1, 2, 2, 0]), np.array([0, 2, 2, 0, 1])
    metrics = train.classification_metrics(labels, preds, ("1", "2", "3"))
    assert metrics["accuracy"] == 0.4 and metrics["within_one"] == 0.8
    assert list(metrics["f1_per_class"]) == ["1", "2", "3"] and metrics["confusion_matrix"][2] == [1, 0, 1]
    assert "within_one" not in train.classification_metrics(labels, preds, ("부정", "중립", "긍정"))
    assert not corpus.is_ordinal(("1", "3", "2")) and not corpus.is_ordinal(("0", "1"))


# --- end to end: python distil.py run on each format, and predict -------------------------------------------


def cli(tmp_path: Path, data: Path, *options: str) -> list[str]:
    """distil.py options for a tiny run of ``data`` under ``tmp_path``."""
    return ["--data", str(data), *options, *cli_roots(tmp_path)]


TINY = ["--size", "tiny", "--vocab-size", "200", "--epochs", "6", "--lr", "0.02", "--batch-size", "32"]
TINY += ["--warmup-ratio", "0"]

FILES = {
    "csv with review,sentiment and 긍정/부정": (
        "reviews.csv",
        lambda: (
            labelled_reviews(800, BINARY)
            .drop(columns="id")
            .rename(columns={"text": "review", "label": "sentiment"})
        ),
        (),
    ),
    "jsonl with pos/neg": (
        "reviews.jsonl",
        lambda: labelled_reviews(800, {"neg": NEGATIVE, "pos": POSITIVE}),
        (),
    ),
    "tsv with an id column": (
        "reviews.tsv",
        lambda: labelled_reviews(800, {"0": NEGATIVE, "1": POSITIVE}).rename(columns={"id": "review_id"}),
        ("--id-column", "review_id"),
    ),
    "parquet": ("reviews.parquet", lambda: labelled_reviews(800, BINARY), ()),
    "datasets folder": ("saved", lambda: labelled_reviews(800, BINARY), ()),
    "three ordered classes": ("stars.csv", lambda: labelled_reviews(900, STARS), ()),
}


EXPECTED_LABELS = {  # sorted, numbers numerically
    "csv with review,sentiment and 긍정/부정": ["긍정", "부정"],
    "jsonl with pos/neg": ["neg", "pos"],
    "tsv with an id column": ["0", "1"],
    "parquet": ["긍정", "부정"],
    "datasets folder": ["긍정", "부정"],
    "three ordered classes": ["1", "2", "3"],
}


@pytest.mark.parametrize("case", list(FILES))
def test_distil_run_on_any_file_learns_and_predict_names_its_labels(tmp_path, capsys, case):
    name, make, options = FILES[case]
    frame = make()
    data = write(frame, tmp_path / name)
    expected = EXPECTED_LABELS[case]
    [result] = distil.main(["run", *cli(tmp_path, data, *options), "--finetune", "tfidf-lr", *TINY])
    assert result["labels"] == expected and len(result["test_f1_per_class"]) == len(expected)
    assert result["test_accuracy"] > 1 / len(expected) + 0.2  # well above chance: it learnt
    assert ("test_within_one" in result) == (case == "three ordered classes")
    student_dir = str(Path(result["run_dir"]) / "student")
    capsys.readouterr()
    distil.main(["predict", "--student", student_dir, "정말 최고 명작", "최악 노잼"])
    predicted = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert set(predicted) <= set(expected) and predicted[0] != predicted[1]
    student = Student.from_pretrained(student_dir, backend="onnx")  # the ONNX graph has every class
    assert student.labels == expected and student.predict_proba(["최고"]).shape == (1, len(expected))
    assert student.predict_labels("정말 최고 명작") == predicted[0]


def test_three_classes_serve_score_and_card(tmp_path, capsys):
    from fastapi.testclient import TestClient

    import serve

    data = write(labelled_reviews(900, STARS), tmp_path / "stars.csv")
    [result] = distil.main(["student", *cli(tmp_path, data), "--alpha", "1", *TINY])
    student_dir = Path(result["run_dir"]) / "student"
    capsys.readouterr()
    [scored] = distil.main(["predict", "--student", str(student_dir), "--data", str(data), "-q"])
    assert scored["accuracy"] == pytest.approx(result["test_accuracy"]) and "within_one" in scored
    out = capsys.readouterr().out
    assert "within one class" in out and "confusion matrix (rows: true, columns: predicted)" in out
    student = Student.from_pretrained(student_dir)
    with TestClient(serve.create_app(student, serve.ServeConfig())) as client:
        answer = client.post("/predict", json={"texts": ["최고 명작"]}).json()["predictions"][0]
        assert list(answer["probabilities"]) == ["1", "2", "3"] and answer["label"] in ("1", "2", "3")
        assert client.get("/model").json()["labels"] == ["1", "2", "3"]
    card = model_card(student)
    assert "1 / 2 / 3" in card and "within one class" in card and "[batch, 3] (1, 2, 3" in card
    assert json.loads((student_dir / "config.json").read_text())["id2label"] == {"0": "1", "1": "2", "2": "3"}


def test_a_teacher_or_student_of_other_labels_is_refused_in_one_line(tmp_path, capsys):
    binary = write(labelled_reviews(300, BINARY), tmp_path / "binary.csv")
    stars = write(labelled_reviews(300, STARS), tmp_path / "stars.csv")
    distil.main(["teacher", *cli(tmp_path, binary), "--model", "tfidf-lr"])
    [teacher_dir] = (tmp_path / "teachers").glob("tfidf-lr-binary-*")
    for argv in (
        ["cache", *cli(tmp_path, stars), "--teacher", str(teacher_dir)],
        ["student", *cli(tmp_path, stars), "--teacher", str(teacher_dir), *TINY],
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            distil.main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert "predicts 긍정 / 부정, the data has the labels 1 / 2 / 3: use a teacher trained on" in err
    assert not (tmp_path / "runs" / "stars").exists()


def test_flipped_labels_reuse_no_run_teacher_or_cache(tmp_path, capsys):
    frame = labelled_reviews(400, BINARY)
    data = write(frame, tmp_path / "mine.csv")
    baseline = ["student", *cli(tmp_path, data), "--alpha", "1", *TINY]
    distilled = ["run", *cli(tmp_path, data), "--finetune", "tfidf-lr", *TINY]
    first = distil.main(distilled)[0]
    distil.main(baseline)
    write(
        frame.assign(label=frame["label"].map({"긍정": "부정", "부정": "긍정"})), data
    )  # every label flipped
    again = distil.main(distilled)[0]
    teachers = sorted((tmp_path / "teachers").glob("tfidf-lr-mine-*"))
    assert len(teachers) == 2 and all(len(list((t / "logits").iterdir())) == 3 for t in teachers)  # + caches
    assert again["run_dir"] != first["run_dir"] and again["teacher"] != first["teacher"]
    assert abs(again["test_accuracy"] - first["test_accuracy"]) < 0.2  # learnt the flipped labels as well
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the baseline's folder holds the run on the old labels: refused
        distil.main(baseline)
    assert "holds a run with other settings (data fingerprint" in capsys.readouterr().err


def test_the_own_data_report_scores_the_peer_and_every_run_on_one_split(tmp_path, capsys, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import own_data_report

    data = write(labelled_reviews(900, STARS), tmp_path / "stars.csv")
    monkeypatch.chdir(tmp_path)  # the runs and the teacher under ./runs and ./teachers
    distil.main(["run", *cli(tmp_path, data), "--finetune", "tfidf-lr", *TINY])
    distil.main(["student", *cli(tmp_path, data), "--alpha", "1", *TINY])
    [peer] = (tmp_path / "teachers").glob("tfidf-lr-stars-*")
    commands = tmp_path / "commands.sh"
    commands.write_text("python distil.py run --data stars.csv ...\n")
    argv = ["--data", str(data), "--peer", str(peer), "--runs", str(tmp_path / "runs" / "stars")]
    rows = own_data_report.main([*argv, "--commands", str(commands), "--out", str(tmp_path / "report")])
    assert [r["teacher"] for r in rows] == ["-", "none", peer.name]  # the peer, the baseline, the distilled
    assert all(r["test_accuracy"] > 0.6 and r["test_within_one"] >= r["test_accuracy"] for r in rows)
    table = (tmp_path / "report.md").read_text()
    assert "| within one class (%) |" in table and "python distil.py run --data stars.csv" in table
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["labels"] == ["1", "2", "3"] and len(saved["rows"]) == 3
