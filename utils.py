"""Data, tokenizers and the teacher-logits cache.

- Datasets: NSMC, Naver shopping and Steam reviews (and all three combined), downloaded from their public
  GitHub repositories or read from local copies, parsed into ``id, text, label, source`` and split
  deterministically into train / valid / test.
- Tokenizers: WordPiece vocabularies of any size trained on the training split, saved to
  ``tokenizer/vocab_size_N/``.
- Logits cache: the teacher's logits computed once per example and stored next to the teacher, keyed by
  example id, so that distillation never runs the teacher again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

logger = logging.getLogger("distilkobilstm")

# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def get_device(name: str = "auto") -> torch.device:
    """Resolve ``auto`` to CUDA when present, else Apple MPS, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Write JSON (UTF-8, indented, Hangul unescaped) atomically."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_save(path: str | Path, save: Callable[[Path], None]) -> None:
    """Call ``save(tmp_path)`` and rename the temporary file onto ``path`` once it is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha1_fraction(key: str) -> float:
    """Map a string to a stable number in [0, 1)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)


def text_hashes(texts: Iterable[str]) -> torch.Tensor:
    """64-bit hash of each text (int64 tensor): the per-example fingerprint stored in the logits cache."""
    values = [int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little", signed=True) for t in texts]
    return torch.tensor(values, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------------
# Notebook set-up (Colab): only the standard library and ``packaging`` here, so that it runs before any
# requirement is installed or upgraded.
# ---------------------------------------------------------------------------------------------------------


def missing_requirements(requirements: str | Path) -> list[str]:
    """Lines of a requirements file that are not installed or too old (torch: only when absent).

    Colab ships its own CUDA build of torch, which must not be replaced; pip options, comments and lines whose
    environment marker does not apply here are skipped.
    """
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for number, raw in enumerate(Path(requirements).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as err:
            raise ValueError(
                f"{requirements}, line {number}: {line!r} is not a requirement ({err})"
            ) from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if requirement.name != "torch" and not requirement.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


def install_missing(requirements: str | Path) -> list[str]:
    """pip-install the requirements ``missing_requirements`` finds in a requirements file; returns them."""
    import subprocess
    import sys

    missing = missing_requirements(requirements)
    if missing:
        print("installing:", " ".join(missing))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing


# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------

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


def download(url: str, dest: str | Path, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, through a temporary file renamed into place.

    An existing ``dest`` is kept as it is. Network failures raise a ``RuntimeError`` that names the URL and
    where to put the file by hand.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))

    try:
        atomic_save(dest, fetch)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise RuntimeError(
            f"Could not download {url} ({err}). Download it by hand and save it as {dest.resolve()}, "
            f"or pass --data-dir pointing at a folder that holds {dest.name}."
        ) from err
    return dest


def dataset_files(name: str, data_dir: str | Path | None = None, root: str | Path = "data") -> dict[str, Path]:
    """Local paths of a dataset's files: from ``data_dir`` if given, else ``root/name/`` (downloaded if missing)."""
    spec = _spec(name)
    paths = {}
    for role, filename in spec.files.items():
        if data_dir is not None:
            path = Path(data_dir) / filename
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: --data-dir must hold the {name} file {filename} ({spec.url}{filename})")
        else:
            path = download(spec.url + filename, Path(root) / name / filename)
        paths[role] = path
    return paths


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASET_NAMES}")
    return DATASETS[name]


def _text_id(source: str, text: str) -> str:
    digest = hashlib.sha1(f"{source}\t{text}".encode("utf-8")).hexdigest()[:16]
    return f"{source}-{digest}"


def parse_file(path: str | Path, fmt: str, source: str, skip_bad_rows: bool = False) -> tuple[pd.DataFrame, ParseReport]:
    """Parse one dataset file into a DataFrame with columns ``id, text, label, source``.

    Empty texts and (for ratings) neutral rating 3 are dropped and counted; repeated ids are dropped after the
    first. A malformed row raises ``DataFormatError`` naming file and line, unless ``skip_bad_rows`` is set,
    in which case it is skipped and counted in the report.
    """
    path = Path(path)
    report = ParseReport(str(path))
    ids: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8-sig", newline="\n") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    start = 0
    if fmt == "nsmc":
        header = lines[0].rstrip("\r").split("\t") if lines else []
        if header != ["id", "document", "label"]:
            raise DataFormatError(f"{path}:1: expected the NSMC header 'id<TAB>document<TAB>label', got {lines[0][:80]!r}" if lines else f"{path} is empty")
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
        if not text:
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
    """
    if name == "all":
        parts = [load_dataset(n, data_dir, root, valid_fraction, test_fraction, skip_bad_rows) for n in DATASETS]
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
            raise ValueError(f"dataset {name!r} has an empty {split} split; check the data files and split fractions")
    if max_train is not None and max_train < len(splits["train"]):
        splits["train"] = splits["train"].sample(n=max_train, random_state=seed).reset_index(drop=True)
    return splits


def read_unlabeled(path: str | Path) -> pd.DataFrame:
    """Read extra unlabeled text (one review per line) as examples with label -1 for distillation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"unlabeled text file {path} not found")
    with open(path, encoding="utf-8-sig") as f:
        texts = [line.strip() for line in f]
    kept = list(dict.fromkeys(t for t in texts if t))
    logger.info(f"{path}: {len(kept):,} unlabeled texts kept of {len(texts):,} lines (empty and repeated dropped)")
    if not kept:
        raise ValueError(f"{path} holds no text")
    source = f"unlabeled:{path.stem}"
    return pd.DataFrame({"id": [_text_id(source, t) for t in kept], "text": kept, "label": -1, "source": source})


# ---------------------------------------------------------------------------------------------------------
# WordPiece tokenizer
# ---------------------------------------------------------------------------------------------------------

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer_dir(vocab_size: int, root: str | Path = "tokenizer") -> Path:
    """Directory of the tokenizer of a given vocab size: ``tokenizer/vocab_size_N``."""
    return Path(root) / f"vocab_size_{vocab_size}"


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: str | Path, min_frequency: int = 2, info: dict | None = None):
    """Train a WordPiece tokenizer and save it (tokenizer.json, vocab.txt, training.json) atomically.

    Normalisation: NFC, then BERT cleaning and lowercasing of Latin letters *without* accent stripping, which
    would decompose Hangul syllables into jamo (NFD). Chinese characters are split like BERT does. The initial
    alphabet keeps the most frequent characters (1000 at most, BERT's default; Korean text has over 2000
    distinct syllables, which would overflow a small vocabulary): on NSMC about 1% of tokens become [UNK].
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True)]
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    limit_alphabet = min(1000, vocab_size // 2)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, limit_alphabet=limit_alphabet, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    backend.train_from_iterator(texts, trainer, length=len(texts))
    if backend.get_vocab_size() > vocab_size:
        raise ValueError(f"the trained vocabulary has {backend.get_vocab_size()} tokens, more than {vocab_size}: use a larger vocab size")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    training = {"vocab_size": vocab_size, "limit_alphabet": limit_alphabet, **(info or {})}

    def write(directory: Path) -> None:
        save_tokenizer_files(tokenizer, directory)
        (directory / "training.json").write_text(json.dumps(training, ensure_ascii=False, indent=2), encoding="utf-8")

    atomic_dir(out_dir, write)
    return tokenizer


def save_tokenizer_files(tokenizer, directory: Path) -> None:
    """``tokenizer.save_pretrained(directory)`` plus a ``vocab.txt`` with the tokens ordered by id."""
    tokenizer.save_pretrained(str(directory))
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("tokenizer ids are not contiguous from 0; cannot write vocab.txt")
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


def atomic_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` and swap the finished directory onto ``path``.

    An existing ``path`` is moved aside, replaced, and deleted only once the new one is in place (it is put
    back if the swap fails); temporary directories never outlive the call.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        if not path.exists():
            os.replace(tmp, path)
            return path
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        try:
            os.replace(path, trash / "old")
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(trash / "old", path)
                raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op once renamed into place
    return path


def load_tokenizer(directory: str | Path):
    """Load a saved tokenizer directory as a fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {directory}; train one with `python distil.py tokenizer`")
    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def get_tokenizer(train: pd.DataFrame, vocab_size: int, dataset: str, root: str | Path = "tokenizer"):
    """Reuse ``tokenizer/vocab_size_N`` when it was trained on these very texts, else (re)train it (seconds)."""
    directory = tokenizer_dir(vocab_size, root)
    fingerprint = data_fingerprint(train)
    meta_path = directory / "training.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("fingerprint") == fingerprint:
            return load_tokenizer(directory)
        logger.info(f"{directory} was trained on other texts ({meta.get('dataset')}, {meta.get('num_texts')} texts): retraining")
    logger.info(f"training a WordPiece tokenizer with {vocab_size} tokens on {len(train):,} {dataset} texts")
    info = {"dataset": dataset, "num_texts": len(train), "fingerprint": fingerprint}
    return train_tokenizer(train["text"].tolist(), vocab_size, directory, info=info)


def data_fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 over the example ids and texts, in order."""
    h = hashlib.sha256()
    for i, t in zip(df["id"], df["text"]):
        h.update(f"{i}\t{t}\n".encode("utf-8"))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Teacher-logits cache
# ---------------------------------------------------------------------------------------------------------

CACHE_FORMAT = "distilkobilstm-logits-v1"


class CacheMismatch(RuntimeError):
    """A logits cache that does not match the teacher or the examples it is used with."""


@dataclass
class LogitsCache:
    """Teacher logits keyed by example id (the seed's dictionary from example to logits)."""

    ids: list[str]
    hashes: torch.Tensor  # int64 [N] hash of each example's text
    logits: torch.Tensor  # float32 [N, C]
    meta: dict[str, str]

    def __post_init__(self) -> None:
        self.index = {example_id: row for row, example_id in enumerate(self.ids)}

    def lookup(self, df: pd.DataFrame) -> torch.Tensor:
        """Logits aligned with the rows of ``df``; ``CacheMismatch`` if an id is missing or its text changed."""
        rows = [self.index.get(i, -1) for i in df["id"]]
        missing = rows.count(-1)
        if missing:
            raise CacheMismatch(f"{missing:,} of {len(rows):,} examples are not in the cache")
        rows_t = torch.tensor(rows, dtype=torch.long)
        changed = int((self.hashes[rows_t] != text_hashes(df["text"])).sum())
        if changed:
            raise CacheMismatch(f"{changed:,} examples have different text than when the cache was built")
        return self.logits[rows_t]

    def save(self, path: str | Path) -> None:
        """Write the cache as one safetensors file, atomically."""
        from safetensors.torch import save_file

        ids_bytes = "\n".join(self.ids).encode("utf-8")
        tensors = {
            "logits": self.logits.float().contiguous(),
            "hashes": self.hashes.contiguous(),
            "ids": torch.frombuffer(bytearray(ids_bytes), dtype=torch.uint8) if ids_bytes else torch.zeros(0, dtype=torch.uint8),
        }
        atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=self.meta))

    @classmethod
    def load(cls, path: str | Path) -> "LogitsCache":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CACHE_FORMAT:
                raise CacheMismatch(f"{path} is not a logits cache of this version ({meta.get('format')!r})")
            raw = f.get_tensor("ids").numpy().tobytes().decode("utf-8")
            return cls(raw.split("\n") if raw else [], f.get_tensor("hashes"), f.get_tensor("logits"), meta)


def cache_file(cache_dir: str | Path, dataset: str, split: str) -> Path:
    """``<teacher>/logits/<dataset>-<split>.safetensors``."""
    return Path(cache_dir) / f"{dataset}-{split}.safetensors"


def teacher_logits(
    teacher: str,
    df: pd.DataFrame,
    dataset: str,
    split: str,
    *,
    teacher_root: str | Path = "teacher_model",
    device: str = "auto",
    batch_size: int | None = None,
    max_length: int = 128,
    on_mismatch: str = "rebuild",
) -> torch.Tensor:
    """Teacher logits for the rows of ``df`` (aligned, float32 ``[N, C]``), from the cache when it is valid.

    The cache records the teacher's weight fingerprint, its max length, the dataset and split; every example
    is checked by id and text hash. A stale or incomplete cache is rebuilt (``on_mismatch="rebuild"``) or
    refused with ``CacheMismatch`` (``on_mismatch="error"``). The teacher is loaded only to build the cache.
    """
    import teacher as teachers

    model_dir = teachers.resolve_teacher(teacher, teacher_root)
    path = cache_file(teachers.teacher_cache_dir(teacher, teacher_root), dataset, split)
    expected = {"teacher_fingerprint": teachers.teacher_fingerprint(model_dir), "max_length": str(max_length)}
    if path.is_file():
        try:
            cache = LogitsCache.load(path)
            for key, value in expected.items():
                if cache.meta.get(key) != value:
                    raise CacheMismatch(f"{key} differs (cache {cache.meta.get(key)!r}, now {value!r})")
            logits = cache.lookup(df)
            logger.info(f"teacher logits for {dataset}/{split} from cache {path} ({len(df):,} examples)")
            return logits
        except CacheMismatch as err:
            if on_mismatch != "rebuild":
                raise CacheMismatch(f"stale logits cache {path}: {err}. Delete it or let it be rebuilt.") from None
            logger.warning(f"stale logits cache {path}: {err}; rebuilding it")
    logger.info(f"running the teacher {teacher} on {len(df):,} {dataset}/{split} examples (once; cached in {path})")
    model = teachers.load_teacher(str(model_dir), device=device, max_length=max_length)
    logits = model.predict_logits(df["text"].tolist(), batch_size=batch_size).float().cpu()
    if len(logits) != len(df):
        raise RuntimeError(f"the teacher returned {len(logits)} rows for {len(df)} examples")
    meta = {
        "format": CACHE_FORMAT,
        "teacher": str(teacher),
        "dataset": dataset,
        "split": split,
        "num_examples": str(len(df)),
        "data_fingerprint": data_fingerprint(df),
        **expected,
    }
    if _is_main_process():
        LogitsCache(df["id"].tolist(), text_hashes(df["text"]), logits, meta).save(path)
    _barrier()
    return logits


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _barrier() -> None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
