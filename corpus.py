"""Datasets: the built-in corpora (NSMC, Naver shopping and Steam reviews, and all three combined, downloaded
from their public GitHub repositories or read from local copies) and any review file (``--data``), read by
one path: reader.py reads a file's rows, here they become ``id, text, label, source`` examples whose label
ids stand for a set of label names, split deterministically into train / valid / test. Also extra unlabeled
text and the fingerprints of a split's examples.

A built-in corpus is a preset of the reader (``FORMATS``: its layout, columns and label codes) with its own
rules: NSMC's official test file, Naver shopping's neutral rating 3 dropped and ratings >= 4 positive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import itertools
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from reader import (
    DataEncodingError,
    DataFormatError,
    Layout,
    Part,
    Table,
    choose_columns,
    locate,
    read_lines,
    read_table,
)
from utils import atomic_save, atomic_write_text, logger, remove_stale_temporaries

if TYPE_CHECKING:
    from tokenizers.normalizers import Normalizer

__all__ = ["DataEncodingError", "DataFormatError"]  # raised here, defined in reader.py

NSMC_URL = "https://raw.githubusercontent.com/e9t/nsmc/master/"
BAB2MIN_URL = "https://raw.githubusercontent.com/bab2min/corpus/master/sentiment/"
BINARY_LABELS = ("negative", "positive")  # the built-in corpora's label names (ids 0 and 1)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ReadSettings:
    """How a source's files are read: their layout, the text, label and id columns, and the labels.

    A preset fixes them all; ``--data`` names the columns (else they are guessed) and may fix the label names
    and their order (else they are read from the data: sorted, numbers numerically; a datasets ClassLabel
    keeps its own order).
    """

    layout: Layout = field(default_factory=Layout)
    text_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    labels: tuple[str, ...] | None = None  # the label names in id order (0, 1, ...)
    codes: Mapping[int, str | None] | None = None  # integer label values -> names; None drops the row
    label_word: str = "label"  # what messages call the label column ("rating")
    id_prefix: str | None = None  # rows without an id get ``<prefix>-<hash of the text>`` (default: source)


FORMATS: dict[str, ReadSettings] = {
    # NSMC: id<TAB>document<TAB>label with a header, label 0 / 1
    "nsmc": ReadSettings(
        Layout("tsv", header=("id", "document", "label"), name="NSMC"),
        text_column="document",
        label_column="label",
        id_column="id",
        labels=BINARY_LABELS,
        codes={0: "negative", 1: "positive"},
    ),
    # bab2min's naver_shopping: rating<TAB>text without a header; 3 is neutral (dropped), >= 4 positive
    "rating": ReadSettings(
        Layout("tsv", names=("rating", "text")),
        text_column="text",
        label_column="rating",
        labels=BINARY_LABELS,
        codes={1: "negative", 2: "negative", 3: None, 4: "positive", 5: "positive"},
        label_word="rating",
    ),
    # bab2min's steam: label<TAB>text without a header
    "label": ReadSettings(
        Layout("tsv", names=("label", "text")),
        text_column="text",
        label_column="label",
        labels=BINARY_LABELS,
        codes={0: "negative", 1: "positive"},
    ),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Where a built-in dataset comes from and how its files are read."""

    files: dict[str, str]  # role ("train", "test" or "all") -> file name
    url: str  # base URL the file names are appended to
    fmt: str  # its reader settings: a key of FORMATS


DATASETS: dict[str, DatasetSpec] = {
    "nsmc": DatasetSpec({"train": "ratings_train.txt", "test": "ratings_test.txt"}, NSMC_URL, "nsmc"),
    "naver_shopping": DatasetSpec({"all": "naver_shopping.txt"}, BAB2MIN_URL, "rating"),
    "steam": DatasetSpec({"all": "steam.txt"}, BAB2MIN_URL, "label"),
}
DATASET_NAMES = [*DATASETS, "all"]


class Splits(dict):
    """``{"train", "valid", "test"}`` DataFrames and the label names their label ids stand for."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], labels: Sequence[str]):
        super().__init__(frames)
        self.labels = tuple(labels)


def label_names(splits: Mapping[str, pd.DataFrame]) -> tuple[str, ...]:
    """The label names of ``splits``: a ``Splits``' own, else (splits built by hand) ``default_labels``."""
    if isinstance(splits, Splits):
        return splits.labels
    highest = max((int(df["label"].max()) for df in splits.values() if len(df)), default=1)
    return default_labels(highest + 1)


def default_labels(n: int) -> tuple[str, ...]:
    """negative / positive for two classes, else ``"0"``, ``"1"``, ...: the names of unnamed classes."""
    return BINARY_LABELS if n <= 2 else tuple(str(i) for i in range(n))


def is_ordinal(labels: Sequence[str]) -> bool:
    """True for three or more labels that are numbers in increasing order (e.g. stars 1-5): then a prediction
    one class off is "within one"."""
    try:
        values = [float(name) for name in labels]
    except ValueError:
        return False
    return len(values) > 2 and all(a < b for a, b in itertools.pairwise(values))


def text_normalizer() -> Normalizer:
    """The normalizer of every WordPiece tokenizer trained here (see vocab.train_tokenizer)."""
    from tokenizers import normalizers

    return normalizers.Sequence(
        [
            normalizers.NFC(),
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
            ),
        ]
    )


_NORMALIZER = None
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit, which the normalizer always keeps


def is_blank(text: str) -> bool:
    """True for a text that normalizes to no tokens: empty once the tokenizer's normalizer has removed what it
    drops (NUL, U+FFFD, control and format characters such as zero-width spaces and BOMs) and whitespace.

    Such texts are dropped and counted as empty wherever data is read; the rule is the tokenizer's own
    normalizer, so the two always agree.
    """
    global _NORMALIZER
    if not text.strip():
        return True
    if _ALNUM.search(text):  # the common case needs no normalizer
        return False
    if _NORMALIZER is None:
        _NORMALIZER = text_normalizer()
    return not _NORMALIZER.normalize_str(text).strip()


@dataclass
class ParseReport:
    """What parsing one file kept and dropped."""

    path: str
    rows: int = 0
    kept: int = 0
    empty: int = 0
    neutral: int = 0
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # descriptions of malformed rows skipped on request
    classes: tuple[str, ...] | None = None  # the label names a datasets ClassLabel column declares, in order

    def summary(self) -> str:
        parts = [f"{self.kept:,}/{self.rows:,} rows kept"]
        for name in ("empty", "neutral", "duplicates"):
            if getattr(self, name):
                parts.append(f"{getattr(self, name):,} {name} dropped")
        if self.skipped:
            parts.append(f"{len(self.skipped):,} malformed skipped (first: {self.skipped[0]})")
        return f"{self.path}: " + ", ".join(parts)


def _text_id(source: str, text: str) -> str:
    digest = hashlib.sha1(f"{source}\t{text}".encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_text(value: object) -> str:
    """A cell as text: "" when missing, a whole float without ".0" (a label 1.0 read from JSON is "1")."""
    if _is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def parse_file(
    path: str | Path, fmt: str | ReadSettings, source: str, skip_bad_rows: bool = False
) -> tuple[pd.DataFrame, ParseReport]:
    """Parse one file into a DataFrame with columns ``id, text, label, source`` (label ids of the settings'
    label names); ``fmt``: a key of ``FORMATS`` (a built-in corpus's format) or reader settings.

    Empty texts (also those that normalize to no tokens, see ``is_blank``) and (for ratings) neutral rating 3
    are dropped and counted; repeated ids are dropped after the first. A file that is not UTF-8 raises
    ``DataEncodingError`` naming the line and the conversion command. A malformed row raises
    ``DataFormatError`` naming file and line, unless ``skip_bad_rows`` is set, in which case it is skipped
    and counted in the report.
    """
    settings = FORMATS[fmt] if isinstance(fmt, str) else fmt
    df, report = read_examples(Part(Path(path)), settings, source, skip_bad_rows)
    frames, _ = label_ids({"all": df}, settings, {"all": report}, str(path), skip_bad_rows)
    return frames["all"], report


def read_examples(
    part: Part, settings: ReadSettings, source: str, skip_bad_rows: bool = False
) -> tuple[pd.DataFrame, ParseReport]:
    """One part's examples with their label *names* (``label_ids`` numbers them) and each row's place in the
    file (column ``where``, for messages); dropped rows are counted in the report."""
    table = read_table(part, settings.layout, skip_bad_rows)
    columns = choose_columns(table, settings.text_column, settings.label_column, settings.id_column)
    names = table.class_names.get(columns.label) if settings.codes is None else None
    classes = tuple(names) if names else None
    report = ParseReport(str(part), rows=table.rows, skipped=list(table.skipped), classes=classes)
    frame = table.frame
    ids = frame[columns.id] if columns.id else [""] * len(frame)
    prefix = settings.id_prefix or source
    rows: dict[str, list] = {"id": [], "text": [], "label": [], "where": []}
    seen: set[str] = set()
    for i, (raw_id, raw_text, raw_label) in enumerate(zip(ids, frame[columns.text], frame[columns.label])):
        try:
            row_id, label = _row_id(raw_id, columns.id), _label(raw_label, settings, names)
        except DataFormatError as err:
            _bad_row(f"{table.where(i)}: {err} in {_snippet(table, i, columns)!r}", skip_bad_rows, report)
            continue
        if label is None:
            report.neutral += 1
            continue
        text = _as_text(raw_text).strip()
        if is_blank(text):
            report.empty += 1
            continue
        row_id = row_id or _text_id(prefix, text)
        if row_id in seen:
            report.duplicates += 1
            continue
        seen.add(row_id)
        for key, value in zip(rows, (row_id, text, label, table.where(i))):
            rows[key].append(value)
    report.kept = len(rows["id"])
    columns_out = ["id", "text", "label", "source", "where"]
    return pd.DataFrame({**rows, "source": source}, columns=columns_out), report


def _row_id(raw: object, column: str | None) -> str:
    row_id = _as_text(raw).strip()
    if column is not None and not row_id:
        raise DataFormatError(f"empty {column}")
    return row_id


def _label(raw: object, settings: ReadSettings, class_names: list[str] | None) -> str | None:
    """A row's label name: a preset's code (None: a neutral row to drop), a datasets ClassLabel's name, or the
    value itself as text."""
    if settings.codes is not None:
        return settings.codes[_int_in(_as_text(raw), tuple(settings.codes), settings.label_word)]
    if class_names is not None and not _is_missing(raw):
        return class_names[int(raw)]
    label = _as_text(raw).strip()
    if not label:
        raise DataFormatError(f"empty {settings.label_word}")
    return label


def _snippet(table: Table, i: int, columns) -> str:
    """The malformed row for its message: a TSV's line, else its chosen cells."""
    if table.raw is not None:
        return table.raw[i][:80]
    row = table.frame.iloc[i]
    cells = {c: _as_text(row[c]) for c in (columns.id, columns.text, columns.label) if c is not None}
    return str(cells)[:80]


def _bad_row(message: str, skip_bad_rows: bool, report: ParseReport) -> None:
    if not skip_bad_rows:
        raise DataFormatError(message + " (pass --skip-bad-rows to skip malformed rows)")
    report.skipped.append(message)


def _int_in(raw: str, allowed: tuple[int, ...], what: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise DataFormatError(f"{what} {raw!r} is not an integer") from None
    if value not in allowed:
        raise DataFormatError(f"{what} {value} is not one of {list(allowed)}")
    return value


def label_ids(
    frames: dict[str, pd.DataFrame],
    settings: ReadSettings,
    reports: dict[str, ParseReport],
    source: str,
    skip_bad_rows: bool = False,
) -> tuple[dict[str, pd.DataFrame], tuple[str, ...]]:
    """The parts with their label names replaced by ids (0, 1, ... in the order of the label names) and the
    label names: the settings', else a datasets ClassLabel's, else those found (sorted, numbers numerically).

    A label outside fixed names is an error naming file, line and value (skipped and counted with
    ``skip_bad_rows``); fewer than two labels in data whose labels are read from it is an error.
    """
    found = sorted({label for df in frames.values() for label in df["label"]}, key=_label_order)
    declared = next((r.classes for r in reports.values() if r.classes), None)  # a datasets ClassLabel's
    labels = settings.labels or declared or tuple(found)
    if len(labels) < 2:
        seen = f"only one label, {found[0]!r}" if found else "no labels"
        raise DataFormatError(
            f"{source}: {seen}: a classifier needs at least two classes; check the file and --label-column"
        )
    index = {name: i for i, name in enumerate(labels)}
    out = {}
    for role, df in frames.items():
        unknown = ~df["label"].isin(list(index))
        if unknown.any():
            if not skip_bad_rows:
                first = df[unknown].iloc[0]
                raise DataFormatError(
                    f"{first['where']}: label {first['label']!r} is not one of --labels {' '.join(labels)}: "
                    "fix the row, add the label to --labels, or pass --skip-bad-rows"
                )
            bad = df.loc[unknown, ["where", "label"]].to_numpy()
            reports[role].skipped += [f"{w}: label {value!r} is not one of --labels" for w, value in bad]
            reports[role].kept -= len(bad)
            df = df[~unknown]
        ids = df["label"].map(index).to_numpy(dtype=np.int64)
        out[role] = df.drop(columns="where").assign(label=ids).reset_index(drop=True)
    return out, labels


def _label_order(name: str) -> tuple:
    """Sort key of label names: numbers numerically (before any other name), then text."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


class ShortDownload(OSError):
    """A response body shorter than its Content-Length."""


class DownloadError(OSError, RuntimeError):
    """A download that failed for good: its one-line message names the URL and where to put the file."""


def download(
    url: str, dest: str | Path, timeout: float = 30.0, attempts: int = 4, backoff: float = 2.0
) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, through a temporary file renamed into place.

    A body shorter than its Content-Length, a network error or a 5xx answer is retried ``attempts`` times
    with exponential backoff (``backoff`` seconds, then twice that, ...); a short file is never kept. The
    sha256 and size of the file are recorded in ``<dest>.sha256`` (sha256sum format, so ``sha256sum -c``
    checks it too) and verified when the file is reused: a file changed since (truncated, corrupted) is
    downloaded again. A file without that record (put there by hand) is used as it is. Failures raise a
    ``DownloadError`` (an OSError and a RuntimeError) whose one line names the URL and where to put the file
    by hand, without the chained network errors.
    """
    dest = Path(dest)
    if dest.exists() and _verify_download(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        try:
            atomic_save(dest, lambda tmp: _fetch(url, tmp, timeout))
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
            permanent = isinstance(err, urllib.error.HTTPError) and err.code < 500
            if permanent or attempt == attempts:
                raise DownloadError(
                    f"Could not download {url} ({' '.join(str(err).split())}). Download it by hand and save "
                    f"it as {dest.resolve()}, or pass --data-dir pointing at a folder that holds {dest.name}."
                ) from None
            delay = backoff * 2 ** (attempt - 1)
            logger.warning(f"download of {url} failed ({err}); retry {attempt}/{attempts - 1} in {delay:g} s")
            time.sleep(delay)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    atomic_write_text(_manifest(dest), f"{digest}  {dest.name}\n# size {dest.stat().st_size}\n")
    return dest


def _fetch(url: str, out_path: Path, timeout: float) -> None:
    """Stream ``url`` into ``out_path``; ``ShortDownload`` if fewer bytes arrive than announced."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(out_path, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        desc = f"download {Path(url).name}"
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise ShortDownload(f"received {received:,} of {total:,} bytes")


def _manifest(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _verify_download(dest: Path) -> bool:
    """True if ``dest`` matches its recorded sha256 and size (or has no record); else warn and say False."""
    manifest = _manifest(dest)
    if not manifest.is_file():
        return True
    lines = manifest.read_text(encoding="utf-8", errors="replace").splitlines()
    fields = lines[0].split() if lines else []
    size = next((line.split()[-1] for line in lines[1:] if line.startswith("# size ")), None)
    expected = fields[0] if fields else ""
    if size is not None and size != str(dest.stat().st_size):
        found = f"{dest.stat().st_size:,} bytes, recorded {size}"
    elif hashlib.sha256(dest.read_bytes()).hexdigest() != expected:
        found = "its sha256 differs"
    else:
        return True
    logger.warning(f"{dest} does not match its download record {manifest.name} ({found}): downloading again")
    return False


def dataset_files(
    name: str, data_dir: str | Path | None = None, root: str | Path = "data"
) -> dict[str, Path]:
    """Local paths of a dataset's files: from ``data_dir`` if given, else ``root/name/`` (downloaded if
    missing)."""
    spec = _spec(name)
    paths = {}
    for role, filename in spec.files.items():
        if data_dir is not None:
            path = Path(data_dir) / filename
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: --data-dir must hold the {name} file {filename} "
                    f"({spec.url}{filename})"
                )
        else:
            remove_stale_temporaries(Path(root) / name)
            path = download(spec.url + filename, Path(root) / name / filename)
        paths[role] = path
    return paths


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASET_NAMES}")
    return DATASETS[name]


def _sha1_fraction(key: str) -> float:
    """Map a string to a stable number in [0, 1)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)


def assign_splits(ids: pd.Series, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Deterministic split per example id: 'test' below ``test_fraction``, then 'valid', else 'train'."""
    u = np.array([_sha1_fraction(i) for i in ids])
    return np.where(u < test_fraction, "test", np.where(u < test_fraction + valid_fraction, "valid", "train"))


def data_name(path: str | Path) -> str:
    """The name a ``--data`` source files its runs, teachers and caches under: the file's stem or the folder's
    name, as a plain folder name."""
    path = Path(path).resolve()
    name = path.name if path.is_dir() else path.stem
    return re.sub(r"[^\w.-]", "_", name).lstrip(".") or "data"


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    root: str | Path = "data",
    valid_fraction: float = 0.05,
    test_fraction: float = 0.2,
    skip_bad_rows: bool = False,
    max_train: int | None = None,
    seed: int = 0,
) -> Splits:
    """Load a built-in dataset as ``{"train", "valid", "test"}`` DataFrames (columns ``id, text, label,
    source``; labels negative / positive), read by ``load_parts`` with its preset's settings.

    NSMC keeps its official test file and carves ``valid_fraction`` of train into validation; the other
    datasets are split by a hash of the example id (``test_fraction`` test, ``valid_fraction`` valid).
    ``all`` combines the three, each split as it is alone. ``max_train`` keeps a random subset of train.
    """
    if name != "all":
        parts = {role: Part(path) for role, path in dataset_files(name, data_dir, root).items()}
        fractions = (valid_fraction, test_fraction)
        return load_parts(parts, FORMATS[_spec(name).fmt], name, fractions, skip_bad_rows, max_train, seed)
    loaded = [load_dataset(n, data_dir, root, valid_fraction, test_fraction, skip_bad_rows) for n in DATASETS]
    splits = {s: pd.concat([p[s] for p in loaded], ignore_index=True) for s in SPLITS}
    return _finish(Splits(splits, BINARY_LABELS), name, max_train, seed)


def load_file(
    path: str | Path,
    settings: ReadSettings = ReadSettings(),
    valid_fraction: float = 0.05,
    test_fraction: float = 0.2,
    skip_bad_rows: bool = False,
    max_train: int | None = None,
    seed: int = 0,
) -> Splits:
    """Load any review file or folder (``reader.locate``: a CSV, TSV, JSON Lines or Parquet file, a folder of
    ``train.*`` / ``valid.*`` / ``test.*`` files, or a ``datasets`` folder) as train / valid / test.

    Rows without an id are named by a hash of their text, so the split depends on the text alone.
    """
    settings = dataclasses.replace(settings, id_prefix=settings.id_prefix or "text")
    parts = locate(path)
    fractions = (valid_fraction, test_fraction)
    return load_parts(parts, settings, data_name(path), fractions, skip_bad_rows, max_train, seed)


def load_reviews(data: str | Path | None, data_dir: str | Path | None) -> Splits | None:
    """The reviews a benchmark measures on: ``--data``'s (default reading settings and split fractions, as
    ``distil.py --data`` splits them), else NSMC's from ``data_dir``, else None (synthetic reviews)."""
    if data:
        return load_file(data)
    return load_dataset("nsmc", data_dir=data_dir) if data_dir else None


def load_parts(
    parts: dict[str, Part],
    settings: ReadSettings,
    source: str,
    fractions: tuple[float, float],
    skip_bad_rows: bool = False,
    max_train: int | None = None,
    seed: int = 0,
) -> Splits:
    """The one loading path: read each part (``all``, or ``train`` and optionally ``valid`` / ``test``),
    number the labels, carve the missing splits out of train by a hash of the example id, then ``_finish``."""
    frames, reports = {}, {}
    for role, part in parts.items():
        frames[role], reports[role] = read_examples(part, settings, source, skip_bad_rows)
    first = parts.get("all", parts.get("train"))
    where = str(first if "all" in parts or first.split else first.path.parent)
    frames, labels = label_ids(frames, settings, reports, where, skip_bad_rows)
    for role, report in reports.items():
        logger.info(report.summary())
        if not report.kept:
            raise DataFormatError(f"{parts[role]}: no rows with text ({report.summary()})")
    train = frames.get("train", frames.get("all"))
    valid_fraction, test_fraction = fractions
    which = assign_splits(
        train["id"], 0.0 if "valid" in frames else valid_fraction, 0.0 if "test" in frames else test_fraction
    )
    splits = {s: frames[s] if s in frames and s != "train" else train[which == s] for s in SPLITS}
    return _finish(Splits(splits, labels), source, max_train, seed)


def _finish(splits: Splits, name: str, max_train: int | None, seed: int) -> Splits:
    """Check that no split is empty, keep a random ``max_train`` subset of train, log the split sizes and
    labels and the valid/test texts also present in train (``describe_splits``; such texts are counted, not
    dropped: NSMC has genuine duplicate short reviews); a split with only one class is a warning."""
    for split, df in splits.items():
        if df.empty:
            raise ValueError(
                f"dataset {name!r} has an empty {split} split; check the data files and split fractions"
            )
        splits[split] = df.reset_index(drop=True)
    if max_train is not None and max_train < len(splits["train"]):
        splits["train"] = splits["train"].sample(n=max_train, random_state=seed).reset_index(drop=True)
    report = describe_splits(splits)
    logger.info(f"{name}: {report.summary()}")
    for warning in report.warnings():
        logger.warning(f"{name}: {warning}")
    return splits


@dataclass
class DataReport:
    """Counts over a dataset's splits: sizes, labels, and texts that a later split shares with train."""

    sizes: dict[str, int]
    labels: dict[str, dict[int, int]]  # split -> label id -> examples
    in_train: dict[str, int]  # valid/test -> examples whose text is also a train text
    names: tuple[str, ...] = BINARY_LABELS  # the label names of the ids

    def summary(self) -> str:
        parts = []
        for split, size in self.sizes.items():
            counts = sorted(self.labels[split].items())
            labels = ", ".join(f"{self.names[i] if i < len(self.names) else i}: {n:,}" for i, n in counts)
            parts.append(f"{split} {size:,} ({labels})")
        for split, n in self.in_train.items():
            parts.append(f"{n:,} {split} texts also in train ({n / max(self.sizes[split], 1):.1%}, kept)")
        return "; ".join(parts)

    def single_class(self) -> list[str]:
        """Splits whose examples all have one label."""
        return [split for split, labels in self.labels.items() if len(labels) == 1]

    def warnings(self) -> list[str]:
        return [
            f"the {split} split has only one class (label {next(iter(self.labels[split]))}): "
            "accuracy on it says nothing about the classifier; check the data files"
            for split in self.single_class()
        ]


def describe_splits(splits: Mapping[str, pd.DataFrame]) -> DataReport:
    """The DataReport of ``{"train", "valid", "test"}`` (load_dataset logs it)."""
    train_texts = set(splits["train"]["text"])
    return DataReport(
        sizes={split: len(df) for split, df in splits.items()},
        labels={s: {int(k): int(n) for k, n in d["label"].value_counts().items()} for s, d in splits.items()},
        in_train={s: int(df["text"].isin(train_texts).sum()) for s, df in splits.items() if s != "train"},
        names=label_names(splits),
    )


def read_unlabeled(path: str | Path) -> pd.DataFrame:
    """Read extra unlabeled text (one review per line, UTF-8) as examples with label -1 for distillation.

    Empty lines (see ``is_blank``) and repeated texts are dropped and counted in the log.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"unlabeled text file {path} not found")
    texts = [line.strip() for line in read_lines(path)]
    present = [t for t in texts if not is_blank(t)]
    kept = list(dict.fromkeys(present))
    blank = len(texts) - len(present)
    logger.info(
        f"{path}: {len(kept):,} unlabeled texts kept of {len(texts):,} lines "
        f"({blank:,} empty and {len(texts) - blank - len(kept):,} repeated dropped)"
    )
    if not kept:
        raise ValueError(f"{path} holds no text")
    source = f"unlabeled:{path.stem}"
    return pd.DataFrame(
        {"id": [_text_id(source, t) for t in kept], "text": kept, "label": -1, "source": source}
    )


def training_rows(splits: Mapping[str, pd.DataFrame], unlabeled: Sequence[str | Path] = ()) -> pd.DataFrame:
    """The training split, plus each unlabeled text file's rows (label -1, in file order), if any."""
    if not unlabeled:
        return splits["train"]
    parts = [read_unlabeled(path) for path in unlabeled]
    return pd.concat([splits["train"], *parts], ignore_index=True)


def splits_fingerprint(splits: Mapping[str, pd.DataFrame], train: pd.DataFrame) -> str:
    """The fingerprint of a run's examples (its config.json's ``fingerprints.data``): each split's
    ``data_fingerprint`` with the label names, then that of the training rows with any unlabeled text."""
    labels = label_names(splits)
    digest = hashlib.sha256()
    for name, df in [*splits.items(), ("train+unlabeled", train)]:
        digest.update(f"{name}:{data_fingerprint(df, labels)}\n".encode())
    return digest.hexdigest()


def data_fingerprint(df: pd.DataFrame, labels: Sequence[str] | None = None) -> str:
    """SHA-256 over the example ids and texts, in order; given the label names, also over each example's label
    and the names: everything a run, a teacher or a logits cache learns from. Without them it is the texts'
    fingerprint (the tokenizer's and the augmentation's: they never see labels)."""
    h = hashlib.sha256()
    if labels is None:
        for i, t in zip(df["id"], df["text"]):
            h.update(f"{i}\t{t}\n".encode())
        return h.hexdigest()
    h.update(("\t".join(labels) + "\n").encode())
    for i, t, label in zip(df["id"], df["text"], df["label"]):
        h.update(f"{i}\t{t}\t{label}\n".encode())
    return h.hexdigest()
