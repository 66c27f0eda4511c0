"""Data, tokenizers and the teacher-logits cache.

- Datasets: NSMC, Naver shopping and Steam reviews (and all three combined), downloaded from their public
  GitHub repositories or read from local copies, parsed into ``id, text, label, source`` and split
  deterministically into train / valid / test.
- Tokenizers: WordPiece vocabularies of any size trained on the training split, saved to
  ``tokenizer/vocab_size_N/``.
- Logits cache file format (``LogitsCache``): the teacher's logits keyed by example id and text hash;
  ``teacher.teacher_logits`` builds and checks the caches.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import http.client
import json
import logging
import math
import numbers
import os
import platform
import random
import re
import shutil
import tempfile
import time
import typing
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

logger = logging.getLogger("distilkobilstm")

# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def get_device(name: str | torch.device = "auto") -> torch.device:
    """The one device resolver: ``auto`` is CUDA when present, else Apple MPS, else CPU; an explicit device
    must exist here (ValueError naming it and the fix otherwise)."""
    if str(name) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: torch sees no CUDA GPU on this machine; use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {name!r}: Apple MPS is not available here; use --device auto or cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo where there is one, else what ``platform`` knows)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        return name


def device_name(device: torch.device) -> str:
    """What a run's timings depend on: the GPU's name on CUDA, the CPU's model name otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def setup_logging(quiet: bool = False) -> None:
    """Show this project's log messages (INFO, or WARNING only when ``quiet``) as plain lines on stderr."""
    logging.basicConfig(format="%(message)s")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_mode(path: Path, directory: bool = False) -> None:
    """Give a file made by mkstemp (0600) or a folder made by mkdtemp (0700) the modes open/mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file renamed into place."""
    atomic_save(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Write JSON (UTF-8, indented, Hangul unescaped) atomically."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_save(path: str | Path, save: Callable[[Path], None]) -> None:
    """Call ``save(tmp_path)`` and rename the temporary file onto ``path`` once it is complete.

    The file gets the usual mode for new files (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save(Path(tmp))
        _default_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Names of the temporaries written by atomic_save (".NAME.XXXX.tmp") and atomic_dir (".NAME.tmp-XXXX",
# ".NAME.old-XXXX"): nothing else is ever removed by remove_stale_temporaries.
_TEMPORARY = re.compile(r"^\..+(\.[a-z0-9_]{8}\.tmp|\.tmp-[a-z0-9_]{8}|\.old-[a-z0-9_]{8})$")


def remove_stale_temporaries(directory: str | Path, max_age: float = 3600.0) -> int:
    """Remove the temporaries of atomic writers killed mid-write from ``directory``; returns how many.

    Only entries named like our own temporaries (``.NAME.XXXX.tmp``, ``.NAME.tmp-XXXX``, ``.NAME.old-XXXX``)
    and last modified more than ``max_age`` seconds ago are removed, so a writer still at work in another
    process keeps its file. A missing directory holds nothing to remove.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    now = time.time()
    for entry in directory.iterdir():
        if not _TEMPORARY.match(entry.name):
            continue
        try:
            if now - entry.lstat().st_mtime < max_age:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        removed += 1
    if removed:
        logger.info(f"removed {removed} temporary file(s) left in {directory} by interrupted runs")
    return removed


def _sha1_fraction(key: str) -> float:
    """Map a string to a stable number in [0, 1)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)


def text_hashes(texts: Iterable[str]) -> torch.Tensor:
    """64-bit hash of each text (int64 tensor): the per-example fingerprint stored in the logits cache."""
    values = [
        int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
        for t in texts
    ]
    return torch.tensor(values, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------------
# Settings dataclasses: each field carries its help, choices, bounds, CLI flag and grid flag (``setting``);
# ``validate_fields`` checks a dataclass against them and ``add_arguments`` makes its command-line options
# (distil, teacher, augment, serve, bench and tools/ all use these)
# ---------------------------------------------------------------------------------------------------------


class SettingTypeError(TypeError, ValueError):
    """A setting of the wrong type: a TypeError, and a ValueError like any other bad setting."""


def setting(
    default: object = dataclasses.MISSING,
    help: str = "",
    *,
    choices: Sequence | None = None,
    bounds: str | None = None,
    flag: str | None = None,
    grid: bool = False,
    default_factory: Callable[[], object] | None = None,
) -> Any:
    """A dataclass field with its metadata. ``bounds`` is an interval: ``"[0, 1)"``, ``"[1, inf)"``."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "bounds": bounds,
        "flag": flag,
        "grid": grid,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def shared_setting(config: type, name: str) -> Any:
    """A dataclass field with the default and metadata of ``config``'s field ``name``: one setting that two
    configs hold (e.g. the teacher's max length, for fine-tuning and for caching)."""
    source = {f.name: f for f in dataclasses.fields(config)}[name]
    return field(default=source.default, metadata=dict(source.metadata))


def setting_flag(f: dataclasses.Field) -> str:
    """The command-line option of a settings field: its ``flag``, else ``--name-with-dashes``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def setting_type(hint: object) -> type:
    """``int | None`` -> int, ``tuple[str, ...]`` -> tuple, ``str`` -> str."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple
    return setting_type(args[0]) if origin is not None and args else typing.cast(type, hint)


def takes_several(hint: object) -> bool:
    """``str | tuple[str, ...] | None``: a field that takes one value or several (a list or tuple)."""
    return any(typing.get_origin(a) is tuple for a in typing.get_args(hint))


def item_type(hint: object) -> type:
    """The type of one value: ``tuple[float, ...] | None`` -> float, ``int`` -> int."""
    for arg in (hint, *typing.get_args(hint)):
        if typing.get_origin(arg) is tuple:
            return typing.get_args(arg)[0]
    return setting_type(hint)


def _in_bounds(value: float, bounds: str) -> bool:
    low, high = (float(x) for x in bounds[1:-1].split(","))
    above = value >= low if bounds[0] == "[" else value > low
    below = value <= high if bounds[-1] == "]" else value < high
    return above and below


def _describe_bounds(bounds: str, kind: type, value: float) -> str:
    """``"[1, inf)"`` -> "in [1, inf)"; a float: "a number in (0, 1]" ("a finite number ..." for inf, nan)."""
    if kind is not float:
        return f"in {bounds}"
    return f"a {'' if math.isfinite(value) else 'finite '}number in {bounds}"


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}


def _coerce(value: object, kind: type) -> object:
    """``value`` as ``kind`` where that loses nothing (1 -> 1.0, 16.0 -> 16, numpy scalars, list -> tuple);
    else ``value`` unchanged."""
    if isinstance(value, bool) or (kind is bool and isinstance(value, np.bool_)):
        return bool(value)
    if kind is float and isinstance(value, numbers.Real):
        return float(value)
    if kind is int and isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    return value


def validate_fields(obj: object) -> None:
    """Check each field of a settings dataclass against its type, choices and bounds, converting lossless
    numbers in place; a one-line ValueError (``SettingTypeError`` for a wrong type) names the field,
    its flag, what is allowed and the value given."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, meta = hints[f.name], f.metadata
        kind, value = setting_type(hint), getattr(obj, f.name)
        if value is None and type(None) in typing.get_args(hint):
            continue
        if isinstance(value, (list, tuple)) and takes_several(hint):
            kind = tuple  # several values of a field that also takes one (its dataclass checks the items)
        if not dataclasses.is_dataclass(kind):
            value = _coerce(value, kind)
            object.__setattr__(obj, f.name, value)
        name = f"{f.name} ({setting_flag(f)})"
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            what = _TYPE_WORDS.get(kind, f"of type {kind.__name__}")
            raise SettingTypeError(f"{name} must be {what}, got {value!r}")
        choices = meta.get("choices")
        if choices and any(item not in choices for item in (value if kind is tuple else (value,))):
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
        bounds = meta.get("bounds")
        if bounds and (math.isnan(value) or not _in_bounds(value, bounds)):
            raise ValueError(f"{name} must be {_describe_bounds(bounds, kind, value)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: typing.Iterable[str] | None = None,
    skip: typing.Iterable[str] = (),
    required: typing.Iterable[str] = (),
    dest_prefix: str = "",
) -> None:
    """One option per field of the dataclass ``cls``, from its type and metadata (help, choices, bounds, flag,
    grid). A grid field or a tuple takes several values; a bool is a switch. The dataclass checks values.
    ``dest_prefix`` keeps two dataclasses' fields of one name apart (the teacher's and the student's seed)."""
    hints, only, skip, required = typing.get_type_hints(cls), only and set(only), set(skip), set(required)
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        meta, hint = f.metadata, hints[f.name]
        kind = setting_type(hint)
        notes = [
            f"in {meta['bounds']}" if meta.get("bounds") else "",
            "" if f.name in required else "default: %(default)s",
        ]
        options: dict = dict(
            dest=dest_prefix + f.name,
            default=f.default,
            help=f"{meta.get('help', '')} ({'; '.join(filter(None, notes))})",
        )
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        elif kind is tuple or takes_several(hint) or meta.get("grid"):
            options.update(nargs="+", type=item_type(hint))
            options["default"] = [f.default] if meta.get("grid") else f.default
        else:
            options["type"] = kind
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        elif dest_prefix and kind is not bool:
            options["metavar"] = f.name.upper()  # N_ITER, not AUGMENT_N_ITER
        if f.name in required:
            options.update(required=True, default=None)
        parser.add_argument(setting_flag(f), **options)


def from_args(cls: type, args: argparse.Namespace, **values: object) -> typing.Any:
    """The dataclass ``cls`` built from the parsed options of its fields (and ``values``)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**given, **values})


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


class DataEncodingError(DataFormatError):
    """A dataset file that is not valid UTF-8."""


def _text_normalizer():
    """The normalizer of every WordPiece tokenizer trained here (see train_tokenizer)."""
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
        _NORMALIZER = _text_normalizer()
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


# ---------------------------------------------------------------------------------------------------------
# WordPiece tokenizer
# ---------------------------------------------------------------------------------------------------------

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer_dir(vocab_size: int, root: str | Path = "tokenizer") -> Path:
    """Directory of the tokenizer of a given vocab size: ``tokenizer/vocab_size_N``."""
    return Path(root) / f"vocab_size_{vocab_size}"


def _blank_wordpiece(vocab: dict[str, int] | None = None):
    """A WordPiece backend (of ``vocab``, else untrained) with this project's normaliser and pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = _text_normalizer()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    return backend


def _train_vocab(
    texts: list[str], vocab_size: int, min_frequency: int, limit_alphabet: int
) -> dict[str, int]:
    """The WordPiece vocabulary (token -> id, ids sorted) trained on ``texts``, alphabet chosen here."""
    from tokenizers import trainers

    backend = _blank_wordpiece()
    alphabet, continuing = _alphabet(texts, backend.normalizer, limit_alphabet)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        special_tokens=SPECIAL_TOKENS + ["##" + c for c in continuing],
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer, length=len(texts))
    if backend.get_vocab_size() > vocab_size:
        raise ValueError(
            f"the trained vocabulary has {backend.get_vocab_size()} tokens, more than {vocab_size}: "
            "use a larger vocab size"
        )
    return _sorted_vocab(backend.get_vocab())


def _wordpiece_tokenizer(vocab: dict[str, int]):
    """A fresh transformers tokenizer of ``vocab``: the ##c tokens were special only for training."""
    from transformers import PreTrainedTokenizerFast

    backend = _blank_wordpiece(vocab)
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def train_tokenizer(
    texts: list[str], vocab_size: int, out_dir: str | Path, min_frequency: int = 2, info: dict | None = None
):
    """Train a WordPiece tokenizer and save it (tokenizer.json, vocab.txt, training.json) atomically.

    Normalisation: NFC, then BERT cleaning and lowercasing of Latin letters *without* accent stripping, which
    would decompose Hangul syllables into jamo (NFD). Chinese characters are split like BERT does. The initial
    alphabet keeps the most frequent characters (1000 at most, BERT's default; Korean text has over 2000
    distinct syllables, which would overflow a small vocabulary): on NSMC about 1% of tokens become [UNK].

    Deterministic: the same texts and settings give the same vocab.txt. The trainer alone is not: it numbers
    new tokens in the order of its hash maps, which are seeded at random in every process, and breaks ties
    between equally frequent characters and merges by those numbers. So the alphabet is chosen here (ties by
    code point), its ``##c`` continuation tokens are numbered before training (passed as special tokens),
    and the final ids are sorted (see _sorted_vocab); training.json records the vocabulary's sha256.
    """
    limit_alphabet = min(1000, vocab_size // 2)
    tokenizer = _wordpiece_tokenizer(_train_vocab(texts, vocab_size, min_frequency, limit_alphabet))
    training = {"vocab_size": vocab_size, "limit_alphabet": limit_alphabet, **(info or {})}

    def write(directory: Path) -> None:
        save_tokenizer_files(tokenizer, directory)
        training["vocab_sha256"] = vocab_sha256(tokenizer)
        (directory / "training.json").write_text(
            json.dumps(training, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    atomic_dir(out_dir, write)
    return tokenizer


def _alphabet(texts: list[str], normalizer, limit: int) -> tuple[list[str], list[str]]:
    """The ``limit`` most frequent characters of the normalized texts (ties by code point), and those of them
    that occur inside a word, after its first character (the trainer adds ``##c`` for each)."""
    # Composed once for all texts (fast), then each distinct character through the normalizer: after NFC
    # its other steps (cleaning, lowercasing, spaces around CJK) act on one character at a time.
    composed = unicodedata.normalize("NFC", "\n".join(texts))
    normalized = composed.translate({ord(c): normalizer.normalize_str(c) for c in set(composed)})
    counts = collections.Counter(normalized)
    alphabet = sorted((c for c in counts if not c.isspace()), key=lambda c: (-counts[c], c))[:limit]
    # Words end at whitespace and punctuation (BertPreTokenizer); drop each word's first character.
    ends = r"\s" + re.escape("".join(c for c in counts if _is_punctuation(c)))
    inside = set(re.sub(rf"(?:^|(?<=[{ends}]))[^{ends}]", "", normalized))
    return alphabet, [c for c in alphabet if c in inside and not c.isspace() and not _is_punctuation(c)]


def _is_punctuation(char: str) -> bool:
    """BERT's punctuation: ASCII symbols and Unicode category P*."""
    code = ord(char)
    return (
        33 <= code <= 47
        or 58 <= code <= 64
        or 91 <= code <= 96
        or 123 <= code <= 126
        or (unicodedata.category(char).startswith("P"))
    )


def _sorted_vocab(vocab: dict[str, int]) -> dict[str, int]:
    """The special tokens first (ids 0-4, as trained), then every other token in code-point order.

    The trainer numbers tokens in an order that changes from process to process (its hash maps are seeded at
    random), and WordPiece encoding depends only on the set of tokens: sorted ids make equal vocabularies
    give identical ids, and so identical embeddings for one seed.
    """
    tokens = SPECIAL_TOKENS + sorted(set(vocab) - set(SPECIAL_TOKENS))
    if [vocab[t] for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise ValueError(f"the special tokens {SPECIAL_TOKENS} do not have the first ids")
    return {token: i for i, token in enumerate(tokens)}


DEFAULT_MODEL_MAX_LENGTH = 128  # tokens a student keeps per text unless its config says otherwise


def save_tokenizer_files(
    tokenizer, directory: Path, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH
) -> None:
    """``tokenizer.save_pretrained(directory)`` plus a ``vocab.txt`` with the tokens ordered by id.

    tokenizer_config.json records ``model_max_length`` (the caller's tokenizer object is left unchanged), so
    ``AutoTokenizer.from_pretrained(directory)(text, truncation=True)`` keeps as many tokens as the student.
    """
    saved = tokenizer.model_max_length
    tokenizer.model_max_length = model_max_length
    try:
        tokenizer.save_pretrained(str(directory))
    finally:
        tokenizer.model_max_length = saved
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("tokenizer ids are not contiguous from 0; cannot write vocab.txt")
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


def atomic_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` and swap the finished directory onto ``path``.

    An existing ``path`` is moved aside, replaced, and deleted only once the new one is in place (it is put
    back if the swap fails); temporary directories never outlive the call (unless the process is killed:
    see remove_stale_temporaries). Its folders and files get the usual modes (0777 / 0666 less the umask),
    not mkdtemp's 0700 or the 0600 some writers use.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        for entry in [tmp, *tmp.rglob("*")]:  # also files libraries create private (safetensors: 0600)
            _default_mode(entry, directory=entry.is_dir())
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


class CorruptFileError(ValueError):
    """An artifact file that cannot be read (truncated, garbled, half-written)."""


def one_line(err: BaseException) -> str:
    """An error's message on one line (whitespace runs collapsed), or its type's name when it has none."""
    return " ".join(str(err).split()) or type(err).__name__


def load_tokenizer(directory: str | Path):
    """Load a saved tokenizer directory as a fast tokenizer.

    A tokenizer.json that cannot be read raises ``CorruptFileError`` naming the file and the remedy.
    """
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no tokenizer.json in {directory}; train one with `python distil.py tokenizer`"
        )
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    except Exception as err:
        raise CorruptFileError(
            f"{path} is corrupt or truncated ({_first_line(err)}); restore the folder from a copy, "
            f"or delete {directory} and train the tokenizer again (`python distil.py tokenizer`)"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0][:200] if text else "") or type(err).__name__


def vocab_sha256(tokenizer) -> str:
    """SHA-256 of the vocabulary as vocab.txt lists it: one token a line, ordered by id."""
    vocab = tokenizer.get_vocab()
    return hashlib.sha256("".join(t + "\n" for t in sorted(vocab, key=vocab.get)).encode("utf-8")).hexdigest()


def get_tokenizer(train: pd.DataFrame, vocab_size: int, dataset: str, root: str | Path = "tokenizer"):
    """Reuse ``tokenizer/vocab_size_N`` when it was trained on these very texts, else (re)train it (seconds).

    A shared tokenizer folder that cannot be read (corrupt or truncated tokenizer.json or training.json, or
    a vocabulary whose hash differs from the one recorded) is derived data: it is trained again, with a
    warning.
    """
    directory = tokenizer_dir(vocab_size, root)
    remove_stale_temporaries(root)
    fingerprint = data_fingerprint(train)
    meta_path = directory / "training.json"
    if meta_path.is_file() or (directory / "tokenizer.json").is_file():
        try:
            meta = _read_json(meta_path)
            if meta.get("fingerprint") == fingerprint:
                tokenizer = load_tokenizer(directory)
                if meta.get("vocab_sha256", vocab_sha256(tokenizer)) != vocab_sha256(tokenizer):
                    raise CorruptFileError(
                        f"{directory / 'tokenizer.json'} does not hold the vocabulary recorded in {meta_path}"
                    )
                return tokenizer
            other = f"{meta.get('dataset')}, {meta.get('num_texts')} texts"
            logger.info(f"{directory} was trained on other texts ({other}): retraining")
        except (CorruptFileError, OSError) as err:
            logger.warning(f"{err}; training the tokenizer again")
    logger.info(f"training a WordPiece tokenizer with {vocab_size} tokens on {len(train):,} {dataset} texts")
    info = {"dataset": dataset, "num_texts": len(train), "fingerprint": fingerprint}
    return train_tokenizer(train["text"].tolist(), vocab_size, directory, info=info)


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``CorruptFileError`` naming the file if it is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{path} is corrupt or truncated ({err})") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path} does not hold a JSON object")
    return value


def short_hash(value: object) -> str:
    """8 hex digits of SHA-256 over a JSON-serialisable value (keys sorted): short, stable names."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def data_fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 over the example ids and texts, in order."""
    h = hashlib.sha256()
    for i, t in zip(df["id"], df["text"]):
        h.update(f"{i}\t{t}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Teacher-logits cache
# ---------------------------------------------------------------------------------------------------------

CACHE_FORMAT = "distilkobilstm-logits-v1"
CHECKSUM_KEY = "content_sha256"  # cache metadata: SHA-256 of the tensors' bytes, checked on load


def _checksum(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for tensor in tensors:
        h.update(tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


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
        """Logits aligned with the rows of ``df``; ``CacheMismatch`` if an id is missing or its text
        changed."""
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
        """Write the cache as one safetensors file, atomically, with a checksum of its contents (and clear
        the folder of temporaries that killed writers left)."""
        from safetensors.torch import save_file

        ids_bytes = "\n".join(self.ids).encode("utf-8")
        tensors = {
            "logits": self.logits.float().contiguous(),
            "hashes": self.hashes.contiguous(),
            "ids": torch.frombuffer(bytearray(ids_bytes), dtype=torch.uint8)
            if ids_bytes
            else torch.zeros(0, dtype=torch.uint8),
        }
        meta = {**self.meta, CHECKSUM_KEY: _checksum(tensors["ids"], tensors["hashes"], tensors["logits"])}
        remove_stale_temporaries(Path(path).parent)
        atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> LogitsCache:
        """Read a cache written by save; ``CacheMismatch`` naming the file if it cannot be read as one."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != CACHE_FORMAT:
                    found = meta.get("format")
                    raise CacheMismatch(f"{path} is not a logits cache of this version ({found!r})")
                raw_ids, hashes, logits = (f.get_tensor(name) for name in ("ids", "hashes", "logits"))
            checksum = _checksum(raw_ids, hashes, logits)
            if meta.get(CHECKSUM_KEY, checksum) != checksum:
                raise CacheMismatch(f"{path} is corrupt: its contents do not match their checksum")
            raw = raw_ids.numpy().tobytes().decode("utf-8")
        except CacheMismatch:
            raise
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
            raise CacheMismatch(f"{path} is corrupt or truncated ({_first_line(err)})") from None
        ids = raw.split("\n") if raw else []
        if logits.ndim != 2 or not len(ids) == len(hashes) == len(logits):
            shapes = f"{len(ids)} ids, {len(hashes)} hashes, logits {tuple(logits.shape)}"
            raise CacheMismatch(f"{path} is inconsistent: {shapes}")
        meta.pop(CHECKSUM_KEY, None)
        return cls(ids, hashes, logits, meta)
