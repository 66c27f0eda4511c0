"""Classify many texts with a student: a text file or stdin (one text a line) or a column of a CSV, TSV or
JSON Lines table, streamed in batches, to CSV or JSON Lines.

    python distil.py predict --input reviews.csv [--text-column review] [--output predictions.jsonl]

The output keeps the input's columns (a text file's one column is ``text``) and adds ``label`` and one
``prob_<label>`` column per class. An empty text (blank, missing or null) or an invalid one (not a string,
or a lone surrogate that UTF-8 cannot encode) keeps its row with an empty label and empty probabilities, and
is counted in the report (with its first row): the output has one row per input row, in order.
Also the line naming the student that answered (``student_line``), which ``predict`` prints on stderr.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import itertools
import json
import math
import shlex
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from card import student_name
from corpus import DataEncodingError, DataFormatError, is_blank
from reader import GUESSES
from utils import atomic_save

if TYPE_CHECKING:
    from model import Student  # the students it is given: loading it (torch) is the caller's

STDIN = "-"
TEXT_COLUMNS = GUESSES["text"]  # guessed in this order, case-insensitively: the reader's guesses (--data)
INPUT_FORMATS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
DEFAULT_BATCH_SIZE = 1024  # rows read, classified and written at a time


@dataclass
class InputTable:
    """An input opened for streaming: its columns, the text column and its rows in chunks."""

    source: str
    columns: list[str]
    text_column: str
    chunks: Iterator[pd.DataFrame]  # at most batch_size rows each; the index is the row's 0-based number
    unit: str  # what a row number counts: "line" (text, JSON Lines) or "row" (CSV/TSV, header not counted)


@dataclass
class PredictReport:
    """What one run labelled and left unlabelled (first_*: the first such row's 1-based number)."""

    source: str
    unit: str = "row"
    rows: int = 0
    empty: int = 0
    invalid: int = 0
    first_empty: int | None = None
    first_invalid: int | None = None

    def add(self, kinds: np.ndarray, index: pd.Index) -> None:
        """Count a chunk's rows by their text_kind (index: their 0-based row numbers)."""
        self.rows += len(kinds)
        for kind in ("empty", "invalid"):
            rows = index[kinds == kind]
            if len(rows):
                setattr(self, kind, getattr(self, kind) + len(rows))
                if getattr(self, f"first_{kind}") is None:
                    setattr(self, f"first_{kind}", int(rows[0]) + 1)

    @property
    def labelled(self) -> int:
        return self.rows - self.empty - self.invalid

    def summary(self) -> str:
        parts = [f"{self.source}: {self.labelled:,} of {self.rows:,} rows labelled"]
        if self.empty:
            parts.append(f"{self.empty:,} empty left unlabelled (first: {self.unit} {self.first_empty})")
        if self.invalid:
            parts.append(
                f"{self.invalid:,} invalid (not a string, or not encodable as UTF-8) left unlabelled "
                f"(first: {self.unit} {self.first_invalid})"
            )
        return "; ".join(parts)


def student_line(student: Student, directory: str | Path, bundled: bool) -> str:
    """One line naming the student (its folder and run) and its test accuracy from the folder's metrics."""
    shown = f"models/{Path(directory).name} (bundled)" if bundled else str(directory)
    metrics = student.metrics or {}
    if metrics.get("test_accuracy") is None:
        score = "test accuracy unknown (no metrics.json in or beside the folder)"
    else:
        on = f" on {metrics['dataset']}" if metrics.get("dataset") else ""
        score = f"test accuracy {100 * metrics['test_accuracy']:.2f} %{on}"
    return f"student {shown}, run {student_name(student)}: {score}"


def input_format(source: str) -> str:
    """The input's format from its file name: txt, csv, tsv or jsonl (stdin, ``-``, is txt)."""
    if source == STDIN:
        return "txt"
    suffix = Path(source).suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise ValueError(
            f"--input {source}: unknown file type {suffix or '(no suffix)'}; give a .txt (one text a line), "
            ".csv, .tsv or .jsonl file, or - for stdin"
        )
    return INPUT_FORMATS[suffix]


def output_format(output: str | None) -> str:
    """The output's format from its file name: csv or jsonl (stdout, ``None``, is csv)."""
    if output is None:
        return "csv"
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(
            f"--output {output}: unknown file type {suffix or '(no suffix)'}; write .csv or .jsonl"
        )
    return OUTPUT_FORMATS[suffix]


def find_text_column(columns: list[str], wanted: str | None, source: str) -> str:
    """``wanted`` if it is a column, else (without ``wanted``) the first of TEXT_COLUMNS present; a one-line
    error naming the columns found and the nearest match otherwise."""
    if wanted is not None and wanted in columns:
        return wanted
    if wanted is None:
        by_lower = {str(c).lower(): c for c in columns}
        found = next((by_lower[name] for name in TEXT_COLUMNS if name in by_lower), None)
        if found is not None:
            return found
    if not columns:
        raise DataFormatError(f"{source} is empty: no columns found")
    targets = [wanted] if wanted is not None else list(TEXT_COLUMNS)
    score, nearest = max(
        (
            (difflib.SequenceMatcher(None, t.lower(), str(c).lower()).ratio(), c)
            for t in targets
            for c in columns
        ),
        key=lambda pair: pair[0],
    )
    what = f"no column {wanted!r}" if wanted is not None else f"no text column ({', '.join(TEXT_COLUMNS)})"
    fix = f"nearest: {nearest!r}; pass --text-column {nearest}" if score >= 0.5 else "pass --text-column NAME"
    raise ValueError(f"{source}: {what}; columns found: {', '.join(map(str, columns))} ({fix})")


def open_input(source: str, batch_size: int, text_column: str | None = None) -> InputTable:
    """Open ``source`` for streaming in chunks of at most ``batch_size`` rows and find its text column."""
    fmt = input_format(source)
    if fmt == "txt" and text_column is not None:
        raise ValueError(f"--text-column {text_column}: {source} holds one text a line, not a table")
    check_input_exists(source)
    reader = {"txt": _text_chunks, "jsonl": _jsonl_chunks}.get(fmt, _table_chunks)
    chunks = reader(source, fmt, batch_size)
    first = next(chunks, None)
    if fmt == "txt":
        columns = ["text"]
    else:
        columns = [] if first is None else [str(c) for c in first.columns]
    column = "text" if fmt == "txt" else find_text_column(columns, text_column, source)
    rest = chunks if first is None else itertools.chain([first], chunks)
    return InputTable(source, columns, column, rest, "row" if fmt in ("csv", "tsv") else "line")


def check_input_exists(source: str) -> None:
    """FileNotFoundError naming ``source`` unless it is stdin or a file."""
    if source != STDIN and not Path(source).is_file():
        raise FileNotFoundError(f"--input {source}: no such file")


def _where(source: str) -> str:
    return "stdin" if source == STDIN else source


def _open_binary(source: str) -> contextlib.AbstractContextManager[BinaryIO]:
    return contextlib.nullcontext(sys.stdin.buffer) if source == STDIN else open(source, "rb")


def _line_batches(source: str, batch_size: int) -> Iterator[tuple[int, list[str]]]:
    """(0-based number of the first line, the decoded lines without their line ends), batch_size at a time."""
    with _open_binary(source) as handle:
        start = 0
        while batch := list(itertools.islice(handle, batch_size)):
            yield start, [_decode(raw, source, start + i + 1) for i, raw in enumerate(batch)]
            start += len(batch)


def _decode(raw: bytes, source: str, number: int) -> str:
    """One line as text (a BOM on line 1 is skipped); a one-line error naming the line if it is not UTF-8."""
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise DataEncodingError(
            f"{_where(source)}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x}; CP949/EUC-KR?); "
            + _iconv_fix(source)
        ) from None


def _iconv_fix(source: str) -> str:
    """How to convert a CP949 / EUC-KR input (the usual Korean legacy encodings) to UTF-8."""
    if source == STDIN:
        return "pipe it through `iconv -f cp949 -t utf-8`"
    return (
        f"convert it with `iconv -f cp949 -t utf-8 {shlex.quote(source)} > {shlex.quote(source + '.utf8')}`"
    )


def _text_chunks(source: str, fmt: str, batch_size: int) -> Iterator[pd.DataFrame]:
    for start, lines in _line_batches(source, batch_size):
        yield pd.DataFrame({"text": lines}, index=range(start, start + len(lines)))


def _jsonl_chunks(source: str, fmt: str, batch_size: int) -> Iterator[pd.DataFrame]:
    """One JSON object a line (blank lines skipped); values keep their JSON types."""
    for start, lines in _line_batches(source, batch_size):
        records, index = [], []
        for number, line in enumerate(lines, start + 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{source}:{number}: not JSON ({err.msg}); fix the line") from None
            if not isinstance(record, dict):
                raise DataFormatError(
                    f"{source}:{number}: a JSON {type(record).__name__}, not an object; JSON Lines input "
                    'holds one object a line, such as {"text": "..."}'
                )
            records.append(record)
            index.append(number - 1)
        if records:
            yield pd.DataFrame(records, index=index, dtype=object)


def _table_chunks(source: str, fmt: str, batch_size: int) -> Iterator[pd.DataFrame]:
    """CSV (quoted fields) or TSV (no quoting) with a header row, every value read as a string."""
    options = {"sep": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"sep": ","}
    with _table_errors(source):
        reader = pd.read_csv(
            source,
            dtype=str,
            keep_default_na=False,
            index_col=False,
            chunksize=batch_size,
            encoding="utf-8-sig",
            **options,
        )
    with reader:
        while True:
            with _table_errors(source):
                chunk = next(reader, None)
            if chunk is None:
                return
            yield chunk


@contextlib.contextmanager
def _table_errors(source: str) -> Iterator[None]:
    """pandas' parse and decode errors (and its warning for a row longer than the header, which would lose
    data) as one-line errors naming the file and the fix."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{source} is empty: no header row") from None
    except UnicodeDecodeError as err:
        raise DataEncodingError(
            f"{source}: not valid UTF-8 ({err.reason}; CP949/EUC-KR?); " + _iconv_fix(source)
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        raise DataFormatError(
            f"{source}: {' '.join(str(err).split())}; fix the row (a field holding the separator needs "
            "quotes in a CSV; a TSV field cannot hold a tab)"
        ) from None


def prob_columns(labels: list[str]) -> list[str]:
    """The output's probability columns, one per class: prob_<label name>."""
    return [f"prob_{name}" for name in labels]


def text_kind(value: object) -> str:
    """What a text cell is: ok, empty (missing, null or blank; see corpus.is_blank) or invalid (not a string,
    or a string UTF-8 cannot encode, such as a lone surrogate)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "empty"
    if not isinstance(value, str):
        return "invalid"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid"
    return "empty" if is_blank(value) else "ok"


def classify_chunk(student: Student, chunk: pd.DataFrame, column: str, report: PredictReport) -> pd.DataFrame:
    """The chunk with ``label`` and the prob_<label> columns (empty where the text is empty or invalid,
    which ``report`` counts)."""
    kinds = np.array([text_kind(value) for value in chunk[column]])
    report.add(kinds, chunk.index)
    ok = kinds == "ok"
    proba = np.full((len(chunk), len(student.labels)), np.nan)
    label = np.full(len(chunk), None, dtype=object)
    if ok.any():
        scores = student.predict_proba(chunk[column][ok].tolist()).astype(np.float64)
        proba[ok] = scores.round(6)
        label[ok] = np.asarray(student.labels, dtype=object)[scores.argmax(axis=1)]
    columns = dict(zip(prob_columns(student.labels), proba.T))
    return chunk.assign(**{"label": label, **columns})


def render(frame: pd.DataFrame, fmt: str, header: list[str], source: str) -> str:
    """CSV rows (no header) in ``header``'s column order (a JSON object or array as JSON text), or JSON Lines
    (a key the input row lacked stays absent; an empty label or probability is null)."""
    if fmt == "jsonl":
        added = set(header[header.index("label") :])
        return "".join(_json_line(record, added) for record in frame.to_dict("records"))
    extra = [c for c in frame.columns if c not in header]
    if extra:
        raise DataFormatError(
            f"{source}: rows after the first batch have keys the CSV header lacks ({', '.join(extra)}); "
            "write JSON Lines (--output FILE.jsonl) or give every row the same keys"
        )
    frame = frame.reindex(columns=header)
    for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
        frame[column] = [
            json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for v in frame[column]
        ]
    return frame.to_csv(header=False, index=False, lineterminator="\n")


def _json_line(record: dict, added: set[str]) -> str:
    """One output record as a JSON line: NaN (a key the input row lacked) dropped, or null in ``added``."""
    missing = {key for key, value in record.items() if isinstance(value, float) and math.isnan(value)}
    record = {
        key: None if key in missing else value
        for key, value in record.items()
        if key in added or key not in missing
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


def write_predictions(
    student: Student,
    table: InputTable,
    stream: IO[str],
    fmt: str,
    report: PredictReport,
    progress: bool = True,
) -> None:
    """Classify ``table`` chunk by chunk and write each chunk to ``stream`` (CSV: the header first); count
    the rows in ``report``."""
    header = [*table.columns, "label", *prob_columns(student.labels)]
    if fmt == "csv":
        stream.write(pd.DataFrame(columns=header).to_csv(index=False, lineterminator="\n"))
    name = "stdin" if table.source == STDIN else Path(table.source).name
    with tqdm(desc=name, unit=" rows", disable=None if progress else True, file=sys.stderr) as bar:
        for chunk in table.chunks:
            labelled = classify_chunk(student, chunk, table.text_column, report)
            text = render(labelled, fmt, header, table.source)
            # an invalid text's lone surrogate is written as its \uXXXX escape (JSON reads it back as is)
            stream.write(text.encode("utf-8", "backslashreplace").decode("utf-8"))
            bar.update(len(chunk))


def predict_file(
    student: Student,
    source: str,
    output: str | None = None,
    *,
    text_column: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> PredictReport:
    """Classify the texts of ``source`` (see the module's docstring) in batches of ``batch_size`` rows and
    write them to ``output`` (.csv or .jsonl, atomically: a temporary file renamed once complete) or, without
    it, as CSV to stdout. Returns what was labelled and left unlabelled."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    fmt = output_format(output)
    if output is not None and source != STDIN and Path(output).resolve() == Path(source).resolve():
        raise ValueError(f"--output {output} is the --input file; write the predictions to another file")
    table = open_input(source, batch_size, text_column)
    taken = [c for c in ("label", *prob_columns(student.labels)) if c in table.columns]
    if taken:
        raise ValueError(
            f"{source} already has the column(s) {', '.join(taken)}, which the output adds; rename them in "
            "a copy of the file"
        )
    report = PredictReport(_where(source), table.unit)
    if output is None:
        write_predictions(student, table, sys.stdout, fmt, report, progress)
    else:
        atomic_save(output, lambda tmp: _write_file(tmp, student, table, fmt, report, progress))
    return report


def _write_file(
    path: Path, student: Student, table: InputTable, fmt: str, report: PredictReport, progress: bool
) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        write_predictions(student, table, stream, fmt, report, progress)
