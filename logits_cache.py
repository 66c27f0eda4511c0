"""The teacher-logits cache: its file format (``LogitsCache``: the logits keyed by example id and text hash,
in one checksummed safetensors file) and building it, so that a teacher runs once per example; an ensemble's
logits are the (weighted) mean of its members' cached logits.

A teacher's caches live in ``<teacher>/logits/<dataset>-<split>.safetensors``, checked against its weights
and every example's text.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

import corpus
import teacher as teachers
from utils import atomic_save, check_name, first_line, logger, remove_stale_temporaries

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


# ---------------------------------------------------------------------------------------------------------
# Building the caches: the teacher runs once per example
# ---------------------------------------------------------------------------------------------------------


def cache_file(cache_dir: str | Path, dataset: str, split: str) -> Path:
    """``<teacher>/logits/<dataset>-<split>.safetensors``."""
    return Path(cache_dir) / f"{check_name(dataset, 'dataset')}-{check_name(split, 'split')}.safetensors"


def _cached(
    path: Path,
    df: pd.DataFrame,
    expected: dict[str, str],
    on_mismatch: str,
    labels: Sequence[str] | None = None,
) -> torch.Tensor | None:
    """The cached logits of ``df``'s rows, or None when there is no valid cache (rebuild). A cache built for
    other label names than ``labels`` (when given) does not match; one from before labels were recorded
    does (its teacher's fingerprint pins them)."""
    if not path.is_file():
        return None
    try:
        cache = LogitsCache.load(path)
        for key, value in expected.items():
            if cache.meta.get(key) != value:
                raise CacheMismatch(f"{key} differs (cache {cache.meta.get(key)!r}, now {value!r})")
        recorded = json.loads(cache.meta.get("labels", "null"))
        if labels is not None and recorded is not None and recorded != list(labels):
            raise CacheMismatch(f"it holds the labels {recorded}, the data {list(labels)}")
        logits = cache.lookup(df)
        if not bool(torch.isfinite(logits).all()):  # written before such logits were refused
            raise CacheMismatch("it holds NaN/Inf logits")
        return logits
    except CacheMismatch as err:
        if on_mismatch != "rebuild":
            raise CacheMismatch(
                f"stale logits cache {path}: {err}. Delete it or let it be rebuilt."
            ) from None
        logger.warning(f"stale logits cache {path}: {err}; rebuilding it")
        return None


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
    load: Callable[[], teachers.Teacher] | None = None,
    labels: Sequence[str] | None = None,
) -> torch.Tensor:
    """Teacher logits for the rows of ``df`` (aligned, float32 ``[N, C]``), from the cache when it is valid.

    The cache records the teacher's weight fingerprint, its max length, the dataset and split, the label
    names and the data's fingerprint; every example is checked by id and text hash. A stale or incomplete
    cache is rebuilt (``on_mismatch="rebuild"``) or refused with ``CacheMismatch`` (``on_mismatch="error"``).
    Given the data's label names ``labels``, a teacher that predicts others is refused
    (``teacher.check_labels``). The teacher is loaded only to build the cache, by ``load`` when given
    (``cache_teacher`` passes one that loads it once for every split).
    """
    if on_mismatch not in ("rebuild", "error"):
        raise ValueError(f"on_mismatch must be 'rebuild' or 'error', got {on_mismatch!r}")
    model_dir = teachers.resolve_teacher(teacher, teacher_root)
    if labels is not None:
        teachers.check_labels(model_dir, labels)
    path = cache_file(teachers.teacher_cache_dir(teacher, teacher_root), dataset, split)
    expected = {"teacher_fingerprint": teachers.teacher_fingerprint(model_dir), "max_length": str(max_length)}
    logits = _cached(path, df, expected, on_mismatch, labels)
    if logits is not None:
        logger.info(f"teacher logits for {dataset}/{split} from cache {path} ({len(df):,} examples)")
        return logits
    logger.info(
        f"running the teacher {teacher} on {len(df):,} {dataset}/{split} examples (once; cached in {path})"
    )
    model = (
        load()
        if load is not None
        else teachers.load_teacher(str(model_dir), device=device, max_length=max_length)
    )
    logits = model.predict_logits(df["text"].tolist(), batch_size=batch_size).float().cpu()
    if len(logits) != len(df):
        raise RuntimeError(f"the teacher returned {len(logits)} rows for {len(df)} examples")
    _check_finite(logits, df, teacher, f"{dataset}/{split}")
    meta = {
        "format": CACHE_FORMAT,
        "teacher": str(teacher),
        "dataset": dataset,
        "split": split,
        "num_examples": str(len(df)),
        "labels": json.dumps(list(labels or teachers.teacher_labels(model_dir)), ensure_ascii=False),
        "data_fingerprint": corpus.data_fingerprint(df, labels or teachers.teacher_labels(model_dir)),
        **expected,
    }
    if teachers.is_main_process():
        hashes = text_hashes(df["text"])
        LogitsCache(df["id"].tolist(), hashes, logits, meta).save(path)
    teachers.barrier()
    return logits


def _check_finite(logits: torch.Tensor, df: pd.DataFrame, teacher: str, where: str) -> None:
    """Refuse (ValueError) logits with NaN or Inf, naming the teacher and the first such row: never cached."""
    bad = (~torch.isfinite(logits)).any(dim=-1).nonzero().flatten()
    if len(bad):
        row = int(bad[0])
        example = f"id {df['id'].iloc[row]}: {df['text'].iloc[row]!r:.60}"
        raise ValueError(
            f"the teacher {teacher} gives NaN/Inf logits for {len(bad):,} of {len(df):,} {where} examples, "
            f"first row {row} ({example}); not cached: check the teacher (fine-tune it again, e.g. with a "
            "lower --teacher-lr, or run it in float32)"
        )


def cache_teacher(
    teacher: str,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    *,
    teacher_root: str | Path = "teacher_model",
    device: str = "auto",
    batch_size: int | None = None,
    max_length: int = 128,
    unlabeled: str | Path | Sequence[str | Path] | None = None,
) -> dict[str, torch.Tensor]:
    """Teacher logits for every split (and each ``unlabeled`` text file: split ``unlabeled-<stem>``), each
    computed once, then cached.

    The teacher is loaded at most once, on the first split whose cache is missing or stale; it must predict
    the splits' label names. Prints the teacher's accuracy on each labelled split.
    """
    parts, labels = dict(splits), corpus.label_names(splits)
    files = [unlabeled] if isinstance(unlabeled, (str, Path)) else list(unlabeled or [])
    for path in files:
        parts[unlabeled_split(path)] = corpus.read_unlabeled(path)
    model_dir = str(teachers.resolve_teacher(teacher, teacher_root))
    load = functools.cache(lambda: teachers.load_teacher(model_dir, device=device, max_length=max_length))
    logits = {}
    for split, df in parts.items():
        logits[split] = teacher_logits(
            teacher,
            df,
            dataset,
            split,
            teacher_root=teacher_root,
            device=device,
            batch_size=batch_size,
            max_length=max_length,
            load=load,
            labels=labels,
        )
        labelled = df["label"].to_numpy() >= 0 if split in splits else None
        if labelled is not None and labelled.any():
            accuracy = float((logits[split].argmax(-1).numpy() == df["label"].to_numpy())[labelled].mean())
            print(f"teacher {split} accuracy: {accuracy:.4f} ({labelled.sum():,} examples)")
    return logits


def unlabeled_split(path: str | Path) -> str:
    """The cache split of an unlabeled text file: ``unlabeled-<stem>``."""
    return f"unlabeled-{Path(path).stem}"


def mean_logits(parts: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """The (weighted) mean of several teachers' logits of the same rows (TextBrewer's MultiTeacherDistiller
    averages logits likewise); one teacher's logits are returned as they are."""
    if len(parts) == 1 and weights is None:
        return parts[0]
    w = torch.tensor(weights if weights is not None else [1.0] * len(parts), dtype=torch.float32)
    if len(w) != len(parts) or not bool((w > 0).all()):
        raise ValueError(f"need one weight > 0 per teacher: {len(parts)} teachers, weights {w.tolist()}")
    return torch.einsum("t,tnc->nc", w / w.sum(), torch.stack([p.float() for p in parts]))


def ensemble_logits(
    members: Sequence[str], df: pd.DataFrame, dataset: str, split: str, weights=None, **options
) -> torch.Tensor:
    """The (weighted) mean of the members' cached logits of ``df`` (``teacher_logits`` per member, each with
    its own cache: a member whose cache is valid does not run; ``labels`` checks each member)."""
    return mean_logits([teacher_logits(m, df, dataset, split, **options) for m in members], weights)


def rank_weights(
    parts: Sequence[torch.Tensor], df: pd.DataFrame, grid: Sequence[float] = (0, 1, 2, 3, 4)
) -> list[tuple[tuple[float, ...], float]]:
    """Every weighting of the members' logits ``parts`` drawn from ``grid`` (0 leaves a member out), with its
    accuracy on ``df``: best first, ties to fewer members and smaller weights. Rank on validation rows."""
    ranked = []
    for weights in itertools.product(grid, repeat=len(parts)):
        kept = [i for i, w in enumerate(weights) if w > 0]
        if kept:
            logits = mean_logits([parts[i] for i in kept], [weights[i] for i in kept])
            ranked.append((tuple(float(w) for w in weights), accuracy(logits, df)))
    return sorted(ranked, key=lambda r: (-r[1], sum(w > 0 for w in r[0]), sum(r[0])))


def accuracy(logits: torch.Tensor, df: pd.DataFrame) -> float | None:
    """Accuracy of ``logits`` on ``df``'s labelled rows (None without any)."""
    labels = df["label"].to_numpy()
    labelled = labels >= 0
    if not labelled.any():
        return None
    return float((logits.argmax(-1).numpy() == labels)[labelled].mean())
