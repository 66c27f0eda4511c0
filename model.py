"""The student: a small bidirectional LSTM sentiment classifier (Tang et al. 2019).

Contents:
- BiLSTMClassifier: the model itself (its settings: config.StudentConfig),
- encode / pad_batch: text -> token ids -> padded tensors,
- save_student / load_student: self-contained, atomically written model directories whose manifest.json (the
  sha256 of each file; manifest.py) is checked on load, as are the config's bounds and its tokenizer,
- export_onnx / save_onnx: the model as an ONNX Runtime graph, float32 or with int8 weights,
- Student: the inference wrapper (predict_logits / predict_proba / predict) over one of three backends:
  "torch", "onnx" or "onnx-int8" (the fastest on CPU), e.g. Student.from_pretrained(dir, backend="onnx-int8"),
- sharing: self-contained folders with a model card (card.py; Student.save_pretrained, package_student) and
  the Hugging Face Hub (Student.push_to_hub, Student.from_pretrained("org/name")).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedTokenizerFast

from card import model_card
from config import BACKENDS, BUNDLED_NAMES, StudentConfig
from manifest import CARD_NAME, ONNX_DIR, add_to_manifest, corrupt_file, verify_manifest, write_manifest
from utils import atomic_dir, atomic_save
from vocab import pretokenizer, save_tokenizer_files

STUDENT_MODEL_TYPE = "distilko-bilstm"  # written into config.json as "model_type"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"

# -----------------------------------------------------------------------------
# the model


class BiLSTMClassifier(nn.Module):
    """embedding -> packed BiLSTM -> pooling -> [Linear + ReLU] -> dropout -> Linear."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        h2 = 2 * config.hidden_dim
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_id)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_dim,
            num_layers=config.num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.attention = nn.Linear(h2, 1) if config.pooling == "attention" else None
        self.fc = nn.Linear(h2, config.fc_dim) if config.fc_dim > 0 else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.fc_dim or h2, config.num_labels)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """input_ids [B, L] (positions >= lengths are ignored), lengths [B] -> logits [B, num_labels]."""
        x = self.dropout(self.embedding(input_ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)  # [B, T, 2H], T = max(lengths)
        lengths = lengths.to(out.device)
        if self.config.pooling == "last":
            # the top layer's final states (= h_n[-2], h_n[-1]): forward at the last valid step, backward at
            # step 0; read from the outputs rather than h_n because that exports to ONNX
            h = self.config.hidden_dim
            last_step = out[torch.arange(out.size(0), device=out.device), lengths - 1]
            pooled = torch.cat([last_step[:, :h], out[:, 0, h:]], dim=-1)
        else:
            padding = torch.arange(out.size(1), device=out.device)[None, :] >= lengths[:, None]  # [B, T]
            if self.config.pooling == "max":
                pooled = out.masked_fill(padding[..., None], float("-inf")).max(dim=1).values
            else:
                scores = self.attention(out).squeeze(-1).masked_fill(padding, float("-inf"))
                pooled = (F.softmax(scores, dim=1)[..., None] * out).sum(dim=1)
        if self.fc is not None:
            pooled = F.relu(self.fc(pooled))
        return self.classifier(self.dropout(pooled))


# -----------------------------------------------------------------------------
# text -> tensors


def clean_backend(tokenizer: PreTrainedTokenizerFast) -> Tokenizer:
    """The tokenizer's Rust backend without padding or truncation (a copy if either is set)."""
    backend = tokenizer.backend_tokenizer
    if backend.padding is not None or backend.truncation is not None:
        # a tokenizer.json or an earlier tokenizer(...) call may leave these on
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_padding()
        backend.no_truncation()
    return backend


@dataclass(frozen=True)
class StudentEncoder:
    """Texts -> the student's token ids as the tokenizer's folder says: its pre-tokenizer (Kiwi morphemes,
    when its tokenizer_config.json names one), then its tokenizer.json. The one path of training and every
    backend. (A teacher's texts become its inputs by ``teacher.TextEncoder``.)"""

    backend: Tokenizer
    pretokenize: Callable[[list[str]], list[str]] | None = None

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerFast) -> StudentEncoder:
        """The encoder of a loaded tokenizer (MissingPackageError if its pre-tokenizer is not installed)."""
        return cls(clean_backend(tokenizer), pretokenizer(tokenizer))

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, without special tokens."""
        texts = self.pretokenize(texts) if self.pretokenize else texts
        # encode_batch_fast skips the character offsets, which we never use (and is the faster call for one
        # text too)
        return [enc.ids for enc in self.backend.encode_batch_fast(texts, add_special_tokens=False)]


def encode_with(
    encoder: StudentEncoder, texts: list[str], max_length: int, unk_id: int | None = None
) -> list[list[int]]:
    """encode() with a StudentEncoder, for callers that encode repeatedly.

    A text with no tokens (empty, whitespace, only characters the normalizer drops) is a ValueError naming
    its index, or, given ``unk_id``, the single token ``[unk_id]`` (what Student does at inference).
    """
    ids = [seq[:max_length] for seq in encoder.ids(texts)]
    for i, seq in enumerate(ids):
        if not seq:
            if unk_id is None:
                text = texts[i]
                raise ValueError(f"text at index {i} produced no tokens (empty or whitespace-only): {text!r}")
            seq.append(unk_id)
    return ids


def encode(tokenizer: PreTrainedTokenizerFast, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text, without special tokens, truncated to max_length; empty results are an error."""
    return encode_with(StudentEncoder.of(tokenizer), texts, max_length)


def pad_ids(sequences: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad sequences into input_ids [B, max_len] and return them with lengths [B] (NumPy int64)."""
    if not sequences:
        raise ValueError("need at least one sequence to pad")
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    input_ids = np.full((len(sequences), int(lengths.max())), pad_id, dtype=np.int64)
    input_ids[np.arange(input_ids.shape[1]) < lengths[:, None]] = np.fromiter(
        itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum())
    )
    return input_ids, lengths


def pad_batch(sequences: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad sequences into input_ids [B, max_len] and return them with lengths [B]."""
    input_ids, lengths = pad_ids(sequences, pad_id)
    return torch.from_numpy(input_ids), torch.from_numpy(lengths)


# -----------------------------------------------------------------------------
# saving and loading


def is_student_dir(path: str | Path) -> bool:
    """True if path/config.json exists and declares our model_type."""
    try:
        config = json.loads((Path(path) / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == STUDENT_MODEL_TYPE


def _write_student(
    model: BiLSTMClassifier, tokenizer: PreTrainedTokenizerFast, directory: Path, extra: dict | None
) -> None:
    save_tokenizer_files(tokenizer, directory, model.config.max_length)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / WEIGHTS_NAME, metadata={"format": "pt"})
    config = model.config.to_dict() | {"model_type": STUDENT_MODEL_TYPE}
    if extra is not None:
        config["training"] = extra
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def save_student(
    model: BiLSTMClassifier,
    tokenizer: PreTrainedTokenizerFast,
    directory: str | Path,
    extra: dict | None = None,
) -> Path:
    """Write config, weights, tokenizer and manifest into directory atomically; returns the directory.

    Everything goes into a temporary sibling first, which is then renamed into place. An existing
    directory is replaced only if it is empty or a previously saved student (else FileExistsError).
    Weights with NaN or Inf values are refused (ValueError).
    """
    directory = Path(directory)
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise ValueError(f"refusing to save NaN/Inf weights (in {', '.join(bad)}) as the student {directory}")
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size}"
        )
    if directory.exists() and not (
        directory.is_dir() and (is_student_dir(directory) or not any(directory.iterdir()))
    ):
        raise FileExistsError(f"{directory} exists and is not a student directory; refusing to replace it")

    def write(tmp: Path) -> None:
        _write_student(model, tokenizer, tmp, extra)
        write_manifest(tmp)

    return atomic_dir(directory, write)


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold NaN or Inf."""
    return [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def load_student(
    directory: str | Path, device: str | torch.device = "cpu", *, check_onnx: bool = True
) -> tuple[BiLSTMClassifier, PreTrainedTokenizerFast]:
    """Load a model (in eval mode) and its tokenizer from a directory written by save_student.

    The folder's files are checked against its manifest.json first (see verify_manifest; check_onnx=False
    leaves out onnx/, which save_onnx is about to replace), the config against its bounds and the tokenizer.
    A file that cannot be read (corrupt, truncated, not matching the config) raises CorruptFileError naming
    it and the remedy; weights with NaN or Inf values are refused (ValueError).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"student directory not found: {directory} (give runs/<dataset>/<run>/student, a folder in "
            "models/ or a Hugging Face Hub id org/name)"
        )
    for name in (CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a complete student directory: {name} is missing")
    config = _read_config(directory / CONFIG_NAME)
    verify_manifest(directory, check_onnx=check_onnx)
    tokenizer = _read_tokenizer(directory, config)
    weights = directory / WEIGHTS_NAME
    state = _read_weights(weights, config)
    bad = non_finite_tensors(state)
    if bad:
        raise ValueError(f"{weights} holds NaN/Inf weights (in {', '.join(bad)}); retrain the student")
    model = BiLSTMClassifier(config)
    model.load_state_dict(state)
    return model.to(device).eval(), tokenizer


def student_labels(directory: str | Path) -> list[str]:
    """The label names of a saved student (its config.json's ``id2label``)."""
    return _read_config(Path(directory) / CONFIG_NAME).label_names()


def _read_config(path: Path) -> StudentConfig:
    """The StudentConfig in a student's config.json; CorruptFileError if it cannot be read as one or its
    values are out of StudentConfig's bounds."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise corrupt_file(path, err) from None
    if not isinstance(config, dict):
        raise corrupt_file(path, ValueError("not a JSON object"))
    if config.get("model_type") != STUDENT_MODEL_TYPE:
        found = config.get("model_type")
        raise ValueError(f"{path} has model_type {found!r}, expected {STUDENT_MODEL_TYPE!r}")
    config.pop("training", None)
    try:
        return StudentConfig.from_dict(config)
    except (TypeError, ValueError) as err:
        raise corrupt_file(path, err) from None


def _read_tokenizer(directory: Path, config: StudentConfig) -> PreTrainedTokenizerFast:
    """The folder's tokenizer; CorruptFileError if it cannot be read or has ids beyond the embedding."""
    path = directory / TOKENIZER_NAME
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    except Exception as err:
        raise corrupt_file(path, err) from None
    if len(tokenizer) > config.vocab_size:
        reason = f"{len(tokenizer)} tokens, {CONFIG_NAME} gives the model {config.vocab_size} (vocab_size)"
        raise corrupt_file(path, ValueError(reason), "belongs to another student")
    return tokenizer


def _read_weights(path: Path, config: StudentConfig) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors, checked against the shapes the config gives (before the model is
    built, so that a config asking for a huge model allocates nothing)."""
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as err:
        raise corrupt_file(path, err) from None
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in BiLSTMClassifier(config).state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if found != expected:
        name = sorted(n for n in found.keys() | expected.keys() if found.get(n) != expected.get(n))[0]
        reason = f"{name}: {found.get(name, 'missing')}, {CONFIG_NAME} gives {expected.get(name, 'none')}"
        raise corrupt_file(path, ValueError(reason), f"does not fit {CONFIG_NAME}")
    return state


# -----------------------------------------------------------------------------
# exported forms (ONNX Runtime, float32 and int8)

ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
FINGERPRINT_KEY = "weights_sha256"  # ONNX metadata: the weights a graph was exported from


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names and values of the model's state dict."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where C++ code writes its warnings) to /dev/null for the duration."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def export_onnx(model: BiLSTMClassifier, quantize: bool = False) -> bytes:
    """The model as a serialized ONNX graph: input_ids [B, T] and lengths [B] (int64) -> logits
    [B, num_labels].

    quantize=True stores the weights as int8 (onnxruntime dynamic quantization; activations are quantized on
    the fly) with 7-bit weight range: CPUs without VNNI (plain AVX2) saturate on full-range u8s8 products.
    The graph carries the weights' fingerprint, which Student checks against the model it serves.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process, quantize_dynamic

    model = copy.deepcopy(model).cpu().eval()
    example = (torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 2]))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _quiet_stderr():
        # the legacy TorchScript exporter (the one that handles packed sequences) warns about itself and
        # about the shapes of packed sequences, in Python and in C++; the tests check the graph against torch
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            input_names=["input_ids", "lengths"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
        )
        if quantize:
            quant_pre_process(path, Path(tmp) / "prepared.onnx")
            quantize_dynamic(Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx", reduce_range=True)
            path = Path(tmp) / "int8.onnx"
        graph = onnx.load(path)
    onnx.helper.set_model_props(graph, {FINGERPRINT_KEY: weights_fingerprint(model)})
    return graph.SerializeToString()


def save_onnx(directory: str | Path) -> dict[str, Path]:
    """Export a saved student to directory/onnx/ (model.onnx and model-int8.onnx); returns backend -> path.

    Student.from_pretrained(directory, backend=...) then loads these instead of exporting on the fly. The
    folder's manifest records the new graphs (this also repairs graphs that fail it).
    """
    model, _ = load_student(directory, check_onnx=False)
    out = Path(directory) / ONNX_DIR
    out.mkdir(exist_ok=True)
    paths = {}
    for backend, name in ONNX_FILES.items():
        graph = export_onnx(model, quantize=backend == "onnx-int8")
        atomic_save(out / name, lambda tmp, graph=graph: tmp.write_bytes(graph))
        paths[backend] = out / name
    add_to_manifest(Path(directory), list(paths.values()))
    return paths


# -----------------------------------------------------------------------------
# inference

ONNX_MIN_FILL = 0.75  # onnxruntime's LSTM computes every padded step: cut batches at this length ratio


def length_batches(sorted_lengths: np.ndarray, batch_size: int, min_fill: float = 0.0) -> list[slice]:
    """Batches over lengths sorted longest first: at most batch_size each, and a batch ends before a
    sequence shorter than min_fill times its first (longest) one."""
    batches, start = [], 0
    for i in range(1, len(sorted_lengths) + 1):
        if (
            i == len(sorted_lengths)
            or i - start == batch_size
            or sorted_lengths[i] < min_fill * sorted_lengths[start]
        ):
            batches.append(slice(start, i))
            start = i
    return batches


class Student:
    """Inference wrapper: the predict API used by the notebook, the bench and any server.

    backend: "torch" (the model itself, on any device), "onnx" (ONNX Runtime, CPU) or "onnx-int8"
    (ONNX Runtime with int8 weights: the fastest on CPU, as accurate on NSMC). threads: ONNX Runtime's
    intra-op threads; 1 (the default) is the robust choice for a server with one worker per core and on a
    shared machine, 0 takes one per physical core. The torch backend follows torch.set_num_threads.
    """

    def __init__(
        self,
        model: BiLSTMClassifier,
        tokenizer: PreTrainedTokenizerFast,
        device: str | torch.device = "cpu",
        backend: str = "torch",
        threads: int = 1,
        onnx_model: bytes | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.device = torch.device(device)
        if backend != "torch" and self.device.type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU, not on {self.device}")
        self.backend = backend
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.labels: list[str] = self.config.label_names()  # the columns of predict_proba
        self._encoder = StudentEncoder.of(tokenizer)
        self._unk_id = tokenizer.unk_token_id
        self._session = None
        self.training: dict | None = None  # config.json's "training" record and metrics.json, when loaded
        self.metrics: dict | None = None  # from a folder that has them (used by model cards and the server)
        if backend != "torch":
            self._session = self._onnx_session(
                onnx_model or export_onnx(model, quantize=backend == "onnx-int8"), threads
            )

    def _onnx_session(self, onnx_model: bytes, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        if session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY) != weights_fingerprint(
            self.model
        ):
            raise ValueError("the ONNX graph was exported from other weights; export it again (save_onnx)")
        return session

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        backend: str = "torch",
        threads: int = 1,
        revision: str | None = None,
    ) -> Student:
        """Load a saved student; ONNX backends use directory/onnx/ (see save_onnx) if present, else export
        now.

        directory may also be a Hugging Face Hub repository id ("org/name", optionally at a revision) that is
        not a local path: it is downloaded once into the Hub cache (offline with HF_HUB_OFFLINE=1).
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        directory = resolve_student_dir(directory, revision)
        model, tokenizer = load_student(directory, device)
        onnx_path = Path(directory) / ONNX_DIR / ONNX_FILES.get(backend, "")
        onnx_model = onnx_path.read_bytes() if backend != "torch" and onnx_path.is_file() else None
        student = cls(model, tokenizer, device, backend, threads, onnx_model)
        student.training, student.metrics = read_student_info(directory)
        return student

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a self-contained folder atomically: config, weights, tokenizer files, the int8 ONNX graph,
        metrics.json (if known) and a README.md model card. An existing folder is replaced only if it is
        empty or a student folder."""
        directory = Path(directory)
        if directory.exists() and not (
            directory.is_dir() and (is_student_dir(directory) or not any(directory.iterdir()))
        ):
            raise FileExistsError(f"{directory} exists and is not a student folder; refusing to replace it")
        return atomic_dir(directory, lambda tmp: write_bundle(self, tmp))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        commit_message: str = "Upload DistilKoBiLSTM student",
        api=None,
    ):
        """Upload the folder save_pretrained writes (its model card shows how to load repo_id) to the
        Hugging Face Hub model repository repo_id, creating it if needed; returns the hub's CommitInfo.

        api: a huggingface_hub.HfApi (default HfApi(token=token); without a token, the one from
        `hf auth login` or HF_TOKEN).
        """
        from huggingface_hub import HfApi

        api = api or HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "student"
            folder.mkdir()
            write_bundle(self, folder, repo_id=repo_id)
            api.create_repo(repo_id, private=private, exist_ok=True)
            return api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision
            )

    def _run(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"input_ids": input_ids, "lengths": lengths})[0]
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(input_ids).to(self.device), torch.from_numpy(lengths))
        return logits.float().cpu().numpy()

    def predict_logits(self, texts: list[str] | str, batch_size: int = 64) -> np.ndarray:
        """Logits [N, num_labels] (float32) in input order; texts are batched by length for speed.

        A text without tokens (empty, whitespace-only, only control or zero-width characters) is read as the
        single token [UNK], so it gets a prediction like any other; an item that is not a str (None, bytes,
        a number) is a TypeError and a text with a lone surrogate a ValueError, each naming its index. A
        single str counts as a list of one; texts that are no sequence (a dict, a set, a generator) are a
        TypeError.
        """
        ids = encode_with(self._encoder, _check_texts(texts), self.config.max_length, self._unk_id)
        return self.logits_from_ids(ids, batch_size)

    def logits_from_ids(self, ids: list[list[int]], batch_size: int = 64) -> np.ndarray:
        """predict_logits for texts already encoded (see encode): the model alone, without tokenization."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(ids) == 1:  # nothing to sort or pad
            return self._run(np.array(ids, dtype=np.int64), np.array([len(ids[0])], dtype=np.int64))
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        # torch packs sequences and skips padding; onnxruntime computes it, so its batches keep lengths close
        min_fill = 0.0 if self._session is None else ONNX_MIN_FILL
        logits = np.empty((len(ids), self.config.num_labels), dtype=np.float32)
        for batch in length_batches(lengths[order], batch_size, min_fill):
            idx = order[batch]
            logits[idx] = self._run(*pad_ids([ids[i] for i in idx], self.config.pad_id))
        return logits

    def predict_proba(self, texts: list[str] | str, batch_size: int = 64) -> np.ndarray:
        """Class probabilities [N, num_labels] (float32), columns in the order of ``self.labels``."""
        return torch.softmax(torch.from_numpy(self.predict_logits(texts, batch_size)), dim=-1).numpy()

    def predict(self, texts: list[str] | str, batch_size: int = 64) -> list[int] | int:
        """Predicted label ids; a single string gives a single int (see predict_logits for odd inputs)."""
        if isinstance(texts, str):
            return self.predict([texts], batch_size)[0]
        return self.predict_logits(texts, batch_size).argmax(axis=-1).tolist()

    def predict_labels(self, texts: list[str] | str, batch_size: int = 64) -> list[str] | str:
        """Predicted label names (``self.labels``: 부정 / 긍정, 1-5, ...); a single string gives one name."""
        if isinstance(texts, str):
            return self.labels[self.predict(texts, batch_size)]
        return [self.labels[i] for i in self.predict(texts, batch_size)]


def _check_texts(texts: Sequence[str] | str) -> list[str]:
    """texts as a list of str: a str is a list of one. Anything but a sequence or a 1-D array (a dict, whose
    keys would be read, a set, a generator) and an item that is not a str are a TypeError; a text that
    cannot be encoded (a lone surrogate, which the tokenizer rejects) is a ValueError naming its index."""
    if isinstance(texts, str):
        return [texts]
    if not (isinstance(texts, Sequence) or getattr(texts, "ndim", None) == 1):
        kind = type(texts).__name__
        raise TypeError(f"texts must be a str or a sequence of str (list, tuple, 1-D array), not {kind}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str: {text!r:.80}")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                problem = f"it holds a lone surrogate at character {err.start}"
                raise ValueError(f"texts[{i}] is not valid UTF-8 text: {problem}") from None
    return texts


# -----------------------------------------------------------------------------
# sharing: bundled folders, model cards, the Hugging Face Hub

METRICS_NAME = "metrics.json"
BUNDLED_STUDENTS = tuple(Path(__file__).resolve().parent / "models" / n for n in BUNDLED_NAMES)
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # org/name


def resolve_student_dir(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local folder as is; a Hub repository id "org/name" that is not a local path: its snapshot in the
    Hub cache (downloaded if missing, unless HF_HUB_OFFLINE=1)."""
    path = Path(name_or_path)
    if path.exists() or not HUB_REPO_ID.fullmatch(str(name_or_path)):
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision))
    except OSError as err:  # huggingface_hub's not-found, offline and HTTP errors are all OSErrors
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise FileNotFoundError(
            f"{name_or_path!r} is not a local student folder, and getting it from the Hugging Face Hub "
            f"failed ({type(err).__name__}: {first_line}); give an existing folder or a Hub repository id "
            "(with network access, or already in the Hub cache when HF_HUB_OFFLINE=1)"
        ) from err


def bundled_student() -> Path:
    """The best bundled student folder in models/ (the first of BUNDLED_NAMES that is there)."""
    for path in BUNDLED_STUDENTS:
        if is_student_dir(path):
            return path
    raise FileNotFoundError(
        f"no bundled student in {BUNDLED_STUDENTS[0].parent} ({', '.join(BUNDLED_NAMES)}); pass a student "
        "folder such as runs/<dataset>/<run>/student (train one with `python distil.py run ...`)"
    )


def read_student_info(directory: str | Path) -> tuple[dict | None, dict | None]:
    """config.json's "training" record and the metrics.json inside the folder (a bundle) or beside it
    (runs/<dataset>/<run>/student), each None when absent."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    for path in (directory / METRICS_NAME, directory.parent / METRICS_NAME):
        if path.is_file():
            return config.get("training"), json.loads(path.read_text(encoding="utf-8"))
    return config.get("training"), None


def write_bundle(student: Student, directory: Path, repo_id: str | None = None) -> None:
    """The files of a shareable student folder, written into an existing empty directory (its manifest
    last)."""
    model = copy.deepcopy(student.model).cpu()
    _write_student(model, student.tokenizer, directory, student.training)
    int8 = directory / ONNX_DIR / ONNX_FILES["onnx-int8"]
    int8.parent.mkdir()
    int8.write_bytes(export_onnx(model, quantize=True))
    if student.metrics is not None:
        text = json.dumps(student.metrics, indent=2, ensure_ascii=False)
        (directory / METRICS_NAME).write_text(text, encoding="utf-8")
    card = model_card(student, repo_id, int8_bytes=int8.stat().st_size)
    (directory / CARD_NAME).write_text(card, encoding="utf-8")
    write_manifest(directory)


def package_student(source: str | Path, out: str | Path) -> Path:
    """Bundle a run's student (runs/<dataset>/<run> or its student/ folder) into out (e.g. models/nsmc-base):
    config, safetensors weights, tokenizer files, the int8 ONNX graph, metrics.json and a model card."""
    source = Path(source)
    if not is_student_dir(source) and is_student_dir(source / "student"):
        source = source / "student"
    student = Student.from_pretrained(source)
    if student.metrics is None:
        raise FileNotFoundError(
            f"no metrics.json in or beside {source}: package a finished run (its card shows test accuracy)"
        )
    return student.save_pretrained(out)
