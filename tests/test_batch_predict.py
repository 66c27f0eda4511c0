"""Tests for batch_predict.py and `distil.py predict --input`: many texts from a file, a table or stdin."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import batch_predict
import distil
import model
from manifest import write_manifest
from model import Student

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "nsmc-tiny"  # the smallest bundled student: fast to load and run
POSITIVE, NEGATIVE = "정말 재밌어요 최고의 영화", "시간 아깝다 최악의 영화"
LABELS = ["negative", "positive"]
PROBS = ["prob_negative", "prob_positive"]


@pytest.fixture(scope="module")
def student() -> Student:
    return Student.from_pretrained(TINY)


def predict(*args: str) -> None:
    distil.main(["predict", "--student", str(TINY), *args])


def read_csv(text_or_path: str | Path) -> pd.DataFrame:
    source = io.StringIO(text_or_path) if isinstance(text_or_path, str) else text_or_path
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_probabilities(df: pd.DataFrame, labelled: list[bool]) -> None:
    """Labelled rows: a label name and probabilities summing to 1 that pick it; the others: all empty."""
    for (_, row), has_label in zip(df.iterrows(), labelled):
        if not has_label:
            assert row["label"] == "" and all(row[c] == "" for c in PROBS)
            continue
        probs = np.array([float(row[c]) for c in PROBS])
        assert row["label"] == LABELS[int(probs.argmax())]
        assert abs(probs.sum() - 1) < 1e-5


def error_line(capsys) -> str:
    """The one-line error of a failed command (no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and not any("Traceback" in line for line in err)
    return err[-1]


def test_txt_input_to_stdout_as_csv_with_empty_lines_left_unlabelled(tmp_path, capsys):
    lines = [POSITIVE, "", NEGATIVE, "   ", "\u200b"]
    path = tmp_path / "reviews.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))  # Windows line ends too
    predict("--input", str(path))
    out, err = capsys.readouterr()
    df = read_csv(out)
    assert list(df.columns) == ["text", "label", *PROBS]
    assert df["text"].tolist() == lines  # one row per line, in order, line ends removed
    assert df["label"].tolist()[:3] == ["positive", "", "negative"]
    assert_probabilities(df, [True, False, True, False, False])
    assert f"{path}: 2 of 5 rows labelled; 3 empty left unlabelled (first: line 2)" in err


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_table_input_guesses_the_text_column_and_keeps_every_column(tmp_path, capsys, fmt):
    sep = "," if fmt == "csv" else "\t"
    rows = [["007", POSITIVE, "5"], ["008", "", "1"], ["009", 'a "quoted" 최악', "1"]]
    if fmt == "csv":
        rows[2][1] = '"a ""quoted"" 최악, 노잼"'
    path = tmp_path / f"reviews.{fmt}"
    path.write_text(
        "\n".join(sep.join(r) for r in [["id", "Review", "score"], *rows]) + "\n", encoding="utf-8"
    )
    out = tmp_path / "predictions.csv"
    predict("--input", str(path), "--output", str(out))
    df = read_csv(out)
    assert list(df.columns) == ["id", "Review", "score", "label", *PROBS]
    assert df["id"].tolist() == ["007", "008", "009"]  # read as text: leading zeros kept
    expected = 'a "quoted" 최악, 노잼' if fmt == "csv" else 'a "quoted" 최악'  # TSV: quotes are text
    assert df["Review"].tolist() == [POSITIVE, "", expected]
    assert_probabilities(df, [True, False, True])
    assert "1 empty left unlabelled (first: row 2)" in capsys.readouterr().err


def test_jsonl_round_trip_keeps_records_and_counts_invalid_texts(tmp_path, capsys):
    records = [
        '{"id": 1, "body": "' + POSITIVE + '", "meta": {"stars": [5]}}',
        "",  # a blank line is no record
        '{"id": 2, "body": "\\ud800 lone surrogate"}',
        '{"id": 3, "body": null}',
        '{"id": 4, "body": 5}',
        '{"id": 5}',
        '{"id": 6, "body": "' + NEGATIVE + '"}',
    ]
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(records) + "\n", encoding="utf-8")
    out = tmp_path / "predictions.jsonl"
    predict("--input", str(path), "--text-column", "body", "--output", str(out))
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["meta"] == {"stars": [5]} and "meta" not in rows[1]  # an absent key stays absent
    assert "body" not in rows[4] and rows[1]["body"] == "\ud800 lone surrogate"  # written back as is
    assert [r["label"] for r in rows] == ["positive", None, None, None, None, "negative"]
    for row in rows:
        assert list(row)[-3:] == ["label", *PROBS]
        if row["label"] is not None:
            assert abs(row["prob_negative"] + row["prob_positive"] - 1) < 1e-5
        else:
            assert row["prob_negative"] is None and row["prob_positive"] is None
    err = capsys.readouterr().err
    assert "2 of 6 rows labelled; 2 empty left unlabelled (first: line 4)" in err
    assert "2 invalid (not a string, or not encodable as UTF-8) left unlabelled (first: line 3)" in err
    csv_out = tmp_path / "predictions.csv"  # the same records as a CSV: nested values as JSON text
    predict("--input", str(path), "--text-column", "body", "--output", str(csv_out))
    df = read_csv(csv_out)
    assert list(df.columns) == ["id", "body", "meta", "label", *PROBS] and len(df) == 6
    assert df["meta"][0] == '{"stars": [5]}' and df["body"][1] == "\\ud800 lone surrogate"


def test_stdin_is_read_with_a_dash(monkeypatch, capsys):
    data = f"{POSITIVE}\n{NEGATIVE}\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    predict("--input", "-")
    out, err = capsys.readouterr()
    df = read_csv(out)
    assert df["text"].tolist() == [POSITIVE, NEGATIVE] and df["label"].tolist() == ["positive", "negative"]
    assert "stdin: 2 of 2 rows labelled" in err


@pytest.mark.parametrize("fmt", ["txt", "csv", "jsonl"])
def test_5000_lines_are_read_and_classified_in_batches(tmp_path, student, monkeypatch, fmt):
    texts = [f"{POSITIVE if i % 2 else NEGATIVE} {i}" for i in range(5000)]
    path = tmp_path / f"reviews.{fmt}"
    lines = {
        "txt": texts,
        "csv": ["text", *texts],
        "jsonl": [json.dumps({"text": t}, ensure_ascii=False) for t in texts],
    }[fmt]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = batch_predict.open_input(str(path), batch_size=512)
    sizes = [len(chunk) for chunk in table.chunks]
    assert sizes == [512] * 9 + [392]  # never more than a batch in memory, never the whole file
    calls = []
    original = student.predict_proba
    monkeypatch.setattr(student, "predict_proba", lambda texts: calls.append(len(texts)) or original(texts))
    out = tmp_path / "predictions.csv"
    report = batch_predict.predict_file(student, str(path), str(out), batch_size=512, progress=False)
    assert calls == sizes and report.rows == report.labelled == 5000
    df = read_csv(out)
    assert df["text"].tolist() == texts and set(df["label"]) == set(LABELS)


def test_the_output_file_is_written_atomically(tmp_path, capsys):
    path = tmp_path / "reviews.jsonl"
    lines = [json.dumps({"text": f"{POSITIVE} {i}"}, ensure_ascii=False) for i in range(1200)]
    lines[1100] = "{not json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "predictions.csv"
    out.write_text("earlier predictions\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        predict("--input", str(path), "--output", str(out), "--batch-size", "500")
    assert exit_info.value.code == 1
    assert f"{path}:1101: not JSON" in error_line(capsys)
    assert out.read_text(encoding="utf-8") == "earlier predictions\n"  # the first 1000 rows never landed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv", "reviews.jsonl"]


def test_a_file_given_as_a_sentence_points_to_input(tmp_path, capsys):
    path = tmp_path / "reviews.txt"
    path.write_text(f"{POSITIVE}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        predict(str(path))
    assert exit_info.value.code == 2
    assert error_line(capsys) == (
        f"error: {str(path)!r} is a file, not a sentence: to classify its lines (or a table's text column) "
        f"use --input {path}"
    )


def test_predict_names_the_student_and_its_test_accuracy_on_stderr(tmp_path, capsys):
    distil.main(["predict", POSITIVE])
    out, err = capsys.readouterr()
    assert out.startswith("positive\t")  # stdout holds the predictions only
    line = next(line for line in err.splitlines() if line.startswith("student "))
    bundled = model.bundled_student()
    metrics = json.loads((bundled / "metrics.json").read_text(encoding="utf-8"))
    assert line.startswith(f"student models/{bundled.name} (bundled), run {Path(metrics['run_dir']).name}")
    assert line.endswith(f": test accuracy {100 * metrics['test_accuracy']:.2f} % on nsmc")
    folder = tmp_path / "student"
    shutil.copytree(TINY, folder)
    (folder / "metrics.json").unlink()
    write_manifest(folder)  # a whole folder saved without metrics
    distil.main(["predict", "--student", str(folder), POSITIVE])
    assert f"student {folder}, run tiny-v3000-none-a1: test accuracy unknown" in capsys.readouterr().err


@pytest.mark.parametrize(
    "header, option, message",
    [
        (
            "id,reviw,score",
            [],
            "no text column (text, document, review, sentence); columns found: id, reviw, score "
            "(nearest: 'reviw'; pass --text-column reviw)",
        ),
        ("id,body", [], "columns found: id, body (pass --text-column NAME)"),
        (
            "id,review",
            ["--text-column", "Reviews"],
            "no column 'Reviews'; columns found: id, review (nearest: 'review'; pass --text-column review)",
        ),
    ],
)
def test_a_missing_text_column_names_the_columns_and_the_nearest(tmp_path, capsys, header, option, message):
    path = tmp_path / "reviews.csv"
    path.write_text(f"{header}\n" + ",".join(["1", POSITIVE, "5"][: header.count(",") + 1]) + "\n", "utf-8")
    with pytest.raises(SystemExit) as exit_info:
        predict("--input", str(path), *option)
    assert exit_info.value.code == 2
    line = error_line(capsys)
    assert line.startswith(f"error: {path}: ") and message in line


@pytest.mark.parametrize(
    "args, message",
    [
        ([POSITIVE, "--input", "{txt}"], "give sentences or --input FILE, not both"),
        ([POSITIVE, "--output", "out.csv"], "--output needs --input FILE"),
        (["--input", "{txt}", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--input", "{txt}", "--output", "out.xlsx"], "write .csv or .jsonl"),
        (["--input", "{csv}", "--output", "{csv}"], "is the --input file"),
        (["--input", "{txt}", "--text-column", "review"], "holds one text a line, not a table"),
        (["--input", "{dir}/reviews.xml"], "unknown file type .xml"),
        (["--input", "{dir}/missing.csv"], "missing.csv: no such file"),
        (["--input", "{labelled}"], "already has the column(s) label, which the output adds"),
        (["--input", "{cp949}"], "cp949.txt:3: not valid UTF-8 (byte 0xb8; CP949/EUC-KR?); convert it with"),
    ],
)
def test_predict_option_and_file_errors_are_one_line(tmp_path, capsys, args, message):
    files = {"txt": "reviews.txt", "csv": "reviews.csv", "labelled": "labelled.csv", "cp949": "cp949.txt"}
    (tmp_path / files["txt"]).write_text(f"{POSITIVE}\n", encoding="utf-8")
    (tmp_path / files["csv"]).write_text(f"text\n{POSITIVE}\n", encoding="utf-8")
    (tmp_path / files["labelled"]).write_text(f"text,label\n{POSITIVE},1\n", encoding="utf-8")
    (tmp_path / files["cp949"]).write_bytes(f"{POSITIVE}\n{NEGATIVE}\n".encode() + "맛있다\n".encode("cp949"))
    names = {key: str(tmp_path / name) for key, name in files.items()}
    with pytest.raises(SystemExit) as exit_info:
        predict(*(arg.format(dir=tmp_path, **names) for arg in args))
    assert exit_info.value.code in (1, 2)
    assert message in error_line(capsys)
