"""Datasets: NSMC, Naver shopping and Steam reviews (and all three combined), downloaded from their public
GitHub repositories or read from local copies, parsed into ``id, text, label, source`` and split
deterministically into train / valid / test; extra unlabeled text; the fingerprint of a split's examples.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from utils import atomic_save, atomic_write_text, logger, remove_stale_temporaries

if TYPE_CHECKING:
    from tokenizers.normalizers import Normalizer

NSMC_URL = "https://raw.githubusercontent.com/e9t/nsmc/master/"
BAB2MIN_URL = "https://raw.githubusercontent.com/bab2min/corpus/master/sentiment/"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and how its files are laid out."""

    files: dict[str, str]  # role ("train", "test" or "all") -> file name
    url: str  # base URL the file names are appended to
    fmt: str  # "nsmc" (id, document, label with header), "rating" (rating<TAB>text), "label" (label<TAB>text)


DATASETS: dict[str, DatasetSpec] = {
    "nsmc": DatasetSpec({"train": "ratings_train.txt", "test": "ratings_test.txt"}, NSMC_URL, "nsmc"),
    "naver_shopping": DatasetSpec({"all": "naver_shopping.txt"}, BAB2MIN_URL, "rating"),
    "steam": DatasetSpec({"all": "steam.txt"}, BAB2MIN_URL, "label"),
}
DATASET_NAMES = [*DATASETS, "all"]
SPLITS = ("train", "valid", "test")


class DataFormatError(ValueError):
    """A malformed row in a dataset file."""


class DataEncodingError(DataFormatError):
    """A dataset file that is not valid UTF-8."""


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


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (a BOM is skipped; line ends are ``\\n``, a trailing ``\\r`` is kept).

    Bytes that are not UTF-8 raise ``DataEncodingError`` naming the file and line, with the command that
    converts a CP949 / EUC-KR file (the usual Korean legacy encodings).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        guess = "CP949/EUC-KR" if _decodes(data, "cp949") else "another encoding"
        raise DataEncodingError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}; the file looks like {guess}); "
            f"convert it with `iconv -f cp949 -t utf-8 {path} > {path}.utf8` and use the .utf8 file"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


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

    def summary(self) -> str:
        parts = [f"{self.kept:,}/{self.rows:,} rows kept"]
        for name in ("empty", "neutral", "duplicates"):
            if getattr(self, name):
                parts.append(f"{getattr(self, name):,} {name} dropped")
        if self.skipped:
            parts.append(f"{len(self.skipped):,} malformed skipped (first: {self.skipped[0]})")
        return f"{self.path}: " + ", ".join(parts)


class ShortDownload(OSError):
    """A response body shorter than its Content-Length."""


def download(
    url: str, dest: str | Path, timeout: float = 30.0, attempts: int = 4, backoff: float = 2.0
) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, through a temporary file renamed into place.

    A body shorter than its Content-Length, a network error or a 5xx answer is retried ``attempts`` times
    with exponential backoff (``backoff`` seconds, then twice that, ...); a short file is never kept. The
    sha256 and size of the file are recorded in ``<dest>.sha256`` (sha256sum format, so ``sha256sum -c``
    checks it too) and verified when the file is reused: a file changed since (truncated, corrupted) is
    downloaded again. A file without that record (put there by hand) is used as it is. Failures raise a
    ``RuntimeError`` that names the URL and where to put the file by hand.
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
                raise RuntimeError(
                    f"Could not download {url} ({err}). Download it by hand and save it as {dest.resolve()}, "
                    f"or pass --data-dir pointing at a folder that holds {dest.name}."
                ) from err
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


def _text_id(source: str, text: str) -> str:
    digest = hashlib.sha1(f"{source}\t{text}".encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def parse_file(
    path: str | Path, fmt: str, source: str, skip_bad_rows: bool = False
) -> tuple[pd.DataFrame, ParseReport]:
    """Parse one dataset file into a DataFrame with columns ``id, text, label, source``.

    Empty texts (also those that normalize to no tokens, see ``is_blank``) and (for ratings) neutral rating 3
    are dropped and counted; repeated ids are dropped after the first. A file that is not UTF-8 raises
    ``DataEncodingError`` naming the line and the conversion command. A malformed row raises
    ``DataFormatError`` naming file and line, unless ``skip_bad_rows`` is set, in which case it is skipped
    and counted in the report.
    """
    path = Path(path)
    report = ParseReport(str(path))
    ids: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    lines = read_lines(path)
    start = 0
    if fmt == "nsmc":
        header = lines[0].rstrip("\r").split("\t") if lines else []
        if header != ["id", "document", "label"]:
            raise DataFormatError(
                f"{path}:1: expected the NSMC header 'id<TAB>document<TAB>label', got {lines[0][:80]!r}"
                if lines
                else f"{path} is empty"
            )
        start = 1
    for lineno, line in enumerate(lines[start:], start=start + 1):
        report.rows += 1
        line = line.rstrip("\r")
        try:
            row = _parse_row(line, fmt)
        except DataFormatError as err:
            message = f"{path}:{lineno}: {err} in {line[:80]!r}"
            if not skip_bad_rows:
                raise DataFormatError(message + " (pass --skip-bad-rows to skip malformed rows)") from None
            report.skipped.append(message)
            continue
        if row is None:
            report.neutral += 1
            continue
        row_id, text, label = row
        text = text.strip()
        if is_blank(text):
            report.empty += 1
            continue
        row_id = row_id or _text_id(source, text)
        if row_id in seen:
            report.duplicates += 1
            continue
        seen.add(row_id)
        ids.append(row_id)
        texts.append(text)
        labels.append(label)
    report.kept = len(ids)
    df = pd.DataFrame({"id": ids, "text": texts, "label": np.array(labels, dtype=np.int64), "source": source})
    return df, report


def _parse_row(line: str, fmt: str) -> tuple[str, str, int] | None:
    """One row -> (id or "", text, label); None for a neutral rating that is dropped."""
    fields = line.split("\t")
    expected = 3 if fmt == "nsmc" else 2
    if len(fields) != expected:
        raise DataFormatError(f"expected {expected} tab-separated columns, found {len(fields)}")
    if fmt == "nsmc":
        row_id, text, raw = fields
        if not row_id.strip():
            raise DataFormatError("empty id")
        return row_id.strip(), text, _int_in(raw, (0, 1), "label")
    raw, text = fields
    if fmt == "label":
        return "", text, _int_in(raw, (0, 1), "label")
    rating = _int_in(raw, (1, 2, 3, 4, 5), "rating")
    return None if rating == 3 else ("", text, int(rating >= 4))


def _int_in(raw: str, allowed: tuple[int, ...], what: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise DataFormatError(f"{what} {raw!r} is not an integer") from None
    if value not in allowed:
        raise DataFormatError(f"{what} {value} is not one of {list(allowed)}")
    return value


def _sha1_fraction(key: str) -> float:
    """Map a string to a stable number in [0, 1)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)


def assign_splits(ids: pd.Series, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Deterministic split per example id: 'test' below ``test_fraction``, then 'valid', else 'train'."""
    u = np.array([_sha1_fraction(i) for i in ids])
    return np.where(u < test_fraction, "test", np.where(u < test_fraction + valid_fraction, "valid", "train"))


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    root: str | Path = "data",
    valid_fraction: float = 0.05,
    test_fraction: float = 0.2,
    skip_bad_rows: bool = False,
    max_train: int | None = None,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Load a dataset as ``{"train", "valid", "test"}`` DataFrames (columns ``id, text, label, source``).

    NSMC keeps its official test file and carves ``valid_fraction`` of train into validation; the other
    datasets are split by a hash of the example id (``test_fraction`` test, ``valid_fraction`` valid).
    ``all`` combines the three, each split as it is alone. ``max_train`` keeps a random subset of train.
    The split sizes, labels and valid/test texts also present in train are logged (``describe_splits``; such
    texts are counted, not dropped: NSMC has genuine duplicate short reviews); a split with only one class is
    a warning.
    """
    if name == "all":
        parts = [
            load_dataset(n, data_dir, root, valid_fraction, test_fraction, skip_bad_rows) for n in DATASETS
        ]
        splits = {s: pd.concat([p[s] for p in parts], ignore_index=True) for s in SPLITS}
    else:
        spec = _spec(name)
        frames = {}
        for role, path in dataset_files(name, data_dir, root).items():
            df, report = parse_file(path, spec.fmt, name, skip_bad_rows)
            logger.info(report.summary())
            frames[role] = df
        if "test" in frames:
            train = frames["train"]
            is_valid = assign_splits(train["id"], valid_fraction, 0.0) == "valid"
            splits = {"train": train[~is_valid], "valid": train[is_valid], "test": frames["test"]}
        else:
            df = frames["all"]
            which = assign_splits(df["id"], valid_fraction, test_fraction)
            splits = {s: df[which == s] for s in SPLITS}
        splits = {s: d.reset_index(drop=True) for s, d in splits.items()}
    for split, df in splits.items():
        if df.empty:
            raise ValueError(
                f"dataset {name!r} has an empty {split} split; check the data files and split fractions"
            )
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
    labels: dict[str, dict[int, int]]  # split -> label -> examples
    in_train: dict[str, int]  # valid/test -> examples whose text is also a train text

    def summary(self) -> str:
        parts = []
        for split, size in self.sizes.items():
            labels = ", ".join(f"{label}: {n:,}" for label, n in sorted(self.labels[split].items()))
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


def describe_splits(splits: dict[str, pd.DataFrame]) -> DataReport:
    """The DataReport of ``{"train", "valid", "test"}`` (load_dataset logs it)."""
    train_texts = set(splits["train"]["text"])
    return DataReport(
        sizes={split: len(df) for split, df in splits.items()},
        labels={s: {int(k): int(n) for k, n in d["label"].value_counts().items()} for s, d in splits.items()},
        in_train={s: int(df["text"].isin(train_texts).sum()) for s, df in splits.items() if s != "train"},
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


def data_fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 over the example ids and texts, in order."""
    h = hashlib.sha256()
    for i, t in zip(df["id"], df["text"]):
        h.update(f"{i}\t{t}\n".encode())
    return h.hexdigest()
