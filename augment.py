"""Transfer-set augmentation for Korean: Tang et al.'s three rules on morphemes (kiwipiepy).

    python distil.py augment --dataset nsmc --data-dir ../shared/data/nsmc --out augmented.txt [--n-iter 2]

Each training sentence is split into morphemes with Kiwi; each morpheme is masked with probability
``p_mask`` or, with probability ``p_pos``, replaced by another morpheme of the same POS tag drawn from the
training corpus's frequency distribution for that tag; Kiwi's ``join`` rebuilds the sentence (choosing
allomorphs such as 이/가) and, with probability ``p_ng``, only a random n-gram of 1 to ``ngram_max`` words
is kept. ``n_iter`` samples per sentence, deduplicated, never equal to a train, valid or test text, are
written one per line: the file ``--unlabeled`` reads, for the teacher to label through the logits cache.
(Tang, Lu, Liu, Mou, Vechtomova, Lin 2019, "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks", section 3.2.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import corpus
import utils
from settings import setting, validate_fields

logger = logging.getLogger("distilkobilstm")

Morph = tuple[str, str, bool]  # (form, POS tag, a space before it)


@dataclass
class AugmentConfig:
    """How the transfer set is generated from the training sentences."""

    n_iter: int = setting(2, "samples drawn per training sentence (before deduplication)", bounds="[1, 1000]")
    p_mask: float = setting(0.1, "probability that a morpheme becomes the mask token", bounds="[0, 1]")
    p_pos: float = setting(
        0.1, "probability that a morpheme is replaced by another of the same POS tag", bounds="[0, 1]"
    )
    p_ng: float = setting(0.25, "probability that only a random n-gram of words is kept", bounds="[0, 1]")
    ngram_max: int = setting(5, "longest n-gram (in words) kept by n-gram sampling", bounds="[1, 100]")
    mask_token: str = setting(
        "[MASK]",
        "the mask token: [MASK] for the students and BiLSTM teachers, a transformer teacher's own mask_token",
    )
    seed: int = setting(
        42, "random seed: the same seed and data give the same file", bounds="[0, 4294967295]"
    )
    threads: int = setting(1, "Kiwi analysis threads", bounds="[1, 256]")
    max_sentences: int | None = setting(
        None, "augment only the first N training sentences (default: all)", bounds="[1, inf)"
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.p_mask + self.p_pos > 1.0:
            raise ValueError(f"p_mask + p_pos must be <= 1, got {self.p_mask} + {self.p_pos}")
        if not self.mask_token or self.mask_token != "".join(self.mask_token.split()):
            raise ValueError(
                f"mask_token (--mask-token) must be a non-empty word without spaces, got {self.mask_token!r}"
            )


# ---------------------------------------------------------------------------------------------------------
# Morphemes
# ---------------------------------------------------------------------------------------------------------


def make_kiwi(threads: int = 1):
    """A Kiwi analyser with ``threads`` analysis threads."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=threads)


def _morphs(tokens) -> list[Morph]:
    return [(t.form, t.tag, i > 0 and tokens[i - 1].end < t.start) for i, t in enumerate(tokens)]


def analyse(kiwi, texts: Sequence[str]) -> Iterator[list[Morph]]:
    """Morphemes of each text, in order (lazily)."""
    return (_morphs(tokens) for tokens in kiwi.tokenize(list(texts)))


class PosTable:
    """For each POS tag, the forms seen with it in a corpus and their frequencies, for sampling."""

    def __init__(self, counts: dict[str, Counter]):
        self.forms = {tag: list(counter) for tag, counter in counts.items()}
        self.cumulative = {
            tag: np.cumsum(list(counter.values()), dtype=np.float64) for tag, counter in counts.items()
        }

    @classmethod
    def from_sentences(cls, sentences: Iterable[list[Morph]]) -> PosTable:
        counts: dict[str, Counter] = {}
        for morphs in sentences:
            for form, tag, _ in morphs:
                counts.setdefault(tag, Counter())[form] += 1
        return cls(counts)

    def sample(self, tag: str, other_than: str, rng: np.random.Generator, tries: int = 20) -> str | None:
        """A form of ``tag`` drawn by corpus frequency, other than ``other_than``; None if there is none."""
        forms, cumulative = self.forms.get(tag), self.cumulative.get(tag)
        if not forms or (len(forms) == 1 and forms[0] == other_than):
            return None
        for _ in range(tries):
            form = forms[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]
            if form != other_than:
                return form
        return None


# ---------------------------------------------------------------------------------------------------------
# The three rules
# ---------------------------------------------------------------------------------------------------------


def perturb(
    morphs: list[Morph], cfg: AugmentConfig, table: PosTable, rng: np.random.Generator
) -> list[Morph]:
    """Masking and POS-guided replacement: one uniform draw per morpheme decides which (if any) applies."""
    draws = rng.random(len(morphs))
    out = []
    for (form, tag, space), x in zip(morphs, draws):
        if x < cfg.p_mask:
            form = cfg.mask_token
        elif x < cfg.p_mask + cfg.p_pos:
            form = table.sample(tag, form, rng) or form
        out.append((form, tag, space))
    return out


def rebuild(kiwi, morphs: list[Morph], mask_token: str) -> str:
    """The sentence Kiwi's ``join`` makes of ``morphs``. An ending that joins a masked stem comes out as a
    bare jamo (``[MASK]ᆫ다``); the mask takes it in (``[MASK]다``)."""
    return re.sub(re.escape(mask_token) + "[\u1100-\u11ff]+", lambda _: mask_token, kiwi.join(morphs))


def ngram_sample(text: str, cfg: AugmentConfig, rng: np.random.Generator) -> str:
    """With probability ``p_ng``, a random n-gram of n in [1, ngram_max] words of ``text``; else ``text``."""
    words = text.split()
    if rng.random() >= cfg.p_ng or not words:
        return " ".join(words)
    n = min(int(rng.integers(1, cfg.ngram_max + 1)), len(words))
    start = int(rng.integers(0, len(words) - n + 1))
    return " ".join(words[start : start + n])


def augment_texts(
    texts: Sequence[str], cfg: AugmentConfig, exclude: Iterable[str] = (), kiwi=None
) -> list[str]:
    """``cfg.n_iter`` samples per text, deduplicated in order of generation, none equal to a text of
    ``texts`` or ``exclude`` (compared with whitespace collapsed).

    The POS distributions come from ``texts``.
    """
    kiwi = kiwi if kiwi is not None else make_kiwi(cfg.threads)
    texts = list(texts)[: cfg.max_sentences]
    analysed = analyse(kiwi, texts)
    sentences = list(tqdm(analysed, total=len(texts), desc="morphemes", unit="text", disable=None))
    table = PosTable.from_sentences(sentences)
    seen = {" ".join(t.split()) for t in [*texts, *exclude]}
    rng = np.random.default_rng(cfg.seed)
    out = []
    for morphs in tqdm(sentences, desc="augmenting", unit="text", disable=None):
        if not morphs:
            continue
        for _ in range(cfg.n_iter):
            sample = ngram_sample(rebuild(kiwi, perturb(morphs, cfg, table, rng), cfg.mask_token), cfg, rng)
            if sample and sample not in seen:
                seen.add(sample)
                out.append(sample)
    return out


def augment_dataset(cfg: AugmentConfig, splits: dict, out: str | Path) -> Path:
    """Augment the labeled rows of ``splits["train"]`` into the text file ``out``; no split's text recurs."""
    train = splits["train"]
    texts = train.loc[train["label"] >= 0, "text"].tolist()
    exclude = [t for name, df in splits.items() for t in df["text"]]
    start = time.perf_counter()
    samples = augment_texts(texts, cfg, exclude)
    if not samples:
        raise ValueError("augmentation produced no new text: raise n_iter or the probabilities")
    utils.atomic_write_text(out, "\n".join(samples) + "\n")
    used = min(len(texts), cfg.max_sentences or len(texts))
    logger.info(
        f"{len(samples):,} augmented texts from {used:,} training sentences written to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return Path(out)


def augmented_file(cfg: AugmentConfig, splits: dict, data_root: str | Path, dataset: str) -> Path:
    """The augmented transfer set of these settings and training data: ``<data_root>/<dataset>-augmented-
    <hash8>.txt``, the hash over every setting that changes the text and the training data's fingerprint;
    written once (atomically) and reused after."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threads"}  # threads: speed only
    key = json.dumps([settings, corpus.data_fingerprint(splits["train"])], sort_keys=True)
    path = Path(data_root) / f"{dataset}-augmented-{hashlib.sha256(key.encode()).hexdigest()[:8]}.txt"
    if path.is_file():
        logger.info(f"reusing the augmented transfer set {path} (same settings and training data)")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return augment_dataset(cfg, splits, path)
