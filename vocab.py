"""The student's tokenizers: WordPiece vocabularies of any size trained on the training split, saved to
``tokenizer/vocab_size_N/``, loaded and reused while they match the texts they were trained on.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import unicodedata
from pathlib import Path

import pandas as pd

from corpus import data_fingerprint, text_normalizer
from utils import CorruptFileError, atomic_dir, first_line, logger, remove_stale_temporaries

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer_dir(vocab_size: int, root: str | Path = "tokenizer") -> Path:
    """Directory of the tokenizer of a given vocab size: ``tokenizer/vocab_size_N``."""
    return Path(root) / f"vocab_size_{vocab_size}"


def _blank_wordpiece(vocab: dict[str, int] | None = None):
    """A WordPiece backend (of ``vocab``, else untrained) with this project's normaliser and pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = text_normalizer()
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
            f"{path} is corrupt or truncated ({first_line(err)}); restore the folder from a copy, "
            f"or delete {directory} and train the tokenizer again (`python distil.py tokenizer`)"
        ) from None


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
    fingerprint = data_fingerprint(train)  # ids and texts only: a tokenizer never sees labels
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
