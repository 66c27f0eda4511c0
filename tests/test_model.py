"""Tests for model.py: the BiLSTM student, encoding, saving/loading and the Student predict API."""

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import manifest
import model as M
from config import BACKENDS, POOLINGS, StudentConfig
from model import (
    STUDENT_MODEL_TYPE,
    BiLSTMClassifier,
    Student,
    encode,
    export_onnx,
    is_student_dir,
    length_batches,
    load_student,
    pad_batch,
    save_onnx,
    save_student,
)
from utils import CorruptFileError, count_parameters

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CORPUS = [
    "이 영화 정말 좋아요",
    "배우들 연기가 별로예요",
    "스토리가 너무 지루하고 별로예요",
    "음악도 좋고 영상도 좋아요",
    "다시 보고 싶을 만큼 좋아요",
    "시간 낭비였어요 별로예요",
    "감독의 연출이 훌륭하다",
    "오늘 날씨가 맑고 바람이 분다",
]
FILLER = [
    "이",
    "영화",
    "정말",
    "배우들",
    "연기가",
    "스토리가",
    "음악도",
    "영상도",
    "오늘",
    "날씨가",
    "감독의",
    "연출이",
]
PRESET_COUNTS = {"tiny": 27394, "mini": 52418, "small": 146434, "base": 391170, "large": 1175554}


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFC(),
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
            ),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These tensors are tiny: one thread is faster, and immune to oversubscription on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


def make_model(vocab_size: int, seed: int = 0, **kwargs) -> BiLSTMClassifier:
    torch.manual_seed(seed)
    config = StudentConfig(vocab_size=vocab_size, **{"embedding_dim": 8, "hidden_dim": 6, **kwargs})
    return BiLSTMClassifier(config).eval()


def make_student_dir(tokenizer, directory: Path, seed: int = 0) -> BiLSTMClassifier:
    model = make_model(len(tokenizer), seed=seed)
    save_student(model, tokenizer, directory)
    return model


# -----------------------------------------------------------------------------
# config and architecture


@pytest.mark.parametrize("size", list(PRESET_COUNTS))
def test_preset_parameter_counts(size):
    config = StudentConfig.from_size(size, 3000)
    assert config.size == size
    assert count_parameters(BiLSTMClassifier(config)) == PRESET_COUNTS[size]


def test_from_size_overrides_and_unknown_size():
    config = StudentConfig.from_size("small", 500, pooling="max", num_labels=3)
    assert (config.embedding_dim, config.hidden_dim, config.pooling, config.num_labels) == (32, 64, "max", 3)
    with pytest.raises(ValueError, match="tiny.*mini.*small.*base.*large"):
        StudentConfig.from_size("huge", 500)


def test_invalid_config_rejected():
    with pytest.raises(ValueError, match="pooling"):
        StudentConfig(vocab_size=10, pooling="mean")
    with pytest.raises(ValueError, match="pad_id"):
        StudentConfig(vocab_size=10, pad_id=10)


def test_config_dict_round_trip():
    config = StudentConfig.from_size("mini", 123, pooling="attention", fc_dim=4, dropout=0.1)
    d = config.to_dict()
    assert d["size"] == "mini" and d["pooling"] == "attention"
    assert StudentConfig.from_dict(d | {"model_type": STUDENT_MODEL_TYPE}) == config
    with pytest.raises(ValueError, match="bogus"):
        StudentConfig.from_dict(d | {"bogus": 1})


def test_custom_size_fc_dim_and_layers():
    e, h, fc, labels, vocab = 10, 12, 7, 3, 100
    model = BiLSTMClassifier(
        StudentConfig(
            vocab_size=vocab,
            embedding_dim=e,
            hidden_dim=h,
            num_layers=2,
            num_labels=labels,
            pooling="attention",
            fc_dim=fc,
        )
    )
    lstm = 2 * (4 * h * (e + h) + 8 * h) + 2 * (4 * h * (2 * h + h) + 8 * h)
    expected = vocab * e + lstm + (2 * h + 1) + (2 * h * fc + fc) + (fc * labels + labels)
    assert count_parameters(model) == expected
    logits = model(torch.randint(1, vocab, (4, 9)), torch.tensor([9, 3, 1, 5]))
    assert logits.shape == (4, labels) and logits.dtype == torch.float32


def reference_pooled(model: BiLSTMClassifier, ids: list[int]) -> torch.Tensor:
    """Pooling computed by hand on a single unpadded sequence."""
    out, (h_n, _) = model.lstm(model.embedding(torch.tensor([ids])))
    out = out[0]
    if model.config.pooling == "last":
        return torch.cat([h_n[-2, 0], h_n[-1, 0]])
    if model.config.pooling == "max":
        return out.max(dim=0).values
    weights = torch.softmax(model.attention(out).squeeze(-1), dim=0)
    return (weights[:, None] * out).sum(dim=0)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_pooling_matches_reference(pooling, num_layers):
    model = make_model(50, pooling=pooling, num_layers=num_layers)
    ids = [5, 17, 3, 42, 8, 11]
    with torch.no_grad():
        expected = model.classifier(reference_pooled(model, ids))
        logits = model(torch.tensor([ids]), torch.tensor([len(ids)]))[0]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padding_invariance(pooling, num_layers):
    model = make_model(50, pooling=pooling, num_layers=num_layers, fc_dim=5)
    short, long = [7, 8, 9, 10, 11], [20, 21, 22, 23, 24, 25, 26, 27, 28]
    with torch.no_grad():
        alone = model(torch.tensor([short]), torch.tensor([5]))[0]
        input_ids, lengths = pad_batch([long, short])
        batched = model(input_ids, lengths)[1]
        extra_pad = model(torch.tensor([short + [0] * 10]), torch.tensor([5]))[0]
        # positions past the length must be ignored whatever they contain
        garbage = model(torch.tensor([[*short, 33, 44, 45, 46]]), torch.tensor([5]))[0]
    for other in (batched, extra_pad, garbage):
        torch.testing.assert_close(other, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_onnx_export_matches_torch(pooling):
    ort = pytest.importorskip("onnxruntime")
    model = make_model(50, pooling=pooling, num_layers=2).train()
    graph = export_onnx(model)  # exports in eval mode (no dropout) without switching the model itself
    assert model.training
    model.eval()
    input_ids, lengths = pad_batch([[4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [19], [20, 21]])
    (logits,) = ort.InferenceSession(graph).run(
        None, {"input_ids": input_ids.numpy(), "lengths": lengths.numpy()}
    )
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(input_ids, lengths).numpy(), atol=1e-5)


# -----------------------------------------------------------------------------
# encode / pad_batch


def test_encode_no_special_tokens_and_truncation(tokenizer):
    ids = encode(tokenizer, ["이 영화 정말 좋아요", "별로예요"], max_length=128)
    assert ids[0] == tokenizer.convert_tokens_to_ids(tokenizer.tokenize("이 영화 정말 좋아요"))
    special = set(tokenizer.convert_tokens_to_ids(SPECIALS))
    assert all(len(seq) >= 1 and not special & set(seq) for seq in ids)
    long_text = " ".join(FILLER * 3)
    assert encode(tokenizer, [long_text], max_length=4)[0] == encode(tokenizer, [long_text], 1000)[0][:4]


@pytest.mark.parametrize("bad", ["", "   \t\n", "\u200b\x00"])
def test_encode_empty_text_names_index(tokenizer, bad):
    with pytest.raises(ValueError, match="index 1"):
        encode(tokenizer, ["좋아요", bad, "별로예요"], max_length=16)


def test_encode_ignores_padding_and_truncation_left_on_backend():
    tokenizer = build_tokenizer()
    expected = encode(tokenizer, ["좋아요", "이 영화 정말 좋아요"], max_length=128)
    tokenizer.backend_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=20)
    tokenizer.backend_tokenizer.enable_truncation(max_length=2)
    assert encode(tokenizer, ["좋아요", "이 영화 정말 좋아요"], max_length=128) == expected


def test_pad_batch():
    input_ids, lengths = pad_batch([[5, 6], [7, 8, 9], [4]], pad_id=1)
    assert input_ids.dtype == lengths.dtype == torch.long
    assert input_ids.tolist() == [[5, 6, 1], [7, 8, 9], [4, 1, 1]]
    assert lengths.tolist() == [2, 3, 1]


# -----------------------------------------------------------------------------
# save / load


def test_save_load_round_trip(tokenizer, tmp_path):
    model = make_model(len(tokenizer), pooling="attention", fc_dim=4)
    out = save_student(model, tokenizer, tmp_path / "student", extra={"epochs": 3, "teacher": "kobert"})
    assert out == tmp_path / "student" and is_student_dir(out)

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == STUDENT_MODEL_TYPE
    assert config["training"] == {"epochs": 3, "teacher": "kobert"}
    vocab_lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert [tokenizer.convert_tokens_to_ids(t) for t in vocab_lines] == list(range(len(tokenizer)))

    loaded, loaded_tokenizer = load_student(out)
    assert loaded.config == model.config and not loaded.training
    texts = ["이 영화 정말 좋아요", "스토리가 너무 지루하고 별로예요", "처음 보는 단어들"]
    assert encode(loaded_tokenizer, texts, 128) == encode(tokenizer, texts, 128)
    input_ids, lengths = pad_batch(encode(tokenizer, texts, 128))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids, lengths), model(input_ids, lengths))


def test_save_replaces_existing_directory_atomically(tokenizer, tmp_path):
    target = tmp_path / "student"
    make_student_dir(tokenizer, target, seed=0)
    (target / "stale.txt").write_text("old run")
    second = make_student_dir(tokenizer, target, seed=1)
    assert not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["student"]
    loaded, _ = load_student(target)
    for name, tensor in second.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_failed_save_keeps_previous_version(tokenizer, tmp_path, monkeypatch):
    target = tmp_path / "student"
    first = make_student_dir(tokenizer, target, seed=0)

    def broken_save_file(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(M, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        make_student_dir(tokenizer, target, seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["student"]
    loaded, _ = load_student(target)
    assert torch.equal(loaded.embedding.weight, first.embedding.weight)


def test_save_refuses_to_replace_foreign_directory(tokenizer, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_student_dir(tokenizer, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_load_errors(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_student(tmp_path / "missing")

    foreign = tmp_path / "bert"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (foreign / "model.safetensors").write_bytes(b"")
    (foreign / "tokenizer.json").write_text("{}")
    assert not is_student_dir(foreign) and not is_student_dir(tmp_path / "missing")
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_student(foreign)

    partial = tmp_path / "partial"
    make_student_dir(tokenizer, partial)
    (partial / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_student(partial)


# -----------------------------------------------------------------------------
# Student predict API


def test_student_predict_order_and_single_string(tokenizer, tmp_path):
    make_student_dir(tokenizer, tmp_path / "s")
    student = Student.from_pretrained(tmp_path / "s")
    assert student.labels == ["negative", "positive"]
    texts = [
        "좋아요",
        "스토리가 너무 지루하고 별로예요",
        "이 영화",
        "다시 보고 싶을 만큼 좋아요",
        "별로예요",
        "음악도 좋고",
    ]
    logits = student.predict_logits(texts, batch_size=2)
    assert logits.shape == (len(texts), 2) and logits.dtype == np.float32
    with torch.no_grad():
        for text, row in zip(texts, logits):
            input_ids, lengths = pad_batch(encode(tokenizer, [text], 128))
            np.testing.assert_allclose(row, student.model(input_ids, lengths)[0].numpy(), atol=1e-5)

    proba = student.predict_proba(texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    predictions = student.predict(texts)
    assert predictions == logits.argmax(axis=1).tolist()
    assert student.predict(texts[3]) == predictions[3] and isinstance(student.predict(texts[3]), int)
    assert student.predict_logits([]).shape == (0, 2)


def test_student_truncates_to_config_max_length(tokenizer):
    model = make_model(len(tokenizer), max_length=3)
    student = Student(model, tokenizer)
    text = "스토리가 너무 지루하고 별로예요 정말"
    ids = encode(tokenizer, [text], 1000)[0]
    assert len(ids) > 3
    with torch.no_grad():
        expected = model(torch.tensor([ids[:3]]), torch.tensor([3]))[0].numpy()
    np.testing.assert_allclose(student.predict_logits([text])[0], expected, atol=1e-6)


def test_student_errors_and_multiclass_labels(tokenizer):
    student = Student(make_model(len(tokenizer)), tokenizer)
    cases = ((["좋아요", None], 1, "NoneType"), ([b"bytes"], 0, "bytes"), (["a", "b", 3], 2, "int"))
    for bad, index, kind in cases:
        with pytest.raises(TypeError, match=rf"texts\[{index}\] is {kind}, not str"):
            student.predict(bad)
    with pytest.raises(TypeError, match="not NoneType"):
        student.predict(None)
    assert Student(make_model(len(tokenizer), num_labels=3), tokenizer).labels == ["0", "1", "2"]


def toy_texts(n: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """Random filler words with one sentiment word inserted somewhere: label 1 for 좋아요, 0 for 별로예요."""
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(1, 6))
        words.insert(rng.randint(0, len(words)), "좋아요" if label else "별로예요")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def test_tiny_model_learns_toy_task(tokenizer):
    rng = random.Random(0)
    torch.manual_seed(0)
    train_texts, train_labels = toy_texts(512, rng)
    test_texts, test_labels = toy_texts(200, rng)
    model = BiLSTMClassifier(StudentConfig.from_size("tiny", len(tokenizer), dropout=0.1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = encode(tokenizer, train_texts, 32)
    targets = torch.tensor(train_labels)
    model.train()
    for _ in range(200):
        batch = torch.randint(0, len(ids), (32,))
        input_ids, lengths = pad_batch([ids[i] for i in batch])
        loss = torch.nn.functional.cross_entropy(model(input_ids, lengths), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = np.mean(np.array(Student(model, tokenizer).predict(test_texts)) == np.array(test_labels))
    assert accuracy > 0.9


# -----------------------------------------------------------------------------
# fast inference: exported backends, batching


TEXTS = [
    "좋아요",
    "스토리가 너무 지루하고 별로예요",
    "이 영화",
    "다시 보고 싶을 만큼 좋아요",
    "별로예요",
    "음악도 좋고",
    " ".join(FILLER),
]


def test_length_batches_cut_at_size_and_fill():
    lengths = np.array([10, 9, 8, 7, 4, 3, 3, 3, 1])
    assert length_batches(lengths, batch_size=4) == [slice(0, 4), slice(4, 8), slice(8, 9)]
    # a batch ends before a sequence shorter than 0.75 x its longest: 10,9,8 | 7 | 4,3,3,3 | 1
    assert length_batches(lengths, batch_size=64, min_fill=0.75) == [
        slice(0, 3),
        slice(3, 4),
        slice(4, 8),
        slice(8, 9),
    ]
    assert length_batches(np.array([], dtype=np.int64), batch_size=8) == []


def test_encode_matches_the_tokenizer_text_by_text(tokenizer):
    batch = encode(tokenizer, TEXTS, max_length=5)
    assert [encode(tokenizer, [text], max_length=5)[0] for text in TEXTS] == batch
    assert batch == [tokenizer(text, add_special_tokens=False)["input_ids"][:5] for text in TEXTS]


@pytest.mark.parametrize("pooling", POOLINGS)
def test_onnx_backend_matches_torch(tokenizer, pooling):
    model = make_model(len(tokenizer), pooling=pooling, num_layers=2, fc_dim=5)
    torch_student, onnx_student = (
        Student(model, tokenizer),
        Student(model, tokenizer, backend="onnx", threads=1),
    )
    for batch_size in (1, 3, 64):
        np.testing.assert_allclose(
            onnx_student.predict_logits(TEXTS, batch_size),
            torch_student.predict_logits(TEXTS, batch_size),
            atol=1e-5,
        )
    np.testing.assert_allclose(
        onnx_student.predict_logits(TEXTS[1:2]), torch_student.predict_logits(TEXTS[1:2]), atol=1e-5
    )
    assert onnx_student.predict(TEXTS[3]) == torch_student.predict(TEXTS[3])
    assert onnx_student.predict_logits([]).shape == (0, 2)


def test_onnx_int8_is_quantized_and_close(tokenizer):
    onnx = pytest.importorskip("onnx")
    model = make_model(len(tokenizer), embedding_dim=32, hidden_dim=64)
    float_graph, int8_graph = export_onnx(model), export_onnx(model, quantize=True)
    assert "DynamicQuantizeLSTM" in {node.op_type for node in onnx.load_from_string(int8_graph).graph.node}
    assert len(int8_graph) < len(float_graph) / 2
    reference = Student(model, tokenizer).predict_logits(TEXTS)
    int8 = Student(model, tokenizer, backend="onnx-int8").predict_logits(TEXTS)
    np.testing.assert_allclose(int8, reference, atol=0.02)
    assert not np.array_equal(int8, reference)  # it really runs in int8


def test_onnx_round_trip_from_saved_dir(tokenizer, tmp_path, monkeypatch):
    model = make_student_dir(tokenizer, tmp_path / "s")
    paths = save_onnx(tmp_path / "s")
    assert paths == {b: tmp_path / "s" / "onnx" / name for b, name in M.ONNX_FILES.items()}
    assert is_student_dir(tmp_path / "s") and not list((tmp_path / "s" / "onnx").glob("*.tmp"))
    expected = Student(model, tokenizer).predict_logits(TEXTS)

    def no_export(*args, **kwargs):
        raise AssertionError("the saved ONNX graph should have been used")

    monkeypatch.setattr(M, "export_onnx", no_export)
    for backend, atol in (("onnx", 1e-5), ("onnx-int8", 0.02)):
        student = Student.from_pretrained(tmp_path / "s", backend=backend, threads=1)
        assert student.backend == backend
        np.testing.assert_allclose(student.predict_logits(TEXTS, batch_size=2), expected, atol=atol)


def test_onnx_exported_on_the_fly_without_saved_graph(tokenizer, tmp_path):
    model = make_student_dir(tokenizer, tmp_path / "s")
    student = Student.from_pretrained(tmp_path / "s", backend="onnx")
    assert not (tmp_path / "s" / "onnx").exists()  # loading never writes into the student directory
    np.testing.assert_allclose(
        student.predict_logits(TEXTS), Student(model, tokenizer).predict_logits(TEXTS), atol=1e-5
    )


def test_onnx_graph_from_other_weights_is_refused(tokenizer, tmp_path):
    make_student_dir(tokenizer, tmp_path / "a", seed=0)
    make_student_dir(tokenizer, tmp_path / "b", seed=1)
    save_onnx(tmp_path / "a")
    (tmp_path / "b" / "onnx").mkdir()
    (tmp_path / "b" / "onnx" / "model.onnx").write_bytes(
        (tmp_path / "a" / "onnx" / "model.onnx").read_bytes()
    )
    with pytest.raises(CorruptFileError, match="onnx/model.onnx is not listed in manifest.json"):
        Student.from_pretrained(tmp_path / "b", backend="onnx")
    (tmp_path / "b" / "manifest.json").unlink()  # a folder saved before manifests: the graph's fingerprint
    with pytest.raises(ValueError, match="other weights"):
        Student.from_pretrained(tmp_path / "b", backend="onnx")


def test_unknown_backend_and_onnx_off_cpu_are_errors(tokenizer, tmp_path):
    model = make_model(len(tokenizer))
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'.*torch, onnx, onnx-int8"):
        Student(model, tokenizer, backend="tensorrt")
    make_student_dir(tokenizer, tmp_path / "s")
    with pytest.raises(ValueError, match="unknown backend 'int8'"):
        Student.from_pretrained(tmp_path / "s", backend="int8")
    with pytest.raises(ValueError, match="runs on the CPU"):
        Student(model, tokenizer, device="cuda", backend="onnx")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_predict_empty_texts_as_unk_and_refuse_bad_batch_size(tokenizer, backend):
    model = make_model(len(tokenizer))
    student = Student(model, tokenizer, backend=backend)
    unk = student.logits_from_ids([[tokenizer.unk_token_id]])[0]
    atol = 0.05 if backend == "onnx-int8" else 1e-5  # int8 quantizes activations per batch
    empty = ["", "  ", "\t\n", "\u200b\ufeff", "\x00"]
    logits = student.predict_logits(["좋아요", *empty, "별로예요"], batch_size=3)
    for row in logits[1:-1]:  # each empty text is read as [UNK], without disturbing its neighbours
        np.testing.assert_allclose(row, unk, atol=atol)
    np.testing.assert_allclose(logits[[0, -1]], student.predict_logits(["좋아요", "별로예요"]), atol=atol)
    assert student.predict(" ") == int(unk.argmax()) and student.predict_logits(" ").shape == (1, 2)
    with pytest.raises(ValueError, match="batch_size"):
        student.predict_logits(TEXTS, batch_size=0)


def test_logits_from_ids_is_predict_logits_without_tokenization(tokenizer):
    student = Student(make_model(len(tokenizer)), tokenizer)
    np.testing.assert_array_equal(
        student.logits_from_ids(encode(tokenizer, TEXTS, student.config.max_length)),
        student.predict_logits(TEXTS),
    )


# -----------------------------------------------------------------------------
# damaged or non-finite students


HIDDEN_6 = b'"hidden_dim": 6'


@pytest.mark.parametrize(
    "name, damage, named",
    [
        ("model.safetensors", lambda b: b[: len(b) // 2], "model.safetensors is corrupt or truncated"),
        ("model.safetensors", lambda b: b"", "model.safetensors is corrupt or truncated"),
        ("config.json", lambda b: b[: len(b) // 2], "config.json is corrupt or truncated"),
        ("config.json", lambda b: b.replace(HIDDEN_6, b'"hidden_dim": -6'), "config.json is corrupt"),
        # a valid config of another size: the weights no longer fit it
        ("config.json", lambda b: b.replace(HIDDEN_6, b'"hidden_dim": 7'), "model.safetensors does not fit"),
        ("tokenizer.json", lambda b: b[: len(b) // 2], "tokenizer.json is corrupt or truncated"),
    ],
)
def test_damaged_student_file_is_a_one_line_error_naming_it(tokenizer, tmp_path, name, damage, named):
    make_student_dir(tokenizer, tmp_path / "s")
    path = tmp_path / "s" / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptFileError, match=f"{name} (is corrupt|does not match its sha256)"):
        load_student(tmp_path / "s")  # config.json's own checks come first, then the manifest's
    (tmp_path / "s" / "manifest.json").unlink()  # each reader's own checks, as for a folder without one
    with pytest.raises(CorruptFileError) as err:
        load_student(tmp_path / "s")
    message = str(err.value)
    assert f"{tmp_path / 's'}/{named}" in message and "retrain" in message and "\n" not in message
    with pytest.raises(CorruptFileError, match=named):
        Student.from_pretrained(tmp_path / "s")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_never_saved_or_loaded(tokenizer, tmp_path, value):
    model = make_model(len(tokenizer))
    with torch.no_grad():
        model.classifier.bias[0] = value
    with pytest.raises(ValueError, match="refusing to save NaN/Inf weights \\(in classifier.bias\\)"):
        save_student(model, tokenizer, tmp_path / "s")
    assert not (tmp_path / "s").exists()
    # A file written some other way is refused on load.
    make_student_dir(tokenizer, tmp_path / "s")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    M.save_file(state, tmp_path / "s" / "model.safetensors")
    manifest.write_manifest(tmp_path / "s")
    with pytest.raises(ValueError, match="model.safetensors holds NaN/Inf weights \\(in classifier.bias\\)"):
        load_student(tmp_path / "s")


# -----------------------------------------------------------------------------
# the folder's manifest; configs and tokenizers that do not fit


def constant_graph(fingerprint: str, logits: tuple[float, float] = (-9.0, 9.0)) -> bytes:
    """An ONNX graph that answers the same logits for every text, carrying the given weights fingerprint."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Shape", ["lengths"], ["batch"]),
        helper.make_node("Constant", [], ["two"], value=helper.make_tensor("v", TensorProto.INT64, [1], [2])),
        helper.make_node("Concat", ["batch", "two"], ["shape"], axis=0),
        helper.make_node(
            "Constant", [], ["row"], value=helper.make_tensor("r", TensorProto.FLOAT, [1, 2], logits)
        ),
        helper.make_node("Expand", ["row", "shape"], ["logits"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "time"]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
    ]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_model(
        helper.make_graph(nodes, "forged", inputs, [output]), opset_imports=[helper.make_opsetid("", 17)]
    )
    graph.ir_version = 8
    helper.set_model_props(graph, {M.FINGERPRINT_KEY: fingerprint})
    return graph.SerializeToString()


def test_forged_onnx_graph_with_a_copied_fingerprint_is_refused(tokenizer, tmp_path):
    import onnx

    model = make_student_dir(tokenizer, tmp_path / "s")
    int8 = save_onnx(tmp_path / "s")["onnx-int8"]
    fingerprint = {p.key: p.value for p in onnx.load(int8).metadata_props}[M.FINGERPRINT_KEY]
    forged = constant_graph(fingerprint)
    # the fingerprint alone is fooled: the graph answers "positive" whatever the text
    fooled = Student(model, tokenizer, backend="onnx-int8", onnx_model=forged)
    assert fooled.predict(["별로예요", "시간 낭비였어요 별로예요"]) == [1, 1]
    int8.write_bytes(forged)
    for backend in BACKENDS:  # the folder is refused whichever backend is asked for
        with pytest.raises(CorruptFileError) as err:
            Student.from_pretrained(tmp_path / "s", backend=backend)
        message = str(err.value)
        assert message.startswith(
            f"{int8} does not match its sha256 in manifest.json; export the ONNX graphs"
        )
        assert f"model.save_onnx('{tmp_path / 's'}')" in message and "\n" not in message
    save_onnx(tmp_path / "s")  # the fix the message names
    student = Student.from_pretrained(tmp_path / "s", backend="onnx-int8")
    np.testing.assert_allclose(
        student.predict_logits(TEXTS), Student(model, tokenizer).predict_logits(TEXTS), atol=0.02
    )


def test_manifest_lists_the_student_files_and_refuses_missing_and_unlisted_ones(tokenizer, tmp_path):
    folder = tmp_path / "s"
    make_student_dir(tokenizer, folder)
    recorded = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    listed = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert sorted(recorded["files"]) == listed and {"config.json", "model.safetensors"} <= set(listed)
    assert (
        recorded["files"]["model.safetensors"]
        == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    )
    # not part of the student: the model card, hidden files, a student teacher's logits cache
    (folder / "README.md").write_text("# notes")
    (folder / ".gitattributes").write_text("*.onnx filter=lfs")
    (folder / "logits").mkdir()
    (folder / "logits" / "nsmc-train.safetensors").write_bytes(b"cache")
    load_student(folder)
    (folder / "special_tokens_map.json").write_text("{}")
    with pytest.raises(
        CorruptFileError, match="special_tokens_map.json is not listed in manifest.json; copy"
    ):
        load_student(folder)
    (folder / "special_tokens_map.json").unlink()
    (folder / "vocab.txt").unlink()
    with pytest.raises(CorruptFileError, match=r"vocab.txt is missing \(listed in manifest.json\); copy"):
        load_student(folder)
    (folder / "manifest.json").write_text('{"files": {"../../etc/passwd": "0"}}')
    with pytest.raises(CorruptFileError, match="manifest.json is corrupt"):
        load_student(folder)


def test_a_folder_without_manifest_loads_with_one_warning(tokenizer, tmp_path, caplog):
    folder = tmp_path / "old"
    make_student_dir(tokenizer, folder)
    (folder / "manifest.json").unlink()
    with caplog.at_level("WARNING", logger="distilkobilstm"):
        load_student(folder)
        Student.from_pretrained(folder, backend="onnx")
    assert caplog.text.count("has no manifest.json") == 1
    assert f"manifest.write_manifest('{folder}')" in caplog.text
    assert not (folder / "manifest.json").exists()  # loading never writes into the folder
    manifest.write_manifest(folder)
    assert manifest.verify_manifest(folder)


def test_a_config_too_large_for_its_bounds_is_refused_before_any_allocation(tokenizer, tmp_path):
    folder = tmp_path / "s"
    make_student_dir(tokenizer, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 10**10}), encoding="utf-8")
    (folder / "manifest.json").unlink(missing_ok=True)  # the config's own checks, not the manifest's
    with pytest.raises(CorruptFileError) as err:
        Student.from_pretrained(folder)
    message = str(err.value)
    assert message.startswith(f"{folder / 'config.json'} is corrupt") and "\n" not in message
    assert "vocab_size (--vocab-size) must be in [1, 1000000], got 10000000000" in message
    # within the bounds but not what the weights hold: refused before the model is built (4 GB here)
    (folder / "config.json").write_text(
        json.dumps({**config, "vocab_size": 1000000, "embedding_dim": 1024}), encoding="utf-8"
    )
    with pytest.raises(CorruptFileError, match=r"model.safetensors does not fit config.json \(embedding"):
        load_student(folder)


def test_a_tokenizer_larger_than_the_embedding_is_refused(tokenizer, tmp_path):
    folder = tmp_path / "s"
    small = tokenizer.train_new_from_iterator(CORPUS[:2], 20)
    assert len(small) < len(tokenizer)
    save_student(make_model(len(small)), small, folder)
    M.save_tokenizer_files(tokenizer, folder)  # another student's, larger vocabulary
    (folder / "manifest.json").unlink(missing_ok=True)  # the tokenizer's own check, not the manifest's
    with pytest.raises(CorruptFileError) as err:
        Student.from_pretrained(folder)
    message = str(err.value)
    assert message.startswith(
        f"{folder / 'tokenizer.json'} belongs to another student ({len(tokenizer)} tokens"
    )
    assert f"config.json gives the model {len(small)} (vocab_size)" in message and "\n" not in message


@pytest.mark.parametrize("folder", M.BUNDLED_STUDENTS, ids=[p.name for p in M.BUNDLED_STUDENTS])
def test_bundled_students_carry_a_manifest_that_holds(folder):
    assert manifest.verify_manifest(folder)
    listed = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "onnx/model-int8.onnx"} <= set(listed)
