"""Small helpers every module shares: the project's logger, the device, seeding, atomic writes of files and
folders (and the removal of their stale temporaries), short hashes and one-line error messages. torch is
imported by the helpers that need it, so that the settings and the command line load without it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("distilkobilstm")

# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def get_device(name: str | torch.device = "auto") -> torch.device:
    """The one device resolver: ``auto`` is CUDA when present, else Apple MPS, else CPU; an explicit device
    must exist here (ValueError naming it and the fix otherwise)."""
    import torch

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
        import torch

        return torch.cuda.get_device_name(device)
    return cpu_name()


def setup_logging(quiet: bool = False) -> None:
    """Show this project's log messages (INFO, or WARNING only when ``quiet``) as plain lines on stderr."""
    logging.basicConfig(format="%(message)s")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

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


def atomic_write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write NumPy arrays as one uncompressed ``.npz`` archive (``np.load`` reads them by name) atomically."""

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.savez would append .npz to the temporary's name
            np.savez(f, **arrays)

    atomic_save(path, save)


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


def first_line(err: BaseException) -> str:
    """The first line of an error's message (200 characters at most), or its type's name when it has none."""
    text = str(err).strip().splitlines()
    return (text[0][:200] if text else "") or type(err).__name__


def short_hash(value: object) -> str:
    """8 hex digits of SHA-256 over a JSON-serialisable value (keys sorted): short, stable names."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_name(value: str, what: str) -> str:
    """``value`` as one file-name component (no path separators, not hidden): names folders and files."""
    plain = isinstance(value, str) and bool(value) and Path(value).name == value and "\\" not in value
    if not plain or value.startswith("."):
        raise ValueError(f"{what} {value!r} must be a plain name (no '/', '\\' or leading '.')")
    return value


def as_list(value: object) -> list:
    """One value or several as a list: a list or tuple as it is, None as [], any other value as [value]."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
