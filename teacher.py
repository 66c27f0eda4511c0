"""The teacher: find it, load it and turn texts into its logits (one process or several).

Only the teacher's logits are used for distillation, so any Hugging Face sequence-classification
architecture can teach (BERT, RoBERTa, DistilBERT, ELECTRA, BigBird, BART, GPT-2, XLNet, T5, KoBERT, ...),
and so can a saved BiLSTM student (a ``large`` student teaching a ``tiny`` one). Architecture quirks are
handled in one place, ``load_classifier``, used by both fine-tuning (finetune.py) and inference; the
scikit-learn teacher (TF-IDF + logistic regression) is stored and loaded here too. Making a teacher is
finetune.py's job, caching its logits logits_cache.py's.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import inspect
import json
import math
import os
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto import modeling_auto
from transformers.utils import logging as hf_logging

import corpus
import utils
from card import display_name
from config import SklearnTeacherConfig
from kobert import KoBertTokenizer, kobert_files
from model import Student, is_student_dir, student_labels
from utils import count_parameters

logger = utils.logger

TEACHER_INFO = "teacher.json"

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


def local_dir(name_or_dir: str, root: str | Path) -> Path | None:
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
    local = local_dir(name_or_dir, root)
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
    local = local_dir(name_or_dir, root)
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


def read_json(path: Path, model_dir: Path) -> dict:
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
            read_json(model_dir / name, model_dir)
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
    raw = read_json(config_path, model_dir)
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
    kobert = kobert_files(model_dir, config)
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


def mixed_precision(device: torch.device, config: PretrainedConfig) -> torch.dtype | None:
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


def is_main_process() -> bool:
    return _rank_and_world()[0] == 0


def barrier() -> None:
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
        self.autocast_dtype = mixed_precision(device, model.config)

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
# The labels a teacher predicts
# ---------------------------------------------------------------------------------------------------------


class LabelMismatch(ValueError):
    """A teacher whose classes are not the data's labels."""


def teacher_labels(model_dir: str | Path) -> list[str]:
    """The class names a teacher predicts, read from its files: a student's or a transformers model's
    config.json (``id2label``; ``LABEL_0``, ... when it names none), a scikit-learn teacher's teacher.json."""
    model_dir = Path(model_dir)
    if is_student_dir(model_dir):
        return student_labels(model_dir)
    info = read_json(model_dir / (TEACHER_INFO if is_sklearn_dir(model_dir) else "config.json"), model_dir)
    count = int(info.get("num_labels") or len(info.get("id2label") or {}) or 2)
    id2label = info.get("id2label") or {str(i): f"LABEL_{i}" for i in range(count)}
    return [id2label[key] for key in sorted(id2label, key=int)]


def check_labels(model_dir: str | Path, labels: Sequence[str]) -> None:
    """Refuse (``LabelMismatch``, one line) a teacher whose class names differ from the data's ``labels``
    (case aside); a transformers classifier without names (``LABEL_0``, ...) needs only as many classes."""
    names = teacher_labels(model_dir)
    if names == [f"LABEL_{i}" for i in range(len(names))]:
        same = len(names) == len(labels)
    else:
        same = [n.casefold() for n in names] == [n.casefold() for n in labels]
    if not same:
        raise LabelMismatch(
            f"teacher {model_dir} predicts {' / '.join(names)}, the data has the labels "
            f"{' / '.join(labels)}: use a teacher trained on these labels (--finetune or --model tfidf-lr "
            "fits one on this data)"
        )


# ---------------------------------------------------------------------------------------------------------
# A scikit-learn teacher: TF-IDF n-grams + logistic regression
# ---------------------------------------------------------------------------------------------------------

SKLEARN_MODEL_FILE = "model.skops"
SKLEARN_VOCAB_FILE = "vocabulary.json"
SKLEARN_FORMAT = "distilkobilstm-sklearn-v1"
# skops refuses every type outside its default trusted set unless it is named here. The pipeline below
# needs none; a file that asks for any other type (a crafted one could name a function to call) is refused.
SKLEARN_TRUSTED_TYPES: tuple[str, ...] = ()
# predict_log_proba is log(predict_proba), -inf where a probability underflows; KD needs finite logits.
LOG_PROB_FLOOR = -100.0


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
