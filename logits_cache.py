"""The teacher-logits cache file format (``LogitsCache``): the teacher's logits keyed by example id and
text hash, in one checksummed safetensors file; ``teacher.teacher_logits`` builds and checks the caches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from utils import atomic_save, first_line, remove_stale_temporaries

CACHE_FORMAT = "distilkobilstm-logits-v1"
CHECKSUM_KEY = "content_sha256"  # cache metadata: SHA-256 of the tensors' bytes, checked on load


def text_hashes(texts: Iterable[str]) -> torch.Tensor:
    """64-bit hash of each text (int64 tensor): the per-example fingerprint stored in the logits cache."""
    values = [
        int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
        for t in texts
    ]
    return torch.tensor(values, dtype=torch.int64)


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
            raise CacheMismatch(f"{path} is corrupt or truncated ({first_line(err)})") from None
        ids = raw.split("\n") if raw else []
        if logits.ndim != 2 or not len(ids) == len(hashes) == len(logits):
            shapes = f"{len(ids)} ids, {len(hashes)} hashes, logits {tuple(logits.shape)}"
            raise CacheMismatch(f"{path} is inconsistent: {shapes}")
        meta.pop(CHECKSUM_KEY, None)
        return cls(ids, hashes, logits, meta)
