"""The teacher: find it, fine-tune it (transformers Trainer), turn texts into its logits and cache them.

Only the teacher's logits are used for distillation, so any Hugging Face sequence-classification
architecture can teach (BERT, RoBERTa, DistilBERT, ELECTRA, BigBird, BART, GPT-2, XLNet, T5, KoBERT, ...),
and so can a saved BiLSTM student (a ``large`` student teaching a ``tiny`` one). Architecture quirks are
handled in one place, ``load_classifier``, used by both fine-tuning and inference.

A fine-tuned teacher lives in ``<root>/<short-name>-<dataset>-<hash8>``: the hash covers its base model,
every fine-tuning setting and the data, so other settings never reuse it. Its logits are cached in
``<teacher>/logits/`` (``logits_cache.LogitsCache``), checked against its weights and every example's text.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import pickle
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import sentencepiece as spm
import torch
import torch.distributed as dist
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizer,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.integrations import TensorBoardCallback
from transformers.models.auto import modeling_auto
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging as hf_logging

import corpus
import logits_cache
import utils
from model import Student, count_parameters, display_name, is_student_dir, student_labels
from settings import setting, validate_fields

logger = utils.logger

TEACHER_INFO = "teacher.json"
PARTIAL_INFO = "identity.json"  # in <root>/.<teacher>.partial/: what the checkpoints there belong to

# The weight files of a transformers model directory, in order of preference: the one place that knows them.
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")
# Files fetched from the Hub: configs, vocabularies and SentencePiece models, then one weight format.
_HUB_TEXT_FILES = ["*.json", "*.txt", "*.model"]

# RoBERTa-style embeddings number positions from pad_token_id + 1, so they hold fewer tokens than
# max_position_embeddings.
_OFFSET_POSITION_MODELS = {
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "roberta-prelayernorm",
    "data2vec-text",
    "xmod",
}
# T5 activations overflow in float16 (NaN logits); these run in bfloat16 or float32 only.
_FP16_UNSAFE_MODELS = {"t5", "mt5", "umt5"}


# ---------------------------------------------------------------------------------------------------------
# Locating a teacher
# ---------------------------------------------------------------------------------------------------------


def _local_dir(name_or_dir: str, root: str | Path) -> Path | None:
    """``name_or_dir`` itself, or ``root/name_or_dir``, when that is a directory."""
    for candidate in (Path(name_or_dir), Path(root) / name_or_dir):
        if candidate.is_dir():
            return candidate
    return None


def weight_files(model_dir: str | Path) -> list[Path]:
    """The weight files of a transformers model directory (``WEIGHT_PATTERNS``), sorted."""
    return sorted(path for pattern in WEIGHT_PATTERNS for path in Path(model_dir).glob(pattern))


def _check_hub_name(name: str) -> None:
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"teacher {name!r} is neither a local directory nor a Hugging Face Hub model name"
        ) from None


def resolve_teacher(name_or_dir: str, root: str | Path = "teacher_model") -> Path:
    """Local model directory for a teacher given as a directory, a name under ``root`` or a Hub model name.

    Hub models are downloaded with ``huggingface_hub.snapshot_download`` into the normal Hugging Face cache
    (configs, vocabularies and one weight format); a cached model is found again without a network.
    """
    local = _local_dir(name_or_dir, root)
    if local is not None:
        return local
    _check_hub_name(name_or_dir)
    try:
        path = Path(snapshot_download(name_or_dir, allow_patterns=[*_HUB_TEXT_FILES, WEIGHT_PATTERNS[0]]))
        if not weight_files(path):
            path = Path(snapshot_download(name_or_dir, allow_patterns=[*_HUB_TEXT_FILES, WEIGHT_PATTERNS[1]]))
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"teacher {name_or_dir!r} is not a local directory and the Hugging Face Hub has no model by that "
            "name (or it is private or gated: log in with `hf auth login`)"
        ) from None
    except LocalEntryNotFoundError as err:  # also an incomplete cached snapshot
        raise FileNotFoundError(
            f"cannot download teacher {name_or_dir!r}: the Hugging Face Hub is unreachable and the model is "
            f"not in the local cache. Pass a local model directory instead (a copy of {name_or_dir} or a "
            f"fine-tuned teacher under {root}/), or connect once to cache it. ({type(err).__name__})"
        ) from None
    if not weight_files(path):
        raise FileNotFoundError(
            f"teacher {name_or_dir!r} on the Hub has no PyTorch weights ({' or '.join(WEIGHT_PATTERNS)})"
        )
    logger.info(f"teacher {name_or_dir} resolved to {path}")
    return path


def teacher_cache_dir(name_or_dir: str, root: str | Path = "teacher_model") -> Path:
    """Where the teacher's logits cache lives: ``<model dir>/logits``, or ``<root>/hub--<org>--<name>/logits``
    for a Hub model."""
    local = _local_dir(name_or_dir, root)
    if local is not None:
        return local / "logits"
    _check_hub_name(name_or_dir)
    return Path(root) / f"hub--{name_or_dir.replace('/', '--')}" / "logits"


def teacher_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 over config.json and the weight files (names and contents), without loading the model."""
    model_dir = Path(model_dir)
    if is_sklearn_dir(model_dir):
        return _files_fingerprint(model_dir)
    weights = weight_files(model_dir)
    if not (model_dir / "config.json").is_file() or not weights:
        raise FileNotFoundError(
            f"{model_dir} is not a model directory (it needs config.json and {' or '.join(WEIGHT_PATTERNS)})"
        )
    digest = hashlib.sha256()
    for path in [model_dir / "config.json", *weights]:
        digest.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _damaged(path: Path, model_dir: Path, err: Exception) -> ValueError:
    """The one-line error for a truncated or corrupt file of a model directory, with the fix."""
    if (model_dir / TEACHER_INFO).is_file():
        fix = f"delete {model_dir} and fine-tune the teacher again"
    else:
        fix = f"delete {model_dir} (for a Hub model: `hf cache delete`) and download or copy it again"
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"{path} is truncated or corrupt ({reason}): {fix}")


def check_weights(model_dir: str | Path) -> None:
    """Read the header of every safetensors weight file: a truncated or corrupt one is a one-line error."""
    model_dir = Path(model_dir)
    for path in weight_files(model_dir):
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt"):
                    pass
            except (SafetensorError, OSError) as err:
                raise _damaged(path, model_dir, err) from None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" / "Writing model shards" bars and no loading reports while loading or saving."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------------------
# KoBERT's tokenizer
# ---------------------------------------------------------------------------------------------------------


_KOBERT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


class KoBertTokenizer(PreTrainedTokenizer):
    """KoBERT's SentencePiece tokenizer, read from the files KoBERT checkpoints ship.

    * monologg/kobert, monologg/distilkobert: ``tokenizer_78b3253a26.model`` + ``vocab.txt``; token ids come
      from vocab.txt. Their own ``KoBertTokenizer`` (a file to copy) fails on transformers >= 4.34 with
      ``'token2idx'`` errors; ``AutoTokenizer`` reads vocab.txt as WordPiece, so Korean words become [UNK].
    * skt/kobert-base-v1: ``spiece.model``; token ids are the SentencePiece ids. Its tokenizer_config names
      ``XLNetTokenizer``, which ``AutoTokenizer`` builds with XLNet's ``<sep> <cls>`` ending and left padding;
      the working ``kobert_tokenizer`` package must be installed from git.

    Sequences are ``[CLS] text [SEP]``, as KoBERT was pre-trained; no other package is needed.
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"sp_model_file": "spiece.model", "vocab_txt": "vocab.txt"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "token_type_ids", "attention_mask"]

    def __init__(self, sp_model_file: str | Path, vocab_txt: str | Path | None = None, **kwargs):
        self.sp_model_file = Path(sp_model_file)
        self.vocab_txt = Path(vocab_txt) if vocab_txt is not None else None
        self.sp_model = spm.SentencePieceProcessor(model_file=str(self.sp_model_file))
        if self.vocab_txt is not None:
            self.pieces = [line.strip() for line in self.vocab_txt.read_text(encoding="utf-8").splitlines()]
        else:
            self.pieces = [self.sp_model.id_to_piece(i) for i in range(self.sp_model.get_piece_size())]
        self.piece_ids = {piece: i for i, piece in enumerate(self.pieces)}
        super().__init__(special_tokens_pattern="cls_sep", **{**_KOBERT_SPECIAL_TOKENS, **kwargs})

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def get_vocab(self) -> dict[str, int]:
        return {**self.piece_ids, **self._added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.piece_ids.get(token, self.unk_token_id)

    def _convert_id_to_token(self, index: int) -> str:
        return self.pieces[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp_model.decode_pieces(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Copy the SentencePiece model (and vocab.txt) under their original names: the same layout loads
        again."""
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        saved = [Path(save_directory) / f"{prefix}{self.sp_model_file.name}"]
        shutil.copyfile(self.sp_model_file, saved[0])
        if self.vocab_txt is not None:
            saved.append(Path(save_directory) / f"{prefix}vocab.txt")
            saved[-1].write_text("".join(piece + "\n" for piece in self.pieces), encoding="utf-8")
        return tuple(str(p) for p in saved)


def _kobert_files(model_dir: Path, config: PretrainedConfig) -> tuple[Path, Path | None] | None:
    """(SentencePiece model, vocab.txt or None) when ``model_dir`` is a BERT with KoBERT's tokenizer files."""
    if config.model_type not in ("bert", "distilbert"):
        return None
    sp_models = sorted(model_dir.glob("*.model"))
    if len(sp_models) != 1:
        return None
    vocab_txt = model_dir / "vocab.txt"
    return sp_models[0], vocab_txt if vocab_txt.is_file() else None


# ---------------------------------------------------------------------------------------------------------
# Preparing any model for classification: every architecture quirk lives here
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TextEncoder:
    """Turns texts into the inputs one classifier needs; made by ``load_classifier``."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int
    input_names: tuple[str, ...]
    eos_token_id: int | None  # encoder-decoder classifiers pool the hidden state of the final <eos>

    def encode(self, texts: Sequence[str]) -> list[dict[str, list[int]]]:
        """Unpadded model inputs per text, truncated to ``max_length`` tokens."""
        texts = _check_texts(texts)
        if not texts:
            return []
        encoded = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_token_type_ids="token_type_ids" in self.input_names,
            return_attention_mask=True,
        )
        features = [{name: encoded[name][i] for name in self.input_names} for i in range(len(texts))]
        empty = [i for i, f in enumerate(features) if not f["input_ids"]]
        if empty:
            raise ValueError(
                f"{len(empty)} texts give no tokens (e.g. texts[{empty[0]}] = {texts[empty[0]]!r}); "
                "drop them first"
            )
        if self.eos_token_id is not None:
            features = [self._end_with_eos(f["input_ids"]) for f in features]
        return features

    def _end_with_eos(self, ids: list[int]) -> dict[str, list[int]]:
        # Exactly one <eos>, at the end: KoBART's tokenizer adds none, and a literal "</s>" in a text adds
        # another.
        ids = [*[i for i in ids if i != self.eos_token_id][: self.max_length - 1], self.eos_token_id]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def collate(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest member (on the side the model needs)."""
        return self.tokenizer.pad(features, return_tensors="pt")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__} ({text!r}), expected str")
    return texts


_JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _read_json(path: Path, model_dir: Path) -> dict:
    """A JSON object from a model directory; a truncated or corrupt file is a one-line error with the fix."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _damaged(path, model_dir, err) from None
    if not isinstance(raw, dict):
        raise _damaged(path, model_dir, ValueError(f"a JSON object was expected, not {type(raw).__name__}"))
    return raw


def _check_files(model_dir: Path) -> None:
    """Every JSON file and safetensors header of a model directory reads: damage is named before loading."""
    for name in _JSON_FILES:
        if (model_dir / name).is_file():
            _read_json(model_dir / name, model_dir)
    check_weights(model_dir)


def _load_weights(
    model_dir: Path, config: PretrainedConfig, fresh_head: bool
) -> tuple[PreTrainedModel, dict]:
    """The float32 classifier and its loading report, quietly; a damaged .bin file is a one-line error."""
    try:
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(
                model_dir,
                config=config,
                dtype=torch.float32,
                output_loading_info=True,
                ignore_mismatched_sizes=fresh_head,
            )
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        bins = [path for path in weight_files(model_dir) if path.suffix == ".bin"]
        if not bins:
            raise
        raise _damaged(bins[0], model_dir, err) from None


def _load_config(model_dir: Path) -> PretrainedConfig:
    """AutoConfig, also for old uploads whose config.json has no ``model_type`` (inferred from
    ``architectures``)."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: not a transformers model directory")
    raw = _read_json(config_path, model_dir)
    if "model_type" in raw:
        return AutoConfig.from_pretrained(model_dir)
    class_to_type = {
        cls_name: model_type
        for mapping in (
            modeling_auto.MODEL_MAPPING_NAMES,
            modeling_auto.MODEL_FOR_PRETRAINING_MAPPING_NAMES,
            modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
            modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        )
        for model_type, cls_name in mapping.items()
        if isinstance(cls_name, str)
    }
    model_types = {class_to_type.get(arch) for arch in raw.get("architectures") or []} - {None}
    if len(model_types) != 1:
        raise ValueError(
            f"{config_path} has no model_type and its architectures {raw.get('architectures')} "
            "do not name one"
        )
    logger.info(f"{config_path} has no model_type; using {next(iter(model_types))!r} from its architectures")
    return AutoConfig.for_model(model_types.pop(), **raw)


def _load_tokenizer(model_dir: Path, config: PretrainedConfig) -> PreTrainedTokenizerBase:
    kobert = _kobert_files(model_dir, config)
    if kobert is not None:
        return KoBertTokenizer(*kobert)
    return AutoTokenizer.from_pretrained(model_dir)


def _set_pad_token(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> None:
    """GPT-2 style tokenizers have no padding token: use the model's pad id, else <eos>."""
    if tokenizer.pad_token is None:
        for token_id in (config.pad_token_id, config.eos_token_id):
            if isinstance(token_id, int) and token_id < len(tokenizer):
                tokenizer.pad_token = tokenizer.convert_ids_to_tokens(token_id)
                break
        else:
            if tokenizer.eos_token is None:
                raise ValueError(
                    f"the tokenizer of {config.name_or_path} has no padding or end-of-sequence token"
                )
            tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id


def _max_input_length(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase, requested: int) -> int:
    """``requested``, capped by the positions the model has (none for relative positions: XLNet, T5)."""
    if requested < 2:
        raise ValueError(f"max_length must be at least 2, got {requested}")
    limits = [requested]
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if config.model_type in _OFFSET_POSITION_MODELS:
            positions -= config.pad_token_id + 1
        limits.append(positions)
    if tokenizer.model_max_length < 1_000_000:  # tokenizers without a limit report a huge number
        limits.append(tokenizer.model_max_length)
    return min(limits)


def _input_names(model: PreTrainedModel, config: PretrainedConfig) -> tuple[str, ...]:
    """The inputs the model takes; token_type_ids only where it has more than one token type."""
    accepted = set(inspect.signature(model.forward).parameters)
    if (
        getattr(config, "type_vocab_size", 2) <= 1
    ):  # RoBERTa, e.g. klue/roberta whose BERT tokenizer returns them
        accepted.discard("token_type_ids")
    return tuple(name for name in ("input_ids", "token_type_ids", "attention_mask") if name in accepted)


def load_classifier(
    model_dir: str | Path,
    max_length: int = 128,
    num_labels: int | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[PreTrainedModel, TextEncoder]:
    """A float32 sequence classifier (CPU) and its ``TextEncoder``, with every architecture quirk handled.

    ``num_labels`` given: a fresh classification head for fine-tuning, its ``id2label`` the label names
    ``labels`` (default: ``corpus.default_labels``).
    Otherwise the directory must hold a fine-tuned classifier; a base model without a trained head is refused.
    """
    model_dir = Path(model_dir)
    _check_files(model_dir)
    config = _load_config(model_dir)
    if num_labels is not None:
        id2label = dict(enumerate(labels or corpus.default_labels(num_labels)))
        config.num_labels = num_labels
        config.id2label, config.label2id = id2label, {name: i for i, name in id2label.items()}
        config.problem_type = "single_label_classification"
    tokenizer = _load_tokenizer(model_dir, config)
    _set_pad_token(tokenizer, config)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"the tokenizer of {model_dir} has {len(tokenizer)} tokens but the model only "
            f"{config.vocab_size} embeddings"
        )
    # XLNet classifies from the last position: pad on the left. Everything else pads on the right; GPT-2
    # then reads the last non-padding token and keeps its absolute positions.
    tokenizer.padding_side = "left" if getattr(config, "summary_type", None) == "last" else "right"
    limit = _max_input_length(config, tokenizer, max_length)
    # BigBird: block-sparse attention needs longer inputs than this and would switch itself per batch.
    sparse = getattr(config, "attention_type", None) == "block_sparse"
    if sparse and limit <= (5 + 2 * config.num_random_blocks) * config.block_size:
        config.attention_type = "original_full"
    model, loading = _load_weights(model_dir, config, fresh_head=num_labels is not None)
    if num_labels is None and loading["missing_keys"]:
        raise ValueError(
            f"{model_dir} is not a fine-tuned classifier (untrained weights: "
            f"{', '.join(sorted(loading['missing_keys'])[:4])}); "
            "fine-tune it first with `python distil.py teacher --model ...`"
        )
    eos_token_id = config.eos_token_id if config.is_encoder_decoder else None
    if config.is_encoder_decoder and not isinstance(eos_token_id, int):
        raise ValueError(f"{model_dir}: an encoder-decoder classifier needs eos_token_id in its config")
    return model, TextEncoder(tokenizer, limit, _input_names(model, config), eos_token_id)


def _mixed_precision(device: torch.device, config: PretrainedConfig) -> torch.dtype | None:
    """bfloat16 where the GPU has it, else float16 (not for T5), on CUDA only."""
    if device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None if config.model_type in _FP16_UNSAFE_MODELS else torch.float16


# ---------------------------------------------------------------------------------------------------------
# Devices and processes
# ---------------------------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> torch.device:
    """``utils.get_device``, checked, with this process's GPU under ``torchrun`` (``LOCAL_RANK``)."""
    resolved = utils.get_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for CUDA, but torch sees no GPU: use --device cpu")
        if resolved.index is None and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
            resolved = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{resolved} does not exist ({torch.cuda.device_count()} GPUs): start one process per GPU"
            )
    return resolved


def _rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _world(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the launcher's process group (torchrun sets WORLD_SIZE) if none is up yet."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _rank_and_world()


def _is_main_process() -> bool:
    return _rank_and_world()[0] == 0


def _barrier() -> None:
    if _rank_and_world()[1] > 1:
        dist.barrier()


def _gather_shards(local: torch.Tensor, total: int, world: int) -> torch.Tensor:
    """Every rank's ``texts[rank::world]`` logits, merged back into input order on every rank."""
    per_rank = math.ceil(total / world)
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    padded = torch.zeros(per_rank, local.shape[1], dtype=torch.float32, device=device)
    padded[: len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    merged = torch.empty(total, local.shape[1], dtype=torch.float32)
    for rank, part in enumerate(parts):
        merged[rank::world] = part[: len(range(rank, total, world))].cpu()
    return merged


# ---------------------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------------------


class Teacher(abc.ABC):
    """A model that turns texts into classification logits."""

    def __init__(self, name: str, model_dir: Path, num_labels: int, max_length: int, device: torch.device):
        self.name = name
        self.model_dir = model_dir
        self.num_labels = num_labels
        self.max_length = max_length
        self.device = device

    def predict_logits(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = True
    ) -> torch.Tensor:
        """float32 logits ``[N, num_labels]`` on the CPU, in input order.

        Under torch.distributed (or a launcher's WORLD_SIZE > 1) each rank scores ``texts[rank::world]`` and
        every rank returns the merged result. The progress bar shows on interactive terminals only.
        """
        texts = _check_texts(texts)
        if batch_size is None:
            batch_size = 256 if self.device.type == "cuda" else 64
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rank, world = _world(self.device)
        if world == 1:
            return self._predict(texts, batch_size, show_progress)
        local = self._predict(texts[rank::world], batch_size, show_progress and rank == 0)
        return _gather_shards(local, len(texts), world)

    def _bar(self, total: int, show_progress: bool) -> tqdm:
        return tqdm(
            total=total, desc=f"teacher {self.name}", unit="text", disable=None if show_progress else True
        )

    @abc.abstractmethod
    def _predict(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        """Logits of ``texts`` computed in this process."""

    @property
    @abc.abstractmethod
    def network(self) -> torch.nn.Module:
        """The underlying torch module."""

    def num_parameters(self) -> int:
        """Number of parameters of the teacher network."""
        return count_parameters(self.network)

    def size_bytes(self) -> int:
        """Bytes of the files that hold the teacher's weights."""
        return sum(path.stat().st_size for path in weight_files(self.model_dir))


class TransformerTeacher(Teacher):
    """A Hugging Face sequence classifier."""

    def __init__(
        self, name: str, model_dir: Path, model: PreTrainedModel, encoder: TextEncoder, device: torch.device
    ):
        super().__init__(name, model_dir, model.config.num_labels, encoder.max_length, device)
        self.model = model.to(device).eval()
        self.encoder = encoder
        self.autocast_dtype = _mixed_precision(device, model.config)

    @property
    def network(self) -> torch.nn.Module:
        return self.model

    @torch.inference_mode()
    def _predict(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        features = self.encoder.encode(texts)
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
        logits = torch.empty(len(features), self.num_labels, dtype=torch.float32)
        autocast = (
            torch.autocast("cuda", self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext()
        )
        with autocast, self._bar(len(order), show_progress) as bar:
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                batch = self.encoder.collate([features[i] for i in index])
                output = self.model(**{key: value.to(self.device) for key, value in batch.items()})
                logits[index] = output.logits.float().cpu()
                bar.update(len(index))
        return logits


class StudentTeacher(Teacher):
    """A saved BiLSTM student used as the teacher of a smaller one."""

    def __init__(self, name: str, model_dir: Path, device: torch.device):
        self.student = Student.from_pretrained(model_dir, device)
        config = self.student.model.config
        super().__init__(name, model_dir, config.num_labels, config.max_length, device)

    @property
    def network(self) -> torch.nn.Module:
        return self.student.model

    def _predict(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        chunk = 64 * batch_size  # the student sorts each chunk by length; chunks drive the progress bar
        parts = [torch.empty(0, self.num_labels)]
        with self._bar(len(texts), show_progress) as bar:
            for start in range(0, len(texts), chunk):
                logits = self.student.predict_logits(texts[start : start + chunk], batch_size)
                parts.append(torch.from_numpy(logits))
                bar.update(len(parts[-1]))
        return torch.cat(parts).float()


def load_teacher(
    name_or_dir: str, device: str = "auto", max_length: int = 128, root: str | Path = "teacher_model"
) -> Teacher:
    """A fine-tuned transformers classifier or a BiLSTM student directory, ready for ``predict_logits``."""
    model_dir = resolve_teacher(name_or_dir, root)
    resolved = resolve_device(device)
    if is_student_dir(model_dir):
        return StudentTeacher(display_name(name_or_dir), model_dir, resolved)
    if is_sklearn_dir(model_dir):
        return SklearnTeacher(display_name(name_or_dir), model_dir)
    model, encoder = load_classifier(model_dir, max_length)
    return TransformerTeacher(display_name(name_or_dir), model_dir, model, encoder, resolved)


# ---------------------------------------------------------------------------------------------------------
# The logits cache: the teacher runs once per example
# ---------------------------------------------------------------------------------------------------------


def _check_name(value: str, what: str) -> str:
    """``value`` as one file-name component (no path separators, not hidden): names folders and files."""
    plain = isinstance(value, str) and bool(value) and Path(value).name == value and "\\" not in value
    if not plain or value.startswith("."):
        raise ValueError(f"{what} {value!r} must be a plain name (no '/', '\\' or leading '.')")
    return value


def cache_file(cache_dir: str | Path, dataset: str, split: str) -> Path:
    """``<teacher>/logits/<dataset>-<split>.safetensors``."""
    return Path(cache_dir) / f"{_check_name(dataset, 'dataset')}-{_check_name(split, 'split')}.safetensors"


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
        cache = logits_cache.LogitsCache.load(path)
        for key, value in expected.items():
            if cache.meta.get(key) != value:
                raise logits_cache.CacheMismatch(
                    f"{key} differs (cache {cache.meta.get(key)!r}, now {value!r})"
                )
        recorded = json.loads(cache.meta.get("labels", "null"))
        if labels is not None and recorded is not None and recorded != list(labels):
            raise logits_cache.CacheMismatch(f"it holds the labels {recorded}, the data {list(labels)}")
        logits = cache.lookup(df)
        if not bool(torch.isfinite(logits).all()):  # written before such logits were refused
            raise logits_cache.CacheMismatch("it holds NaN/Inf logits")
        return logits
    except logits_cache.CacheMismatch as err:
        if on_mismatch != "rebuild":
            raise logits_cache.CacheMismatch(
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
    load: Callable[[], Teacher] | None = None,
    labels: Sequence[str] | None = None,
) -> torch.Tensor:
    """Teacher logits for the rows of ``df`` (aligned, float32 ``[N, C]``), from the cache when it is valid.

    The cache records the teacher's weight fingerprint, its max length, the dataset and split, the label
    names and the data's fingerprint; every example is checked by id and text hash. A stale or incomplete
    cache is rebuilt (``on_mismatch="rebuild"``) or refused with ``CacheMismatch`` (``on_mismatch="error"``).
    Given the data's label names ``labels``, a teacher that predicts others is refused (``check_labels``).
    The teacher is loaded only to build the cache, by ``load`` when given (``cache_all`` passes one that loads
    it once for every split).
    """
    if on_mismatch not in ("rebuild", "error"):
        raise ValueError(f"on_mismatch must be 'rebuild' or 'error', got {on_mismatch!r}")
    model_dir = resolve_teacher(teacher, teacher_root)
    if labels is not None:
        check_labels(model_dir, labels)
    path = cache_file(teacher_cache_dir(teacher, teacher_root), dataset, split)
    expected = {"teacher_fingerprint": teacher_fingerprint(model_dir), "max_length": str(max_length)}
    logits = _cached(path, df, expected, on_mismatch, labels)
    if logits is not None:
        logger.info(f"teacher logits for {dataset}/{split} from cache {path} ({len(df):,} examples)")
        return logits
    logger.info(
        f"running the teacher {teacher} on {len(df):,} {dataset}/{split} examples (once; cached in {path})"
    )
    model = load() if load is not None else load_teacher(str(model_dir), device=device, max_length=max_length)
    logits = model.predict_logits(df["text"].tolist(), batch_size=batch_size).float().cpu()
    if len(logits) != len(df):
        raise RuntimeError(f"the teacher returned {len(logits)} rows for {len(df)} examples")
    _check_finite(logits, df, teacher, f"{dataset}/{split}")
    meta = {
        "format": logits_cache.CACHE_FORMAT,
        "teacher": str(teacher),
        "dataset": dataset,
        "split": split,
        "num_examples": str(len(df)),
        "labels": json.dumps(list(labels or teacher_labels(model_dir)), ensure_ascii=False),
        "data_fingerprint": corpus.data_fingerprint(df, labels or teacher_labels(model_dir)),
        **expected,
    }
    if _is_main_process():
        hashes = logits_cache.text_hashes(df["text"])
        logits_cache.LogitsCache(df["id"].tolist(), hashes, logits, meta).save(path)
    _barrier()
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


def cache_all(
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
    model_dir = str(resolve_teacher(teacher, teacher_root))
    load = functools.cache(lambda: load_teacher(model_dir, device=device, max_length=max_length))
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


def teacher_labels(model_dir: str | Path) -> list[str]:
    """The class names a teacher predicts, read from its files: a student's or a transformers model's
    config.json (``id2label``; ``LABEL_0``, ... when it names none), a scikit-learn teacher's teacher.json."""
    model_dir = Path(model_dir)
    if is_student_dir(model_dir):
        return student_labels(model_dir)
    info = _read_json(model_dir / (TEACHER_INFO if is_sklearn_dir(model_dir) else "config.json"), model_dir)
    count = int(info.get("num_labels") or len(info.get("id2label") or {}) or 2)
    id2label = info.get("id2label") or {str(i): f"LABEL_{i}" for i in range(count)}
    return [id2label[key] for key in sorted(id2label, key=int)]


def check_labels(model_dir: str | Path, labels: Sequence[str]) -> None:
    """Refuse (``TeacherMismatch``, one line) a teacher whose class names differ from the data's ``labels``
    (case aside); a transformers classifier without names (``LABEL_0``, ...) needs only as many classes."""
    names = teacher_labels(model_dir)
    if names == [f"LABEL_{i}" for i in range(len(names))]:
        same = len(names) == len(labels)
    else:
        same = [n.casefold() for n in names] == [n.casefold() for n in labels]
    if not same:
        raise TeacherMismatch(
            f"teacher {model_dir} predicts {' / '.join(names)}, the data has the labels "
            f"{' / '.join(labels)}: use a teacher trained on these labels (--finetune or --model tfidf-lr "
            "fits one on this data)"
        )


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


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning: settings and identity
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TeacherConfig:
    """How the teacher is fine-tuned and run: the one source of these settings for CLI, notebook and code."""

    model: str | None = setting(
        None, "pretrained HF model (Hub name or directory) to fine-tune as the teacher", flag="--model"
    )
    epochs: float = setting(3.0, "teacher fine-tuning epochs", bounds="[0, inf)", flag="--teacher-epochs")
    lr: float = setting(5e-5, "teacher learning rate", bounds="(0, 1]", flag="--teacher-lr")
    train_batch_size: int = setting(
        32, "teacher fine-tuning batch size", bounds="[1, inf)", flag="--teacher-train-batch-size"
    )
    max_steps: int = setting(
        -1,
        "stop teacher fine-tuning after this many steps (-1: the epochs decide)",
        bounds="[-1, inf)",
        flag="--teacher-max-steps",
    )
    max_length: int = setting(
        128, "tokens per text the teacher reads", bounds="[2, inf)", flag="--teacher-max-length"
    )
    seed: int = setting(
        42,
        "seed of the teacher's new classification head and data order",
        bounds="[0, 4294967295]",
        flag="--teacher-seed",
    )
    patience: int = setting(
        2,
        "stop teacher fine-tuning after this many epochs without a better validation accuracy",
        bounds="[1, inf)",
        flag="--teacher-patience",
    )
    batch_size: int | None = setting(
        None,
        "teacher inference batch size (default: 256 on GPU, 64 on CPU)",
        bounds="[1, inf)",
        flag="--teacher-batch-size",
    )

    def __post_init__(self) -> None:
        if isinstance(self.model, Path):
            self.model = str(self.model)
        validate_fields(self)
        if self.model is not None and not self.model.strip():
            raise ValueError(f"model (--model) must name a Hub model or a directory, got {self.model!r}")
        if self.max_steps == 0:
            raise ValueError("max_steps (--teacher-max-steps) must be -1 (the epochs decide) or >= 1, got 0")
        if self.epochs == 0 and self.max_steps == -1:
            raise ValueError(
                "epochs (--teacher-epochs) must be > 0 unless --teacher-max-steps is set, got 0.0"
            )


# The settings that change the fine-tuned weights (not the inference batch size).
_IDENTITY_SETTINGS = ("epochs", "lr", "train_batch_size", "max_steps", "max_length", "seed", "patience")


def _data_fingerprint(data: dict[str, pd.DataFrame]) -> str:
    """SHA-256 over the ids, texts (``corpus.data_fingerprint``) and labels of the train and valid rows."""
    digest = hashlib.sha256()
    for name in ("train", "valid"):
        digest.update(f"{name}\t{corpus.data_fingerprint(data[name])}\t".encode())
        digest.update(data[name]["label"].to_numpy(dtype="int64").tobytes())
    return digest.hexdigest()


def _identity(
    cfg: TeacherConfig,
    data: dict[str, pd.DataFrame],
    dataset: str,
    root: str | Path,
    labels: Sequence[str] = corpus.BINARY_LABELS,
) -> dict:
    """A fine-tuned teacher's identity: base model (Hub name or local weights' hash), settings, data (ids,
    texts and labels) and label names (recorded when they are not the built-in negative / positive, so that
    the built-in corpora's teachers keep their folders)."""
    if cfg.model is None:
        raise ValueError(
            "no model to fine-tune: set --model (TeacherConfig.model) to a Hub name or a directory"
        )
    local = _local_dir(cfg.model, root)
    base = {"fingerprint": teacher_fingerprint(local)} if local is not None else {"hub": cfg.model}
    settings = {name: getattr(cfg, name) for name in _IDENTITY_SETTINGS}
    identity = {"base_model": base, "dataset": _check_name(dataset, "dataset"), "settings": settings}
    return {**identity, "data": _data_fingerprint(data), **_named_labels(labels)}


def _named_labels(labels: Sequence[str]) -> dict:
    """``{"labels": [...]}`` for an identity, ``{}`` for the built-in negative / positive."""
    return {} if tuple(labels) == corpus.BINARY_LABELS else {"labels": list(labels)}


def _folder(cfg: TeacherConfig, identity: dict, root: str | Path) -> Path:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:8]
    return Path(root) / f"{display_name(cfg.model)}-{identity['dataset']}-{digest}"


def teacher_dir(
    cfg: TeacherConfig, splits: dict[str, pd.DataFrame], dataset: str, root: str | Path = "teacher_model"
) -> Path:
    """Where ``finetune_teacher`` puts this teacher: ``<root>/<short-name>-<dataset>-<hash8>``, the hash over
    the base model, every fine-tuning setting and the train/valid data."""
    data, labels = _labeled_splits(splits)
    return _folder(cfg, _identity(cfg, data, dataset, root, labels), root)


def _changes(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two identities."""
    changes = []
    for key in sorted(recorded.keys() | current.keys()):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {_short(old)} -> {_short(new)}")
    return changes


def _short(value: object) -> str:
    text = repr(value)
    return text[:13] + "…'" if isinstance(value, str) and len(value) > 16 else text


class TeacherMismatch(ValueError):
    """A teacher folder (or its checkpoints) that was fine-tuned with other settings or data."""


def _finished(out_dir: Path, identity: dict) -> bool:
    """True when ``out_dir`` holds this teacher; an error when it holds another or something unfinished."""
    if (out_dir / TEACHER_INFO).is_file():
        recorded = _read_json(out_dir / TEACHER_INFO, out_dir).get("identity")
        if recorded != identity:
            changes = "; ".join(_changes(recorded, identity)) if recorded else "it records no identity"
            raise TeacherMismatch(
                f"{out_dir} holds a teacher fine-tuned otherwise ({changes}): delete it to "
                "fine-tune again, or use another --teacher-root"
            )
        check_weights(out_dir)
        logger.info(f"reusing the fine-tuned teacher in {out_dir} (same base model, settings and data)")
        return True
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists but holds no finished teacher ({TEACHER_INFO}); remove it")
    return False


def _open_partial(partial: Path, identity: dict, args: TrainingArguments) -> str | None:
    """The last checkpoint in ``partial`` to resume from if it is this teacher's; else a fresh folder."""
    with args.main_process_first(local=False, desc="opening the teacher's checkpoint folder"):
        if args.process_index == 0:
            try:
                recorded = json.loads((partial / PARTIAL_INFO).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                recorded = None
            if partial.exists() and recorded != identity:
                logger.warning(f"clearing {partial}: its checkpoints belong to another or an unknown teacher")
                shutil.rmtree(partial)
            if not partial.exists():
                partial.mkdir(parents=True)
                utils.atomic_write_json(partial / PARTIAL_INFO, identity)
            _drop_incomplete_checkpoints(partial)
    checkpoint = get_last_checkpoint(str(partial))
    if checkpoint is not None:
        logger.info(f"resuming teacher fine-tuning from {checkpoint}")
    return checkpoint


def _drop_incomplete_checkpoints(partial: Path) -> None:
    """Remove checkpoints without ``trainer_state.json`` (the Trainer writes it last): killed while saving."""
    for checkpoint in partial.glob("checkpoint-*"):
        if checkpoint.is_dir() and not (checkpoint / TRAINER_STATE_NAME).is_file():
            logger.warning(f"removing {checkpoint}: the run was stopped while saving it")
            shutil.rmtree(checkpoint)


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning: the steps
# ---------------------------------------------------------------------------------------------------------


class _EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, list[int]]], labels: Sequence[int]):
        self.features = features
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int] | int]:
        return {**self.features[index], "labels": self.labels[index]}


def _labeled_splits(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], tuple[str, ...]]:
    """Labeled rows (label >= 0) of train/valid/test and the label names (``corpus.label_names``); clear
    errors for bad data."""
    missing = {"train", "valid"} - set(splits)
    if missing:
        raise ValueError(f"splits needs 'train' and 'valid' DataFrames; missing: {sorted(missing)}")
    labeled = {}
    for name in ("train", "valid", "test"):
        if name not in splits:
            continue
        df = splits[name]
        if not isinstance(df, pd.DataFrame) or not {"id", "text", "label"} <= set(df.columns):
            raise ValueError(f"splits[{name!r}] must be a DataFrame with 'id', 'text' and 'label' columns")
        if not pd.api.types.is_integer_dtype(df["label"]) or (df["label"] < -1).any():
            raise ValueError(
                f"splits[{name!r}]['label'] must hold integer classes (0, 1, ...; -1 for unlabeled)"
            )
        labeled[name] = df[df["label"] >= 0]
    for name in ("train", "valid"):
        if labeled[name].empty:
            raise ValueError(f"splits[{name!r}] has no labeled rows")
    labels = corpus.label_names(splits)
    highest = max(int(df["label"].max()) for df in labeled.values() if not df.empty)
    if highest >= len(labels):
        raise ValueError(f"label id {highest} has no name: the label names are {list(labels)}")
    return labeled, labels


def _argmax(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    # Encoder-decoder outputs carry encoder states after the logits; keep only the predicted classes.
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def _accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions == prediction.label_ids).mean())}


class _ProgressBar(TrainerCallback):
    """One compact bar over the training steps, loss and validation accuracy in its postfix (no printed log
    lines); tqdm's ``disable=None`` hides it in non-interactive output."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc="fine-tuning the teacher", unit="step", disable=None)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        shown = {
            key: f"{value:.4g}" for key, value in (logs or {}).items() if key in ("loss", "eval_accuracy")
        }
        if self.bar is not None and shown:
            self.bar.set_postfix(shown)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _prepare(
    cfg: TeacherConfig, base_dir: Path, data: dict[str, pd.DataFrame], labels: Sequence[str]
) -> tuple[PreTrainedModel, TextEncoder, dict[str, _EncodedDataset]]:
    """The base model with a new classification head (seeded), its encoder and the encoded splits."""
    set_seed(cfg.seed)  # the new classification head is initialised here
    model, encoder = load_classifier(base_dir, cfg.max_length, num_labels=len(labels), labels=labels)
    datasets = {
        name: _EncodedDataset(encoder.encode(df["text"]), df["label"])
        for name, df in data.items()
        if not df.empty
    }
    return model, encoder, datasets


def _training_args(cfg: TeacherConfig, partial: Path, device: torch.device, precision: torch.dtype | None):
    """Evaluate, checkpoint (with optimizer state, to resume) and keep the best model once per epoch."""
    return TrainingArguments(
        output_dir=str(partial),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.train_batch_size,
        per_device_eval_batch_size=2 * cfg.train_batch_size,
        learning_rate=cfg.lr,
        warmup_steps=0.1,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,  # the best and the latest checkpoint are kept
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        logging_steps=50,
        report_to="none",  # TensorBoard is added with its own log folder (_build_trainer)
        disable_tqdm=True,  # replaced by _ProgressBar
        train_sampling_strategy="group_by_length",
        seed=cfg.seed,
        bf16=precision == torch.bfloat16,
        fp16=precision == torch.float16,
        use_cpu=device.type == "cpu",
    )


def _build_trainer(
    cfg: TeacherConfig,
    model: PreTrainedModel,
    encoder: TextEncoder,
    datasets: dict[str, _EncodedDataset],
    args: TrainingArguments,
    log_dir: Path,
) -> Trainer:
    """The Trainer: early stopping, one progress bar, TensorBoard in ``log_dir`` (x axis: global step)."""
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(log_dir)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["valid"],
        data_collator=DataCollatorWithPadding(encoder.tokenizer),
        processing_class=encoder.tokenizer,
        compute_metrics=_accuracy,
        preprocess_logits_for_metrics=_argmax,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience), tensorboard, _ProgressBar()],
    )
    trainer.remove_callback(PrinterCallback)  # log lines go to TensorBoard and the bar, not the output
    return trainer


def _train(trainer: Trainer, checkpoint: str | None, datasets: dict[str, _EncodedDataset]) -> dict:
    """Train (resuming from ``checkpoint``), then score the best model on valid and test."""
    start = time.perf_counter()
    with quiet_transformers():
        trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - start
    trainer.remove_callback(EarlyStoppingCallback)  # it only follows the per-epoch validation
    accuracy = {
        name: trainer.evaluate(datasets[name], metric_key_prefix=name)[f"{name}_accuracy"]
        if name in datasets
        else None
        for name in ("valid", "test")
    }
    return {
        "epochs_trained": trainer.state.epoch,
        "global_step": trainer.state.global_step,
        "resumed_from_step": int(Path(checkpoint).name.split("-")[-1]) if checkpoint else None,
        "val_accuracy": accuracy["valid"],
        "test_accuracy": accuracy["test"],
        "train_seconds": round(train_seconds, 1),
    }


def _save(trainer: Trainer, partial: Path, out_dir: Path, info: dict) -> None:
    """Model, tokenizer and ``teacher.json`` into ``partial/final``, moved to ``out_dir`` when complete
    (by ``utils.atomic_dir``, which gives the files the umask's modes: the Trainer writes its weights 0600).
    """
    final = partial / "final"
    if trainer.is_world_process_zero() and final.exists():
        shutil.rmtree(final)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    with quiet_transformers():
        trainer.save_model(
            str(final)
        )  # called on every rank (sharded set-ups need them all); the main one writes
    if trainer.is_world_process_zero():
        utils.atomic_write_json(final / TEACHER_INFO, info)
        utils.atomic_dir(out_dir, lambda tmp: _move_contents(final, tmp))  # an existing out_dir is empty
        shutil.rmtree(partial)
        logger.info(
            f"teacher saved to {out_dir}: val accuracy {info['val_accuracy']:.4f}, "
            f"test accuracy {info['test_accuracy']}"
        )
    trainer.accelerator.wait_for_everyone()


def _move_contents(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into the existing folder ``target`` (renames, on one file system)."""
    for entry in source.iterdir():
        os.replace(entry, target / entry.name)


def finetune_teacher(
    cfg: TeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    root: str | Path = "teacher_model",
    device: str = "auto",
    *,
    log_root: str | Path = "runs",
) -> Path:
    """Fine-tune ``cfg.model`` (Hub name or directory) as a classifier with the transformers Trainer.

    The teacher goes to ``teacher_dir(cfg, splits, dataset, root)``; a finished one there is reused (its
    recorded identity is checked). Evaluates on ``splits["valid"]`` and checkpoints every epoch into
    ``<root>/.<name>.partial/``, from where an interrupted run resumes; keeps the best validation accuracy,
    stops early after ``cfg.patience`` epochs without improvement and scores the best model on
    ``splits["test"]``. TensorBoard logs go to ``<log_root>/<dataset>/teachers/<name>`` beside the students'.
    Works under ``torchrun`` (the Trainer runs data-parallel; rank 0 writes).
    """
    data, labels = _labeled_splits(splits)
    identity = _identity(cfg, data, dataset, root, labels)
    out_dir = _folder(cfg, identity, root)
    if _finished(out_dir, identity):
        return out_dir
    base_dir = resolve_teacher(cfg.model, root)
    if is_student_dir(base_dir):
        raise ValueError(f"{cfg.model} is a BiLSTM student; fine-tune a transformers model instead")
    resolved = resolve_device(device)
    model, encoder, datasets = _prepare(cfg, base_dir, data, labels)
    precision = _mixed_precision(resolved, model.config)
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    args = _training_args(cfg, partial, resolved, precision)
    checkpoint = _open_partial(partial, identity, args)
    log_dir = Path(log_root) / dataset / "teachers" / out_dir.name
    trainer = _build_trainer(cfg, model, encoder, datasets, args, log_dir)
    logger.info(
        f"fine-tuning {cfg.model} on {len(datasets['train']):,} texts ({len(labels)} classes) into {out_dir}"
    )
    results = _train(trainer, checkpoint, datasets)
    info = {
        "base_model": cfg.model,
        "dataset": dataset,
        "identity": identity,
        "num_labels": len(labels),
        "id2label": model.config.id2label,
        "num_examples": {name: len(part) for name, part in datasets.items()},
        "hyperparameters": {
            **asdict(cfg),
            "max_length": encoder.max_length,  # capped by the model's positions
            "precision": str(precision).removeprefix("torch.") if precision else "float32",
            "world_size": args.world_size,
        },
        **results,
    }
    _save(trainer, partial, out_dir, info)
    return out_dir


# ---------------------------------------------------------------------------------------------------------
# A scikit-learn teacher: TF-IDF n-grams + logistic regression
# ---------------------------------------------------------------------------------------------------------

SKLEARN_MODELS = ("tfidf-lr",)  # names `--model` accepts for a scikit-learn teacher
SKLEARN_MODEL_FILE = "model.skops"
SKLEARN_VOCAB_FILE = "vocabulary.json"
SKLEARN_FORMAT = "distilkobilstm-sklearn-v1"
# skops refuses every type outside its default trusted set unless it is named here. The pipeline below
# needs none; a file that asks for any other type (a crafted one could name a function to call) is refused.
SKLEARN_TRUSTED_TYPES: tuple[str, ...] = ()
# predict_log_proba is log(predict_proba), -inf where a probability underflows; KD needs finite logits.
LOG_PROB_FLOOR = -100.0


@dataclass
class SklearnTeacherConfig:
    """TF-IDF (character n-grams within words + word n-grams) and logistic regression, fitted on train."""

    char_max_n: int = setting(
        3, "longest character n-gram (char_wb, from 1)", bounds="[1, 10]", flag="--tfidf-char-max-n"
    )
    word_max_n: int = setting(2, "longest word n-gram (from 1)", bounds="[1, 5]", flag="--tfidf-word-max-n")
    min_df: int = setting(
        2, "drop n-grams seen in fewer training texts", bounds="[1, 1000000]", flag="--tfidf-min-df"
    )
    sublinear_tf: bool = setting(True, "1 + log(tf) instead of raw counts", flag="--tfidf-sublinear-tf")
    c: float = setting(
        3.0, "inverse L2 regularisation strength of the logistic regression", bounds="(0, inf)", flag="--lr-c"
    )
    max_iter: int = setting(
        1000, "lbfgs iterations of the logistic regression", bounds="[1, 1000000]", flag="--lr-max-iter"
    )

    def __post_init__(self) -> None:
        validate_fields(self)


def build_sklearn_pipeline(cfg: SklearnTeacherConfig):
    """The unfitted scikit-learn pipeline ``cfg`` describes (also peers.py's TF-IDF + LR peer)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    tfidf = {"sublinear_tf": cfg.sublinear_tf, "min_df": cfg.min_df, "dtype": np.float32}
    features = FeatureUnion(
        [
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, cfg.char_max_n), **tfidf)),
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, cfg.word_max_n), **tfidf)),
        ]
    )
    classifier = LogisticRegression(C=cfg.c, max_iter=cfg.max_iter)
    return Pipeline([("features", features), ("classifier", classifier)])


def _vectorizers(pipeline) -> dict[str, object]:
    """The pipeline's fitted vectorizers by name (their vocabularies are stored apart from the skops file)."""
    return dict(pipeline.named_steps["features"].transformer_list)


def save_sklearn_pipeline(pipeline, directory: Path) -> None:
    """Write the fitted pipeline as ``model.skops`` (no pickle) and its vocabularies as ``vocabulary.json``.

    skops writes a dict entry by entry (about 1 kB each), so the 400k-term vocabularies go to JSON instead:
    the files shrink from ~300 MB to ~10 MB and load in seconds.
    """
    import skops.io

    vocabularies = {name: vec.__dict__.pop("vocabulary_") for name, vec in _vectorizers(pipeline).items()}
    try:
        skops.io.dump(pipeline, directory / SKLEARN_MODEL_FILE, compression=zipfile.ZIP_DEFLATED)
    finally:
        for name, vectorizer in _vectorizers(pipeline).items():
            vectorizer.vocabulary_ = vocabularies[name]
    terms = {name: sorted(vocab, key=vocab.__getitem__) for name, vocab in vocabularies.items()}
    (directory / SKLEARN_VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")


def load_sklearn_pipeline(directory: str | Path):
    """The pipeline ``save_sklearn_pipeline`` wrote; a file naming a type skops does not trust is refused."""
    import skops.io

    path = Path(directory) / SKLEARN_MODEL_FILE
    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(SKLEARN_TRUSTED_TYPES))
    if untrusted:
        raise ValueError(
            f"{path} asks to load untrusted types {untrusted}; refusing to load it "
            "(only files written by fit_sklearn_teacher are accepted)"
        )
    pipeline = skops.io.load(path, trusted=list(SKLEARN_TRUSTED_TYPES))
    terms = json.loads((Path(directory) / SKLEARN_VOCAB_FILE).read_text(encoding="utf-8"))
    vectorizers = _vectorizers(pipeline)
    if set(terms) != set(vectorizers):
        raise ValueError(
            f"{directory}/{SKLEARN_VOCAB_FILE} has vocabularies {sorted(terms)}, "
            f"the model {sorted(vectorizers)}: the teacher folder is damaged; fit it again"
        )
    for name, vectorizer in vectorizers.items():
        vectorizer.vocabulary_ = {term: i for i, term in enumerate(terms[name])}
    return pipeline


def is_sklearn_dir(path: str | Path) -> bool:
    """True if ``path`` holds a scikit-learn teacher written by ``fit_sklearn_teacher``."""
    try:
        info = json.loads((Path(path) / TEACHER_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    is_ours = isinstance(info, dict) and info.get("format") == SKLEARN_FORMAT
    return is_ours and (Path(path) / SKLEARN_MODEL_FILE).is_file()


def _files_fingerprint(directory: Path) -> str:
    """SHA-256 over the names and contents of the files directly in ``directory`` (not logits/)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _log_probabilities(pipeline, texts: list[str]) -> np.ndarray:
    return np.maximum(pipeline.predict_log_proba(texts), LOG_PROB_FLOOR).astype(np.float32)


def _sklearn_identity(cfg: SklearnTeacherConfig, train: pd.DataFrame, labels: Sequence[str]) -> dict:
    """Settings, the training texts and labels, and the label names (when not negative / positive)."""
    label_ids = hashlib.sha256(train["label"].to_numpy(dtype=np.int64).tobytes()).hexdigest()
    return {
        "model": SKLEARN_MODELS[0],
        "settings": asdict(cfg),
        "data_fingerprint": {"train": corpus.data_fingerprint(train), "train_labels": label_ids},
        **_named_labels(labels),
    }


def fit_sklearn_teacher(
    cfg: SklearnTeacherConfig,
    splits: dict[str, pd.DataFrame],
    dataset: str,
    root: str | Path = "teacher_model",
) -> Path:
    """Fit the TF-IDF + LR pipeline on ``splits["train"]`` into ``<root>/tfidf-lr-<dataset>-<identity hash>``.

    teacher.json records the settings, the training data's fingerprint and the valid/test accuracy; a folder
    with the same identity is reused without fitting.
    """
    data, labels = _labeled_splits(splits)
    identity = _sklearn_identity(cfg, data["train"], labels)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:10]
    out_dir = Path(root) / f"{SKLEARN_MODELS[0]}-{dataset}-{key}"
    if is_sklearn_dir(out_dir):
        logger.info(f"reusing the scikit-learn teacher in {out_dir} (same settings and training data)")
        return out_dir
    pipeline = build_sklearn_pipeline(cfg)
    logger.info(f"fitting {SKLEARN_MODELS[0]} on {len(data['train']):,} {dataset} texts into {out_dir}")
    start = time.perf_counter()
    pipeline.fit(data["train"]["text"].tolist(), data["train"]["label"].to_numpy())
    train_seconds = time.perf_counter() - start
    classes = pipeline.classes_.tolist()
    if classes != list(range(len(labels))):
        missing = [name for i, name in enumerate(labels) if i not in classes]
        raise ValueError(f"the training split has no example of {', '.join(missing)}: the teacher needs each")
    accuracy = {
        name: float(pipeline.score(df["text"].tolist(), df["label"].to_numpy()))
        for name, df in data.items()
        if name != "train" and not df.empty
    }
    info = {
        "format": SKLEARN_FORMAT,
        **identity,
        "dataset": dataset,
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "num_examples": {name: len(df) for name, df in data.items()},
        "num_features": int(pipeline.named_steps["classifier"].coef_.shape[1]),
        "val_accuracy": accuracy.get("valid"),
        "test_accuracy": accuracy.get("test"),
        "train_seconds": round(train_seconds, 1),
    }

    def write(directory: Path) -> None:
        save_sklearn_pipeline(pipeline, directory)
        utils.atomic_write_json(directory / TEACHER_INFO, info)

    utils.atomic_dir(out_dir, write)
    logger.info(
        f"scikit-learn teacher saved to {out_dir}: val accuracy {info['val_accuracy']:.4f}, "
        f"test accuracy {info['test_accuracy']}"
    )
    return out_dir


class SklearnTeacher(Teacher):
    """A fitted scikit-learn pipeline; its log-probabilities serve as logits."""

    def __init__(self, name: str, model_dir: Path):
        self.pipeline = load_sklearn_pipeline(model_dir)
        super().__init__(name, model_dir, len(self.pipeline.classes_), 0, torch.device("cpu"))

    @property
    def network(self) -> torch.nn.Module:
        raise TypeError(f"{self.name} is a scikit-learn pipeline, not a torch module")

    def num_parameters(self) -> int:
        classifier = self.pipeline.named_steps["classifier"]
        return int(classifier.coef_.size + classifier.intercept_.size)

    def size_bytes(self) -> int:
        """Bytes of the skops pipeline and its vocabularies."""
        files = (SKLEARN_MODEL_FILE, SKLEARN_VOCAB_FILE)
        return sum((self.model_dir / name).stat().st_size for name in files)

    def _predict(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        chunk = 64 * batch_size
        parts = [np.empty((0, self.num_labels), dtype=np.float32)]
        with self._bar(len(texts), show_progress) as bar:
            for start in range(0, len(texts), chunk):
                parts.append(_log_probabilities(self.pipeline, texts[start : start + chunk]))
                bar.update(len(parts[-1]))
        return torch.from_numpy(np.concatenate(parts))
