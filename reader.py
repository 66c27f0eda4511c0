"""Reading one labelled review file into raw rows: CSV, TSV, JSON Lines, Parquet or a Hugging Face
``datasets`` folder (``save_to_disk``), with each row's line or row number for messages, and choosing its
text, label and id columns (given, or guessed from their names). corpus.py turns the rows into examples and
splits.

Every malformed input is a one-line ``DataFormatError`` naming the file (and line or row) and the fix.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
HF_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")  # what save_to_disk writes
GUESSES = {
    "text": ("text", "document", "review", "sentence"),
    "label": ("label", "labels", "sentiment", "stars", "rating"),
    "id": ("id",),
}
READ_HINT = "use .csv, .tsv, .jsonl or .parquet, or a folder saved with datasets' save_to_disk"


class DataFormatError(ValueError):
    """A malformed data file or row."""


class DataEncodingError(DataFormatError):
    """A data file that is not valid UTF-8."""


@dataclass(frozen=True)
class Layout:
    """How a file is laid out: its kind and, for a headerless TSV, its columns."""

    kind: str | None = None  # csv, tsv, jsonl, parquet, hf; None: from the extension (or a datasets folder)
    names: tuple[str, ...] | None = None  # the columns of a headerless TSV, in order
    header: tuple[str, ...] | None = None  # the header a TSV must start with exactly (NSMC's)
    name: str = ""  # what the header is called in messages ("NSMC")


@dataclass(frozen=True)
class Part:
    """One file of a data source, or one split of a ``datasets`` DatasetDict folder."""

    path: Path
    split: str | None = None  # the DatasetDict split

    def __str__(self) -> str:
        return f"{self.path}[{self.split}]" if self.split else str(self.path)


@dataclass
class Table:
    """A file's rows as read: every column, and where each row is (line numbers or row numbers)."""

    part: Part
    frame: pd.DataFrame
    numbers: list[int]  # each row's line (TSV, JSON Lines) or row (CSV, Parquet, datasets) number, from 1
    unit: str  # "line" or "row"
    raw: list[str] | None = None  # a TSV's lines, for messages
    rows: int = 0  # rows read, with the malformed ones skipped
    skipped: list[str] = field(default_factory=list)  # malformed rows skipped on request
    class_names: dict[str, list[str]] = field(default_factory=dict)  # datasets ClassLabel column -> names

    def where(self, i: int) -> str:
        """Row ``i``'s place for messages: ``file:line`` or ``file, row N``."""
        n = self.numbers[i]
        return f"{self.part}:{n}" if self.unit == "line" else f"{self.part}, row {n}"


# ---------------------------------------------------------------------------------------------------------
# Decoding text files
# ---------------------------------------------------------------------------------------------------------


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content (a BOM is skipped).

    Bytes that are not UTF-8 raise ``DataEncodingError`` naming the file and line with the command that
    fixes it: converting from CP949 / EUC-KR when the whole file decodes as such, else dropping the invalid
    bytes (a UTF-8 file with a damaged byte, where converting from CP949 would fail).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        where = f"{path}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}"
        if _decodes(data, "cp949"):
            fix = f"the file looks like CP949/EUC-KR); convert it with `iconv -f cp949 -t utf-8 {path}"
        else:
            fix = (
                "and the file is no CP949/EUC-KR either: another encoding, or UTF-8 with damaged bytes); "
                f"drop the invalid bytes with `iconv -f utf-8 -t utf-8 -c {path}"
            )
        raise DataEncodingError(f"{where}; {fix} > {path}.utf8` and use the .utf8 file") from None


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (see ``read_text``; line ends are ``\\n``, a trailing ``\\r`` is
    kept)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# ---------------------------------------------------------------------------------------------------------
# Finding a source's files and reading one
# ---------------------------------------------------------------------------------------------------------


def is_hf_folder(path: Path) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / name).is_file() for name in HF_MARKERS)


SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test"}


def locate(path: str | Path) -> dict[str, Part]:
    """The parts of a data source by role: ``{"all": file}`` for one file (or a saved Dataset), else
    ``train`` and optionally ``valid`` and ``test`` (a folder of ``train.*`` / ``valid.*`` / ``test.*`` files,
    or a saved DatasetDict with such splits)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--data {path} not found: give a review file or a folder")
    if path.is_file() or (is_hf_folder(path) and not (path / "dataset_dict.json").is_file()):
        return {"all": Part(path)}
    if is_hf_folder(path):
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        candidates = {name: Part(path, name) for name in splits}
    else:
        candidates = {p.stem: Part(p) for p in sorted(path.iterdir()) if p.suffix in EXTENSIONS}
    parts = {SPLIT_NAMES[name]: part for name, part in candidates.items() if name in SPLIT_NAMES}
    if "train" not in parts:
        found = ", ".join(sorted(candidates)) or "nothing readable"
        raise DataFormatError(
            f"{path}: a data folder needs a train split (train.csv, train.tsv, train.jsonl or "
            f"train.parquet; optionally valid.* and test.*), found {found}"
        )
    return parts


def kind_of(part: Part, layout: Layout) -> str:
    """The part's format: the layout's, a datasets folder, else the file's extension."""
    if layout.kind:
        return layout.kind
    if part.split is not None or is_hf_folder(part.path):
        return "hf"
    kind = EXTENSIONS.get(part.path.suffix.lower())
    if kind is None:
        raise DataFormatError(f"{part.path}: unknown file type {part.path.suffix or '(none)'!r}: {READ_HINT}")
    return kind


def read_table(part: Part, layout: Layout = Layout(), skip_bad_rows: bool = False) -> Table:
    """Every row and column of one part (strings for text formats); an empty file is a DataFormatError."""
    kind = kind_of(part, layout)
    readers = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    table = _read_hf(part) if kind == "hf" else readers[kind](part, layout, skip_bad_rows)
    if table.frame.empty:
        raise DataFormatError(f"{part} is empty: it has no rows")
    return table


def _read_tsv(part: Part, layout: Layout, skip_bad_rows: bool) -> Table:
    """One row a line, fields split on tabs, no quoting (NSMC's and bab2min's files): a line with another
    number of fields is malformed."""
    lines = [line.rstrip("\r") for line in read_lines(part.path)]
    names, start = layout.names, 0
    if names is None:
        if not lines:
            raise DataFormatError(f"{part} is empty")
        names, start = tuple(lines[0].split("\t")), 1
        if layout.header is not None and names != layout.header:
            expected = "<TAB>".join(layout.header)
            what = f"the {layout.name} header" if layout.name else "the header"
            raise DataFormatError(f"{part}:1: expected {what} '{expected}', got {lines[0][:80]!r}")
    rows, numbers, raw, skipped = [], [], [], []
    for number, line in enumerate(lines[start:], start=start + 1):
        fields = line.split("\t")
        if len(fields) != len(names):
            message = f"{part}:{number}: expected {len(names)} tab-separated columns, found {len(fields)}"
            _malformed(f"{message} in {line[:80]!r}", skip_bad_rows, skipped)
            continue
        rows.append(fields)
        numbers.append(number)
        raw.append(line)
    frame = pd.DataFrame(rows, columns=list(names), dtype=object)
    return Table(part, frame, numbers, "line", raw, len(lines) - start, skipped)


def _malformed(message: str, skip_bad_rows: bool, skipped: list[str]) -> None:
    """Raise a malformed row's error, or count it when skipping."""
    if not skip_bad_rows:
        raise DataFormatError(message + " (pass --skip-bad-rows to skip malformed rows)")
    skipped.append(message)


def _read_csv(part: Part, layout: Layout, skip_bad_rows: bool) -> Table:
    """pandas' CSV reader (quoted fields may hold commas and line breaks); every cell a string."""
    text = read_text(part.path)
    skipped: list[str] = []

    def bad_line(fields: list[str]) -> None:
        skipped.append(f"{part}: a row with {len(fields)} fields: {','.join(fields)[:80]!r}")

    options = dict(dtype=str, keep_default_na=False, skip_blank_lines=True)
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{part} is empty") from None
    except (pd.errors.ParserError, csv.Error) as err:
        if not skip_bad_rows:
            reason = " ".join(str(err).split()).removeprefix("Error tokenizing data. C error: ")
            raise DataFormatError(
                f"{part}: not a well-formed CSV file ({reason}): quote fields that hold commas or line "
                "breaks, or pass --skip-bad-rows to skip malformed rows"
            ) from None
        frame = pd.read_csv(io.StringIO(text), engine="python", on_bad_lines=bad_line, **options)
    numbers = list(range(1, len(frame) + 1))
    return Table(part, frame, numbers, "row", None, len(frame) + len(skipped), skipped)


def _read_jsonl(part: Part, layout: Layout, skip_bad_rows: bool) -> Table:
    """One JSON object a line (a .json file may also hold one array of objects)."""
    text = read_text(part.path)
    skipped: list[str] = []
    if part.path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            numbered, unit = list(enumerate(json.loads(text), start=1)), "row"
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{part}:{err.lineno}: not valid JSON ({err.msg})") from None
    else:
        numbered, unit = [], "line"
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    _malformed(f"{part}:{number}: not valid JSON ({err.msg})", skip_bad_rows, skipped)
    kept = []
    for number, record in numbered:
        if isinstance(record, dict):
            kept.append((number, record))
        else:
            what = type(record).__name__
            _malformed(f"{part}:{number}: a {what}, not a JSON object", skip_bad_rows, skipped)
    frame = pd.DataFrame.from_records([record for _, record in kept])
    return Table(part, frame, [n for n, _ in kept], unit, None, len(kept) + len(skipped), skipped)


def _read_parquet(part: Part, layout: Layout, skip_bad_rows: bool) -> Table:
    try:
        frame = pd.read_parquet(part.path)
    except ImportError as err:
        raise DataFormatError(f"{part}: reading Parquet needs pyarrow ({err}): pip install pyarrow") from None
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataFormatError(f"{part}: not a readable Parquet file ({_first(err)}); {READ_HINT}") from None
    return Table(part, frame, list(range(1, len(frame) + 1)), "row", None, len(frame))


def _read_hf(part: Part) -> Table:
    """A Dataset (or one split of a DatasetDict) saved by ``save_to_disk``, read offline; ClassLabel columns
    keep their names."""
    try:
        import datasets
    except ImportError:
        raise DataFormatError(f"{part}: reading a datasets folder needs `pip install datasets`") from None
    try:
        loaded = datasets.load_from_disk(str(part.path))
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{part}: not a readable datasets folder ({_first(err)})") from None
    dataset = loaded[part.split] if part.split is not None else loaded
    if isinstance(dataset, datasets.DatasetDict):
        splits = ", ".join(dataset)
        raise DataFormatError(f"{part}: a DatasetDict needs train (and valid, test) splits, has {splits}")
    names = {
        name: list(feature.names)
        for name, feature in dataset.features.items()
        if isinstance(feature, datasets.ClassLabel)
    }
    frame = dataset.to_pandas()
    return Table(part, frame, list(range(1, len(frame) + 1)), "row", None, len(frame), class_names=names)


def _first(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------------------
# Choosing the columns
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """The text, label and (optional) id column of a file."""

    text: str
    label: str
    id: str | None = None


def choose_columns(
    table: Table, text: str | None = None, label: str | None = None, id: str | None = None
) -> Columns:
    """The columns given, else guessed from their names (``GUESSES``); a missing one is a one-line error
    naming the file, the columns found and the nearest match."""
    found = [str(c) for c in table.frame.columns]
    chosen = {
        role: _column(table, found, role, given, exclude={label if role == "text" else text})
        for role, given in (("text", text), ("label", label))
    }
    id_column = _column(table, found, "id", id) if id is not None or "id" in found else None
    if chosen["text"] == chosen["label"]:
        raise DataFormatError(f"{table.part}: the text and label columns are both {chosen['text']!r}")
    return Columns(chosen["text"], chosen["label"], id_column)


def _column(table: Table, found: list[str], role: str, given: str | None, exclude: set = frozenset()) -> str:
    flag = f"--{role}-column"
    if given is not None:
        if given in found:
            return given
        near = difflib.get_close_matches(given, found, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DataFormatError(
            f"{table.part}: no column {given!r} ({flag}); its columns are {', '.join(found)}{hint}"
        )
    lowered = {c.lower(): c for c in found}
    for guess in GUESSES[role]:
        if guess in lowered:
            return lowered[guess]
    others = [
        c
        for c in found
        if c not in exclude and c.lower() not in GUESSES["label" if role == "text" else "text"]
    ]
    near = [m for g in GUESSES[role] for m in difflib.get_close_matches(g, others, n=1, cutoff=0.6)]
    hint = f" (nearest: {near[0]!r})" if near else ""
    raise DataFormatError(
        f"{table.part}: no {role} column among {', '.join(found)}{hint}: name it with {flag} "
        f"(guessed: {', '.join(GUESSES[role])})"
    )
