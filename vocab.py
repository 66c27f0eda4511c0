"""The student's tokenizers, trained on the training split with the ``tokenizers`` library, saved to
``tokenizer/vocab_size_N/`` (WordPiece) or ``tokenizer/<kind>_vocab_size_N/``, loaded and reused while they
match the texts they were trained on.

Kinds (TOKENIZER_KINDS): ``wordpiece`` (BERT's), ``sentencepiece-unigram`` and ``sentencepiece-bpe``
(SentencePiece's models over Metaspace words: spaces become ``▁``), and ``kiwi``: WordPiece over the Kiwi
morphemes of each text (kiwipiepy). A Python pre-tokenizer cannot live in tokenizer.json, so a Kiwi folder
says so in tokenizer_config.json (``"pretokenizer": {"name": "kiwi", "kiwipiepy": ..., "model_type": ...}``)
and ``pretokenizer`` returns that split: model.py's one encode path applies it in training and every backend.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from corpus import data_fingerprint, text_normalizer
from utils import CorruptFileError, atomic_dir, first_line, logger, remove_stale_temporaries

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOKENIZER_KINDS = ("wordpiece", "sentencepiece-unigram", "sentencepiece-bpe", "kiwi")
DEFAULT_KIND = "wordpiece"
METASPACE = "\u2581"  # ▁, SentencePiece's mark of a space
KIND_NAMES = {
    "wordpiece": "WordPiece",
    "sentencepiece-unigram": "SentencePiece unigram",
    "sentencepiece-bpe": "SentencePiece BPE",
    "kiwi": "WordPiece over Kiwi morphemes",
}
KIWI_MODEL_TYPE = "cong"  # Kiwi's language model for new tokenizers (a folder records the one it used)
PROGRESS_TEXTS = 10_000  # Kiwi splits this many texts or more (about 5 s on one core) behind a progress bar


class MissingPackageError(ModuleNotFoundError, ValueError):
    """A package a saved tokenizer needs is not installed (a ValueError too: the CLIs print one line)."""


def tokenizer_dir(vocab_size: int, root: str | Path = "tokenizer", kind: str = DEFAULT_KIND) -> Path:
    """Directory of the tokenizer of a given kind and vocab size: ``tokenizer/vocab_size_N`` (WordPiece),
    ``tokenizer/<kind>_vocab_size_N`` (the others)."""
    prefix = "" if _check_kind(kind) == DEFAULT_KIND else f"{kind}_"
    return Path(root) / f"{prefix}vocab_size_{vocab_size}"


def _check_kind(kind: str) -> str:
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of: {', '.join(TOKENIZER_KINDS)}")
    return kind


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


def _wordpiece_tokenizer(vocab: dict[str, int], pretokenizer: dict | None = None):
    """A fresh transformers tokenizer of ``vocab``: the ##c tokens were special only for training."""
    backend = _blank_wordpiece(vocab)
    backend.add_special_tokens(SPECIAL_TOKENS)
    return _fast_tokenizer(backend, pretokenizer)


def _fast_tokenizer(backend, pretokenizer: dict | None = None):
    """The transformers tokenizer of a trained backend; ``pretokenizer`` goes into tokenizer_config.json."""
    from transformers import PreTrainedTokenizerFast

    extra = {"pretokenizer": pretokenizer} if pretokenizer else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        **extra,
    )


def train_tokenizer(
    texts: list[str],
    vocab_size: int,
    out_dir: str | Path,
    min_frequency: int = 2,
    info: dict | None = None,
    kind: str = DEFAULT_KIND,
):
    """Train a tokenizer of ``kind`` and save it (tokenizer.json, its config, vocab.txt, training.json)
    atomically. WordPiece is described here; the others in _train_sentencepiece and kiwi_morphemes.

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
    pretokenizer = kiwi_spec() if _check_kind(kind) == "kiwi" else None
    if kind.startswith("sentencepiece"):
        tokenizer = _train_sentencepiece(texts, vocab_size, min_frequency, limit_alphabet, kind)
    else:
        texts = kiwi_morphemes(texts, pretokenizer) if pretokenizer else texts
        tokenizer = _wordpiece_tokenizer(
            _train_vocab(texts, vocab_size, min_frequency, limit_alphabet), pretokenizer
        )
    training = {"kind": kind, "vocab_size": vocab_size, "limit_alphabet": limit_alphabet}
    training |= ({"pretokenizer": pretokenizer} if pretokenizer else {}) | (info or {})

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


def _train_sentencepiece(
    texts: list[str], vocab_size: int, min_frequency: int, limit_alphabet: int, kind: str
):
    """A SentencePiece-style tokenizer: this project's normaliser, Metaspace words (a space becomes ``▁``,
    punctuation stays inside words, as in SentencePiece) and a unigram or BPE model.

    The alphabet is chosen here as for WordPiece (the most frequent characters, ties by code point, plus
    ``▁``); other characters become [UNK]. The unigram trainer keeps every character it sees, so it trains
    on texts where the others are spaces. Deterministic like WordPiece: ids sorted, and the unigram scores
    fixed where they vary from call to call (see _renumbered).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    unigram = kind == "sentencepiece-unigram"
    backend = Tokenizer(models.Unigram() if unigram else models.BPE(unk_token="[UNK]"))
    backend.normalizer = text_normalizer()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    chosen = _alphabet(texts, backend.normalizer, limit_alphabet - 1)[0]
    alphabet = [METASPACE] + [c for c in chosen if c != METASPACE]
    if unigram:
        texts = _only_alphabet(texts, backend.normalizer, set(alphabet))
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            unk_token="[UNK]",
            initial_alphabet=alphabet,
            show_progress=False,
        )
    else:
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            limit_alphabet=len(alphabet),
            initial_alphabet=alphabet,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
    backend.train_from_iterator(texts, trainer, length=len(texts))
    if backend.get_vocab_size() > vocab_size:
        raise ValueError(
            f"the trained vocabulary has {backend.get_vocab_size()} tokens, more than {vocab_size}"
        )
    return _fast_tokenizer(_renumbered(backend, alphabet))


def _only_alphabet(texts: list[str], normalizer, alphabet: set[str]) -> list[str]:
    """``texts`` (NFC) with every character that normalizes to something outside ``alphabet`` (and
    whitespace) replaced by a space."""
    composed = [unicodedata.normalize("NFC", text) for text in texts]
    table = {
        ord(c): " "
        for c in set("".join(composed))
        if not all(n in alphabet or n.isspace() for n in normalizer.normalize_str(c))
    }
    return [text.translate(table) for text in composed]


def _renumbered(backend, alphabet: list[str]):
    """A trained unigram or BPE backend with sorted ids (see _sorted_vocab) and unigram scores made
    deterministic: see _required_char_scores, and rounded to 6 decimals (sums of floats in an order that
    varies from call to call differ in their last bits)."""
    from tokenizers import Tokenizer

    data = json.loads(backend.to_str())
    model = data["model"]
    if model["type"] == "Unigram":
        scores = _required_char_scores(dict(model["vocab"]), alphabet)
        ids = _sorted_vocab({piece: i for i, (piece, _) in enumerate(model["vocab"])})
        model["vocab"] = [[piece, round(scores[piece], 6)] for piece in ids]
        model["unk_id"] = ids["[UNK]"]
    else:
        model["vocab"] = _sorted_vocab(model["vocab"])
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


REQUIRED_CHAR_STEP = 1e-4  # the unigram trainer's score step between the characters it adds back


def _required_char_scores(scores: dict[str, float], alphabet: list[str]) -> dict[str, float]:
    """``scores`` with the characters the unigram trainer added back in a random order given those scores
    in alphabet order: the most frequent character the highest.

    The trainer keeps every character: one its model pruned comes back with the lowest score plus
    REQUIRED_CHAR_STEP times its place in a walk over a hash set, whose order changes from call to call.
    """
    low = min(score for piece, score in scores.items() if piece not in SPECIAL_TOKENS)
    steps = {c: (scores[c] - low) / REQUIRED_CHAR_STEP for c in alphabet if c in scores}
    added = [c for c, step in steps.items() if abs(step - round(step)) < 1e-6 and step < len(alphabet)]
    return scores | dict(zip(added, sorted((scores[c] for c in added), reverse=True)))


# -----------------------------------------------------------------------------
# Kiwi morphemes: the pre-tokenizer that a folder names in tokenizer_config.json

_KIWI_LOCK = threading.Lock()  # Kiwi objects are made once per process and analyse one call at a time
_KIWI: dict[str, object] = {}


def kiwi_spec() -> dict:
    """What a Kiwi tokenizer folder records: the pre-tokenizer, the kiwipiepy version and its model."""
    return {"name": "kiwi", "kiwipiepy": _import_kiwipiepy().__version__, "model_type": KIWI_MODEL_TYPE}


def _import_kiwipiepy():
    try:
        import kiwipiepy
    except ImportError:
        raise MissingPackageError(
            "this tokenizer splits texts into Kiwi morphemes first (tokenizer_config.json: pretokenizer "
            "kiwi), but kiwipiepy is not installed: pip install kiwipiepy"
        ) from None
    return kiwipiepy


def _kiwi(model_type: str):
    """The process's Kiwi analyser of ``model_type``, created on first use."""
    with _KIWI_LOCK:
        if model_type not in _KIWI:
            _KIWI[model_type] = _import_kiwipiepy().Kiwi(num_workers=1, model_type=model_type)
        return _KIWI[model_type]


def kiwi_morphemes(texts: list[str], spec: dict) -> list[str]:
    """Each text as its Kiwi morphemes' forms joined by spaces (``재밌었어요`` -> ``재밌 었 어요``); a text
    without morphemes stays as it is."""
    kiwi = _kiwi(spec.get("model_type", KIWI_MODEL_TYPE))
    texts = list(texts)
    quiet = True if len(texts) < PROGRESS_TEXTS else None  # None: a bar on a terminal only (tqdm)
    with _KIWI_LOCK:
        results = tqdm(
            kiwi.tokenize(texts), total=len(texts), desc="Kiwi morphemes", unit="text", disable=quiet
        )
        analysed = [" ".join(token.form for token in tokens) for tokens in results]
    return [morphemes or text for morphemes, text in zip(analysed, texts)]


def pretokenizer(tokenizer) -> Callable[[list[str]], list[str]] | None:
    """What turns texts into the input of ``tokenizer``'s tokenizer.json: None (the texts themselves), or
    the Kiwi morpheme split its tokenizer_config.json names. MissingPackageError without kiwipiepy."""
    spec = tokenizer.init_kwargs.get("pretokenizer")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("name") != "kiwi":
        raise ValueError(f"unknown pretokenizer {spec!r} in tokenizer_config.json (known: kiwi)")
    version = _import_kiwipiepy().__version__
    if spec.get("kiwipiepy") != version:
        logger.warning(f"tokenizer trained with kiwipiepy {spec.get('kiwipiepy')}, {version} installed")
    return lambda texts: kiwi_morphemes(texts, spec)


def pretokenize(tokenizer, texts: list[str]) -> list[str]:
    """``texts`` as ``tokenizer`` reads them (see pretokenizer), e.g. for ``tokenizer.tokenize``."""
    split = pretokenizer(tokenizer)
    return split(texts) if split else list(texts)


def kind_of(tokenizer) -> str:
    """The kind (TOKENIZER_KINDS) of a tokenizer trained here: its pre-tokenizer, else its model."""
    if tokenizer.init_kwargs.get("pretokenizer"):
        return "kiwi"
    model = type(tokenizer.backend_tokenizer.model).__name__
    return {"Unigram": "sentencepiece-unigram", "BPE": "sentencepiece-bpe"}.get(model, DEFAULT_KIND)


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


def get_tokenizer(
    train: pd.DataFrame,
    vocab_size: int,
    dataset: str,
    root: str | Path = "tokenizer",
    kind: str = DEFAULT_KIND,
):
    """Reuse the ``kind`` tokenizer folder of ``vocab_size`` (see tokenizer_dir) when it was trained on these
    very texts, else (re)train it (seconds; a minute or two for Kiwi and the unigram model on NSMC).

    A shared tokenizer folder that cannot be read (corrupt or truncated tokenizer.json or training.json, or
    a vocabulary whose hash differs from the one recorded) is derived data: it is trained again, with a
    warning.
    """
    directory = tokenizer_dir(vocab_size, root, kind)
    remove_stale_temporaries(root)
    fingerprint = data_fingerprint(train)  # ids and texts only: a tokenizer never sees labels
    meta_path = directory / "training.json"
    if meta_path.is_file() or (directory / "tokenizer.json").is_file():
        try:
            meta = _read_json(meta_path)
            if meta.get("fingerprint") == fingerprint and meta.get("kind", DEFAULT_KIND) == kind:
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
    logger.info(
        f"training a {KIND_NAMES[kind]} tokenizer with {vocab_size} tokens on {len(train):,} {dataset} texts"
    )
    info = {"dataset": dataset, "num_texts": len(train), "fingerprint": fingerprint}
    return train_tokenizer(train["text"].tolist(), vocab_size, directory, info=info, kind=kind)


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``CorruptFileError`` naming the file if it is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{path} is corrupt or truncated ({err})") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path} does not hold a JSON object")
    return value
