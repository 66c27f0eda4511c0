"""The teacher: find it, fine-tune it (transformers Trainer) and turn texts into its logits.

Only the teacher's logits are used for distillation, so any Hugging Face sequence-classification
architecture can teach (BERT, RoBERTa, DistilBERT, ELECTRA, BigBird, BART, GPT-2, XLNet, T5, KoBERT, ...),
and so can a saved BiLSTM student (a ``large`` student teaching a ``tiny`` one). Architecture quirks are
handled in one place, ``load_classifier``, used by both fine-tuning and inference.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import sentencepiece as spm
import torch
import torch.distributed as dist
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id
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
    TrainingArguments,
    set_seed,
)
from transformers.models.auto import modeling_auto

import utils
from model import Student, is_student_dir

logger = logging.getLogger("distilkobilstm")

TEACHER_INFO = "teacher.json"
LABEL_NAMES = ("negative", "positive")

# Files fetched from the Hub: configs, vocabularies and SentencePiece models, then one weight format.
_HUB_TEXT_FILES = ["*.json", "*.txt", "*.model"]
_WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")

# RoBERTa-style embeddings number positions from pad_token_id + 1, so they hold fewer tokens than
# max_position_embeddings.
_OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text", "xmod"}
# T5 activations overflow in float16 (NaN logits); these run in bfloat16 or float32 only.
_FP16_UNSAFE_MODELS = {"t5", "mt5", "umt5"}


# ---------------------------------------------------------------------------------------------------------
# Locating a teacher
# ---------------------------------------------------------------------------------------------------------


def short_name(name_or_dir: str) -> str:
    """Last component of a hub name or path: ``monologg/koelectra-small-v3-discriminator`` -> ``koelectra-small-v3-discriminator``."""
    name = Path(str(name_or_dir).rstrip("/\\")).name
    if not name:
        raise ValueError(f"cannot derive a name from {name_or_dir!r}")
    return name


def default_teacher_dir(model_name: str, dataset: str, root: str | Path = "teacher_model") -> Path:
    """Where ``finetune_teacher`` puts ``model_name`` fine-tuned on ``dataset``: ``<root>/<short-name>-<dataset>``."""
    return Path(root) / f"{short_name(model_name)}-{dataset}"


def _local_dir(name_or_dir: str, root: str | Path) -> Path | None:
    """``name_or_dir`` itself, or ``root/name_or_dir``, when that is a directory."""
    for candidate in (Path(name_or_dir), Path(root) / name_or_dir):
        if candidate.is_dir():
            return candidate
    return None


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(path for pattern in _WEIGHT_PATTERNS for path in model_dir.glob(pattern))


def _check_hub_name(name: str) -> None:
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(f"teacher {name!r} is neither a local directory nor a Hugging Face Hub model name") from None


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
        path = Path(snapshot_download(name_or_dir, allow_patterns=[*_HUB_TEXT_FILES, _WEIGHT_PATTERNS[0]]))
        if not _weight_files(path):
            path = Path(snapshot_download(name_or_dir, allow_patterns=[*_HUB_TEXT_FILES, _WEIGHT_PATTERNS[1]]))
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"teacher {name_or_dir!r} is not a local directory and the Hugging Face Hub has no model by that name "
            "(or it is private or gated: log in with `hf auth login`)"
        ) from None
    except LocalEntryNotFoundError as err:  # also an incomplete cached snapshot
        raise FileNotFoundError(
            f"cannot download teacher {name_or_dir!r}: the Hugging Face Hub is unreachable and the model is not in "
            f"the local cache. Pass a local model directory instead (a copy of {name_or_dir} or a fine-tuned teacher "
            f"under {root}/), or connect once to cache it. ({type(err).__name__})"
        ) from None
    if not _weight_files(path):
        raise FileNotFoundError(f"teacher {name_or_dir!r} on the Hub has no PyTorch weights ({' or '.join(_WEIGHT_PATTERNS)})")
    logger.info(f"teacher {name_or_dir} resolved to {path}")
    return path


def teacher_cache_dir(name_or_dir: str, root: str | Path = "teacher_model") -> Path:
    """Where the teacher's logits cache lives: ``<model dir>/logits``, or ``<root>/hub--<org>--<name>/logits`` for a Hub model."""
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
    weights = _weight_files(model_dir)
    if not (model_dir / "config.json").is_file() or not weights:
        raise FileNotFoundError(f"{model_dir} is not a model directory (it needs config.json and {' or '.join(_WEIGHT_PATTERNS)})")
    digest = hashlib.sha256()
    for path in [model_dir / "config.json", *weights]:
        digest.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# KoBERT's tokenizer
# ---------------------------------------------------------------------------------------------------------


_KOBERT_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


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

    vocab_files_names = {"sp_model_file": "spiece.model", "vocab_txt": "vocab.txt"}
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]

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
        """Copy the SentencePiece model (and vocab.txt) under their original names: the same layout loads again."""
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
            raise ValueError(f"{len(empty)} texts give no tokens (e.g. texts[{empty[0]}] = {texts[empty[0]]!r}); drop them first")
        if self.eos_token_id is not None:
            features = [self._end_with_eos(f["input_ids"]) for f in features]
        return features

    def _end_with_eos(self, ids: list[int]) -> dict[str, list[int]]:
        # Exactly one <eos>, at the end: KoBART's tokenizer adds none, and a literal "</s>" in a text adds another.
        ids = [i for i in ids if i != self.eos_token_id][: self.max_length - 1] + [self.eos_token_id]
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


def _load_config(model_dir: Path) -> PretrainedConfig:
    """AutoConfig, also for old uploads whose config.json has no ``model_type`` (inferred from ``architectures``)."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: not a transformers model directory")
    raw = json.loads(config_path.read_text(encoding="utf-8"))
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
        raise ValueError(f"{config_path} has no model_type and its architectures {raw.get('architectures')} do not name one")
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
                raise ValueError(f"the tokenizer of {config.name_or_path} has no padding or end-of-sequence token")
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
    if getattr(config, "type_vocab_size", 2) <= 1:  # RoBERTa, e.g. klue/roberta whose BERT tokenizer returns them
        accepted.discard("token_type_ids")
    return tuple(name for name in ("input_ids", "token_type_ids", "attention_mask") if name in accepted)


def load_classifier(
    model_dir: str | Path, max_length: int = 128, num_labels: int | None = None
) -> tuple[PreTrainedModel, TextEncoder]:
    """A float32 sequence classifier (CPU) and its ``TextEncoder``, with every architecture quirk handled.

    ``num_labels`` given: a fresh classification head for fine-tuning (labels ``negative``/``positive``).
    Otherwise the directory must hold a fine-tuned classifier; a base model without a trained head is refused.
    """
    model_dir = Path(model_dir)
    config = _load_config(model_dir)
    if num_labels is not None:
        id2label = dict(enumerate(LABEL_NAMES)) if num_labels == 2 else {i: str(i) for i in range(num_labels)}
        config.num_labels = num_labels
        config.id2label, config.label2id = id2label, {name: i for i, name in id2label.items()}
        config.problem_type = "single_label_classification"
    tokenizer = _load_tokenizer(model_dir, config)
    _set_pad_token(tokenizer, config)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer of {model_dir} has {len(tokenizer)} tokens but the model only {config.vocab_size} embeddings")
    # XLNet classifies from the last position: pad on the left. Everything else pads on the right; GPT-2
    # then reads the last non-padding token and keeps its absolute positions.
    tokenizer.padding_side = "left" if getattr(config, "summary_type", None) == "last" else "right"
    limit = _max_input_length(config, tokenizer, max_length)
    if getattr(config, "attention_type", None) == "block_sparse":
        # BigBird: block-sparse attention needs longer inputs than this and would switch itself per batch.
        if limit <= (5 + 2 * config.num_random_blocks) * config.block_size:
            config.attention_type = "original_full"
    model, loading = AutoModelForSequenceClassification.from_pretrained(
        model_dir, config=config, dtype=torch.float32, output_loading_info=True, ignore_mismatched_sizes=num_labels is not None
    )
    if num_labels is None and loading["missing_keys"]:
        raise ValueError(
            f"{model_dir} is not a fine-tuned classifier (untrained weights: {', '.join(sorted(loading['missing_keys'])[:4])}); "
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
# Inference
# ---------------------------------------------------------------------------------------------------------


def _resolve_device(device: str) -> torch.device:
    resolved = utils.get_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for CUDA, but torch sees no GPU")
        if resolved.index is None and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
            resolved = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{resolved} does not exist ({torch.cuda.device_count()} GPUs): start one process per GPU")
    return resolved


def _world(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the launcher's process group (torchrun sets WORLD_SIZE) if none is set up yet."""
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _gather_shards(local: torch.Tensor, total: int, world: int) -> torch.Tensor:
    """Every rank's ``texts[rank::world]`` logits, merged back into input order on every rank."""
    per_rank = math.ceil(total / world)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = torch.zeros(per_rank, local.shape[1], dtype=torch.float32, device=device)
    padded[: len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    merged = torch.empty(total, local.shape[1], dtype=torch.float32)
    for rank, part in enumerate(parts):
        merged[rank::world] = part[: len(range(rank, total, world))].cpu()
    return merged


class Teacher(abc.ABC):
    """A model that turns texts into classification logits."""

    def __init__(self, name: str, model_dir: Path, num_labels: int, max_length: int, device: torch.device):
        self.name = name
        self.model_dir = model_dir
        self.num_labels = num_labels
        self.max_length = max_length
        self.device = device

    def predict_logits(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = True) -> torch.Tensor:
        """float32 logits ``[N, num_labels]`` on the CPU, in input order.

        Under torch.distributed (or a launcher's WORLD_SIZE > 1) each rank scores ``texts[rank::world]`` and
        every rank returns the merged result.
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

    @abc.abstractmethod
    def _predict(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        """Logits of ``texts`` computed in this process."""

    @property
    @abc.abstractmethod
    def network(self) -> torch.nn.Module:
        """The underlying torch module."""

    def num_parameters(self) -> int:
        """Number of parameters of the teacher network."""
        return sum(p.numel() for p in self.network.parameters())


class TransformerTeacher(Teacher):
    """A Hugging Face sequence classifier."""

    def __init__(self, name: str, model_dir: Path, model: PreTrainedModel, encoder: TextEncoder, device: torch.device):
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
        autocast = torch.autocast("cuda", self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext()
        with autocast, tqdm(total=len(order), desc=f"teacher {self.name}", unit="text", disable=not show_progress) as bar:
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
        with tqdm(total=len(texts), desc=f"teacher {self.name}", unit="text", disable=not show_progress) as bar:
            for start in range(0, len(texts), chunk):
                parts.append(torch.from_numpy(self.student.predict_logits(texts[start : start + chunk], batch_size)))
                bar.update(len(parts[-1]))
        return torch.cat(parts).float()


def load_teacher(name_or_dir: str, device: str = "auto", max_length: int = 128, root: str | Path = "teacher_model") -> Teacher:
    """A fine-tuned transformers classifier or a BiLSTM student directory, ready for ``predict_logits``."""
    model_dir = resolve_teacher(name_or_dir, root)
    resolved = _resolve_device(device)
    if is_student_dir(model_dir):
        return StudentTeacher(short_name(str(name_or_dir)), model_dir, resolved)
    if is_sklearn_dir(model_dir):
        return SklearnTeacher(short_name(str(name_or_dir)), model_dir)
    model, encoder = load_classifier(model_dir, max_length)
    return TransformerTeacher(short_name(str(name_or_dir)), model_dir, model, encoder, resolved)


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------------------------


class _EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, list[int]]], labels: Sequence[int]):
        self.features = features
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int] | int]:
        return {**self.features[index], "labels": self.labels[index]}


def _labeled_splits(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], int]:
    """Labeled rows (label >= 0) of train/valid/test and the number of classes; clear errors for bad data."""
    missing = {"train", "valid"} - set(splits)
    if missing:
        raise ValueError(f"splits needs 'train' and 'valid' DataFrames; missing: {sorted(missing)}")
    labeled = {}
    for name in ("train", "valid", "test"):
        if name not in splits:
            continue
        df = splits[name]
        if not isinstance(df, pd.DataFrame) or not {"text", "label"} <= set(df.columns):
            raise ValueError(f"splits[{name!r}] must be a DataFrame with 'text' and 'label' columns")
        if not pd.api.types.is_integer_dtype(df["label"]) or (df["label"] < -1).any():
            raise ValueError(f"splits[{name!r}]['label'] must hold integer classes (0, 1, ...; -1 for unlabeled)")
        labeled[name] = df[df["label"] >= 0]
        if len(labeled[name]) < len(df):
            logger.info(f"teacher fine-tuning skips {len(df) - len(labeled[name]):,} unlabeled {name} rows")
    for name in ("train", "valid"):
        if labeled[name].empty:
            raise ValueError(f"splits[{name!r}] has no labeled rows")
    num_labels = max(2, 1 + max(int(df["label"].max()) for df in labeled.values() if not df.empty))
    return labeled, num_labels


def _argmax(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    # Encoder-decoder outputs carry encoder states after the logits; keep only the predicted classes.
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def _accuracy(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions == prediction.label_ids).mean())}


_INFO_KEYS = {
    "base_model", "num_labels", "id2label", "num_examples", "hyperparameters", "epochs_trained", "global_step",
    "val_accuracy", "test_accuracy", "train_seconds",
}


def finetune_teacher(
    model_name: str,
    splits: dict[str, pd.DataFrame],
    out_dir: str | Path,
    *,
    epochs: float = 3,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    seed: int = 42,
    patience: int = 2,
    max_steps: int = -1,
    device: str = "auto",
    extra_info: dict | None = None,
) -> Path:
    """Fine-tune ``model_name`` (Hub name or directory) as a classifier with the transformers Trainer.

    Evaluates on ``splits["valid"]`` every epoch, keeps the checkpoint with the best validation accuracy,
    stops early after ``patience`` epochs without improvement and scores the best model once on
    ``splits["test"]``. Logs go to TensorBoard (``out_dir/runs``). The model, its tokenizer and
    ``teacher.json`` are written to a temporary sibling that is renamed to ``out_dir`` when complete;
    an existing ``out_dir/teacher.json`` means the teacher is done and is reused without training.
    Works under ``torchrun`` (the Trainer runs data-parallel; rank 0 writes).
    """
    out_dir = Path(out_dir)
    if (out_dir / TEACHER_INFO).is_file():
        logger.info(f"reusing the fine-tuned teacher in {out_dir} ({TEACHER_INFO} exists; delete the directory to train again)")
        return out_dir
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists but holds no finished teacher ({TEACHER_INFO}); remove it or pick another out_dir")
    if batch_size < 1 or learning_rate <= 0 or patience < 1 or (epochs <= 0 and max_steps <= 0):
        raise ValueError("need batch_size >= 1, learning_rate > 0, patience >= 1 and epochs > 0 or max_steps > 0")
    extra_info = dict(extra_info or {})
    clashes = extra_info.keys() & _INFO_KEYS
    if clashes:
        raise ValueError(f"extra_info may not set {sorted(clashes)}: finetune_teacher writes them")
    data, num_labels = _labeled_splits(splits)
    base_dir = resolve_teacher(model_name)
    if is_student_dir(base_dir):
        raise ValueError(f"{model_name} is a BiLSTM student; fine-tune a transformers model instead")
    resolved = _resolve_device(device)

    set_seed(seed)  # the new classification head is initialised here
    model, encoder = load_classifier(base_dir, max_length, num_labels=num_labels)
    datasets = {name: _EncodedDataset(encoder.encode(df["text"]), df["label"]) for name, df in data.items() if not df.empty}
    precision = _mixed_precision(resolved, model.config)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    args = TrainingArguments(
        output_dir=str(tmp_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=2 * batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        logging_steps=50,
        report_to=["tensorboard"],
        train_sampling_strategy="group_by_length",
        seed=seed,
        bf16=precision == torch.bfloat16,
        fp16=precision == torch.float16,
        use_cpu=resolved.type == "cpu",
    )
    with args.main_process_first(local=False, desc="clearing a stale temporary directory"):
        if args.process_index == 0 and tmp_dir.exists():
            shutil.rmtree(tmp_dir)  # left by an interrupted run
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["valid"],
        data_collator=DataCollatorWithPadding(encoder.tokenizer),
        processing_class=encoder.tokenizer,
        compute_metrics=_accuracy,
        preprocess_logits_for_metrics=_argmax,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)],
    )
    logger.info(f"fine-tuning {model_name} on {len(datasets['train']):,} texts ({num_labels} classes) into {out_dir}")
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    trainer.remove_callback(EarlyStoppingCallback)  # it only follows the per-epoch validation
    accuracy = {
        name: trainer.evaluate(datasets[name], metric_key_prefix=name)[f"{name}_accuracy"] if name in datasets else None
        for name in ("valid", "test")
    }
    info = {
        "base_model": model_name,
        "num_labels": num_labels,
        "id2label": model.config.id2label,
        "num_examples": {name: len(dataset) for name, dataset in datasets.items()},
        "hyperparameters": {
            "epochs": epochs,
            "max_steps": max_steps,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "max_length": encoder.max_length,
            "seed": seed,
            "patience": patience,
            "precision": str(precision).removeprefix("torch.") if precision else "float32",
            "world_size": args.world_size,
        },
        "epochs_trained": trainer.state.epoch,
        "global_step": trainer.state.global_step,
        "val_accuracy": accuracy["valid"],
        "test_accuracy": accuracy["test"],
        "train_seconds": round(train_seconds, 1),
    }
    if trainer.is_world_process_zero():
        for checkpoint in tmp_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
    trainer.save_model(str(tmp_dir))  # called on every rank (sharded set-ups need them all); the main one writes
    if trainer.is_world_process_zero():
        utils.atomic_write_json(tmp_dir / TEACHER_INFO, {**extra_info, **info})
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp_dir, out_dir)
        logger.info(f"teacher saved to {out_dir}: val accuracy {accuracy['valid']:.4f}, test accuracy {accuracy['test']}")
    trainer.accelerator.wait_for_everyone()
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

    char_max_n: int = field(default=3, metadata={
        "help": "longest character n-gram (char_wb, from 1)", "flag": "--tfidf-char-max-n"})
    word_max_n: int = field(default=2, metadata={
        "help": "longest word n-gram (from 1)", "flag": "--tfidf-word-max-n"})
    min_df: int = field(default=2, metadata={
        "help": "drop n-grams seen in fewer training texts", "flag": "--tfidf-min-df"})
    sublinear_tf: bool = field(default=True, metadata={
        "help": "1 + log(tf) instead of raw counts", "flag": "--tfidf-sublinear-tf"})
    c: float = field(default=3.0, metadata={
        "help": "inverse L2 regularisation strength of the logistic regression", "flag": "--lr-c"})
    max_iter: int = field(default=1000, metadata={
        "help": "lbfgs iterations of the logistic regression", "flag": "--lr-max-iter"})

    def __post_init__(self) -> None:
        ranges = {"char_max_n": (1, 10), "word_max_n": (1, 5), "min_df": (1, 10**6), "max_iter": (1, 10**6)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"SklearnTeacherConfig.{name} must be an integer in [{low}, {high}], "
                                 f"got {value!r}")
        if self.sublinear_tf not in (True, False):
            raise ValueError(f"SklearnTeacherConfig.sublinear_tf must be True or False, "
                             f"got {self.sublinear_tf!r}")
        if isinstance(self.c, bool) or not isinstance(self.c, (int, float)) or not 0 < self.c < math.inf:
            raise ValueError(f"SklearnTeacherConfig.c must be a positive finite number, got {self.c!r}")


def build_sklearn_pipeline(cfg: SklearnTeacherConfig):
    """The unfitted scikit-learn pipeline ``cfg`` describes (also bench.py's TF-IDF + LR peer)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    tfidf = {"sublinear_tf": cfg.sublinear_tf, "min_df": cfg.min_df, "dtype": np.float32}
    features = FeatureUnion([
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, cfg.char_max_n), **tfidf)),
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, cfg.word_max_n), **tfidf)),
    ])
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
        raise ValueError(f"{path} asks to load untrusted types {untrusted}; refusing to load it "
                         "(only files written by fit_sklearn_teacher are accepted)")
    pipeline = skops.io.load(path, trusted=list(SKLEARN_TRUSTED_TYPES))
    terms = json.loads((Path(directory) / SKLEARN_VOCAB_FILE).read_text(encoding="utf-8"))
    vectorizers = _vectorizers(pipeline)
    if set(terms) != set(vectorizers):
        raise ValueError(f"{directory}/{SKLEARN_VOCAB_FILE} has vocabularies {sorted(terms)}, "
                         f"the model {sorted(vectorizers)}: the teacher folder is damaged; fit it again")
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


def _sklearn_identity(cfg: SklearnTeacherConfig, train: pd.DataFrame) -> dict:
    labels = hashlib.sha256(train["label"].to_numpy(dtype=np.int64).tobytes()).hexdigest()
    return {"model": SKLEARN_MODELS[0], "settings": dataclasses.asdict(cfg),
            "data_fingerprint": {"train": utils.data_fingerprint(train), "train_labels": labels}}


def fit_sklearn_teacher(cfg: SklearnTeacherConfig, splits: dict[str, pd.DataFrame], dataset: str,
                        root: str | Path = "teacher_model") -> Path:
    """Fit the TF-IDF + LR pipeline on ``splits["train"]`` into ``<root>/tfidf-lr-<dataset>-<identity hash>``.

    teacher.json records the settings, the training data's fingerprint and the valid/test accuracy; a folder
    with the same identity is reused without fitting.
    """
    data, num_labels = _labeled_splits(splits)
    identity = _sklearn_identity(cfg, data["train"])
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
    if classes != list(range(num_labels)):
        raise ValueError(f"the training split has classes {classes}; "
                         f"the teacher needs every class 0..{num_labels - 1}")
    accuracy = {name: float(pipeline.score(df["text"].tolist(), df["label"].to_numpy()))
                for name, df in data.items() if name != "train" and not df.empty}
    info = {
        "format": SKLEARN_FORMAT, **identity, "dataset": dataset, "num_labels": num_labels,
        "id2label": dict(enumerate(LABEL_NAMES)) if num_labels == len(LABEL_NAMES) else None,
        "num_examples": {name: len(df) for name, df in data.items()},
        "num_features": int(pipeline.named_steps["classifier"].coef_.shape[1]),
        "val_accuracy": accuracy.get("valid"), "test_accuracy": accuracy.get("test"),
        "train_seconds": round(train_seconds, 1),
    }

    def write(directory: Path) -> None:
        save_sklearn_pipeline(pipeline, directory)
        utils.atomic_write_json(directory / TEACHER_INFO, info)

    utils.atomic_dir(out_dir, write)
    logger.info(f"scikit-learn teacher saved to {out_dir}: val accuracy {info['val_accuracy']:.4f}, "
                f"test accuracy {info['test_accuracy']}")
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

    def _predict(self, texts: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
        chunk = 64 * batch_size
        parts = [np.empty((0, self.num_labels), dtype=np.float32)]
        disable = None if show_progress else True
        progress = tqdm(total=len(texts), desc=f"teacher {self.name}", unit="text", disable=disable)
        with progress as bar:
            for start in range(0, len(texts), chunk):
                parts.append(_log_probabilities(self.pipeline, texts[start : start + chunk]))
                bar.update(len(parts[-1]))
        return torch.from_numpy(np.concatenate(parts))
