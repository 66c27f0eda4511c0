"""Tests for teacher.py, offline, on tiny randomly initialised models with tokenizers trained here."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import sentencepiece as spm
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    BartConfig,
    BertConfig,
    BigBirdConfig,
    DistilBertConfig,
    ElectraConfig,
    GPT2Config,
    PreTrainedTokenizerFast,
    RobertaConfig,
    T5Config,
    XLNetConfig,
)

import card
import finetune
import kobert
import logits_cache
import teacher as teachers
from config import StudentConfig, TeacherConfig
from conftest import FILLER, NEGATIVE, POSITIVE, ROOT
from model import BiLSTMClassifier, save_student

PREDICT_TEXTS = [
    "좋아요",
    "이 영화 정말 최고 감동",
    "그냥 별로",
    " ".join(FILLER * 6),  # longer than every model's 64 positions: truncated
    "스토리 연기 음악 감독 내용 모두 최악 실망 노잼",
    "ㅋㅋ",
]


def reviews(n: int, seed: int) -> pd.DataFrame:
    """Learnable synthetic reviews: random filler plus one or two words of the label's polarity."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.choices(FILLER, k=rng.randint(2, 8)) + rng.choices(
            POSITIVE if label else NEGATIVE, k=rng.randint(1, 2)
        )
        rng.shuffle(words)
        rows.append({"id": f"r{seed}-{i}", "text": " ".join(words), "label": label, "source": "synthetic"})
    return pd.DataFrame(rows)


def splits(n_train: int, n_eval: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    return {
        "train": reviews(n_train, seed),
        "valid": reviews(n_eval, seed + 1),
        "test": reviews(n_eval, seed + 2),
    }


CORPUS = reviews(300, 99)["text"].tolist() + PREDICT_TEXTS


# ---------------------------------------------------------------------------------------------------------
# Tiny models of each architecture, saved with a tokenizer of the kind the real checkpoints ship
# ---------------------------------------------------------------------------------------------------------


def _template(tok: Tokenizer, single: str) -> processors.TemplateProcessing:
    names = [word for word in single.split() if word != "$A"]
    return processors.TemplateProcessing(
        single=single, special_tokens=[(n, tok.token_to_id(n)) for n in names]
    )


def wordpiece() -> PreTrainedTokenizerFast:
    """BERT-style WordPiece, ``[CLS] text [SEP]`` with token_type_ids (as klue/roberta's tokenizer too)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(strip_accents=False, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        CORPUS,
        trainers.WordPieceTrainer(
            vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        ),
    )
    tok.post_processor = _template(tok, "[CLS] $A [SEP]")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def metaspace(
    model_kind: str, specials: list[str], template: str | None, **tokens
) -> PreTrainedTokenizerFast:
    """SentencePiece-like Unigram or BPE over ``▁``-marked words (T5, XLNet, BigBird, KoBART)."""
    if model_kind == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=300, special_tokens=specials, unk_token=tokens["unk_token"]
        )
    else:
        tok = Tokenizer(models.BPE(unk_token=tokens["unk_token"]))
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials)
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainer)
    if template:
        tok.post_processor = _template(tok, template)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_input_names=["input_ids", "attention_mask"], **tokens
    )


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """GPT-2 / KoGPT2: byte-level BPE with an end-of-text token but no padding token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        bos_token="</s>",
        model_input_names=["input_ids", "attention_mask"],
    )


def train_sentencepiece(prefix: Path, **options) -> Path:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=str(prefix),
        vocab_size=80,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
        **options,
    )
    return prefix.with_suffix(".model")


def kobert_monologg(directory: Path) -> int:
    """monologg/kobert's files: tokenizer_78b3253a26.model + vocab.txt (ids from vocab.txt, specials
    first)."""
    model_file = train_sentencepiece(directory / "tokenizer_78b3253a26")
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    pieces = [
        sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_control(i) and not sp.is_unknown(i)
    ]
    vocab = [
        "[UNK]",
        "[PAD]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *sorted(pieces),
    ]  # an order unlike the SentencePiece ids
    (directory / "vocab.txt").write_text("".join(v + "\n" for v in vocab), encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
    return len(vocab)


def kobert_skt(directory: Path) -> int:
    """skt/kobert-base-v1's files: spiece.model holding the special tokens, tokenizer_config naming
    XLNetTokenizer."""
    model_file = train_sentencepiece(
        directory / "spiece",
        unk_id=0,
        pad_id=1,
        bos_id=2,
        eos_id=3,
        unk_piece="[UNK]",
        pad_piece="[PAD]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        user_defined_symbols=["[MASK]"],
    )
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "XLNetTokenizer", "do_lower_case": False}), encoding="utf-8"
    )
    return spm.SentencePieceProcessor(model_file=str(model_file)).get_piece_size()


SMALL = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)


def build_model(arch: str, directory: Path) -> Path:
    """Save a tiny randomly initialised base model (no classification head) and its tokenizer to
    ``directory``."""
    torch.manual_seed(0)
    directory.mkdir(parents=True)
    if arch in ("kobert-monologg", "kobert-skt"):
        vocab_size = (kobert_monologg if arch == "kobert-monologg" else kobert_skt)(directory)
        config = BertConfig(vocab_size=vocab_size, hidden_size=32, pad_token_id=1, **SMALL)
        AutoModel.from_config(config).save_pretrained(directory)
        return directory
    if arch == "bert":
        tokenizer = wordpiece()
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, **SMALL)
    elif arch == "electra":
        tokenizer = wordpiece()
        config = ElectraConfig(vocab_size=len(tokenizer), embedding_size=32, hidden_size=32, **SMALL)
    elif arch == "roberta":
        tokenizer = (
            wordpiece()
        )  # klue/roberta: a BERT tokenizer (token_type_ids) on a model with one token type
        config = RobertaConfig(
            vocab_size=len(tokenizer), hidden_size=32, type_vocab_size=1, pad_token_id=0, **SMALL
        )
    elif arch == "distilbert":
        tokenizer = wordpiece()
        config = DistilBertConfig(
            vocab_size=len(tokenizer),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
        )
    elif arch == "bigbird":
        tokenizer = metaspace(
            "unigram",
            ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
            "[CLS] $A [SEP]",
            unk_token="<unk>",
            pad_token="<pad>",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
        config = BigBirdConfig(vocab_size=len(tokenizer), hidden_size=32, pad_token_id=0, **SMALL)
    elif arch == "xlnet":
        tokenizer = metaspace(
            "unigram",
            ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>"],
            "$A <sep> <cls>",
            unk_token="<unk>",
            pad_token="<pad>",
            cls_token="<cls>",
            sep_token="<sep>",
            mask_token="<mask>",
        )
        config = XLNetConfig(
            vocab_size=len(tokenizer), d_model=32, n_layer=2, n_head=2, d_inner=64, pad_token_id=5
        )
    elif arch == "t5":
        tokenizer = metaspace(
            "unigram",
            ["<pad>", "</s>", "<unk>"],
            "$A </s>",
            unk_token="<unk>",
            pad_token="<pad>",
            eos_token="</s>",
        )
        config = T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    elif arch == "bart":
        # KoBART: its tokenizer adds neither <s> nor </s>
        tokenizer = metaspace(
            "bpe",
            ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            None,
            unk_token="<unk>",
            pad_token="<pad>",
            bos_token="<s>",
            eos_token="</s>",
            mask_token="<mask>",
        )
        config = BartConfig(
            vocab_size=len(tokenizer),
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_eos_token_id=2,
        )
    elif arch == "gpt2":
        tokenizer = byte_level_bpe()
        eos = tokenizer.eos_token_id
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=64,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    else:
        raise ValueError(arch)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


ARCHITECTURES = [
    "bert",
    "roberta",
    "distilbert",
    "electra",
    "bigbird",
    "bart",
    "gpt2",
    "xlnet",
    "t5",
    "kobert-monologg",
    "kobert-skt",
]


@pytest.fixture(scope="module")
def teacher_finetuned(tmp_path_factory):
    """Fine-tune each architecture once (a few steps) and hand out the teacher directory."""
    done: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in done:
            root = tmp_path_factory.mktemp(arch)
            base = build_model(arch, root / "base")
            # 24 texts / batch 8 = 3 steps = one epoch: evaluated, checkpointed and reloaded as the best
            cfg = TeacherConfig(model=str(base), train_batch_size=8, lr=1e-3, max_steps=3)
            data = splits(24, 8)
            done[arch] = finetune.finetune_teacher(
                cfg, data, "synthetic", root / "teachers", "cpu", log_root=root
            )
        return done[arch]

    return get


# ---------------------------------------------------------------------------------------------------------
# Every architecture: fine-tune, load, predict
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_finetune_and_predict_each_architecture(arch, teacher_finetuned):
    out_dir = teacher_finetuned(arch)
    info = json.loads((out_dir / "teacher.json").read_text(encoding="utf-8"))
    assert info["dataset"] == "synthetic" and info["global_step"] == 3 and info["num_labels"] == 2
    assert 0.0 <= info["val_accuracy"] <= 1.0 and 0.0 <= info["test_accuracy"] <= 1.0
    assert [p.name for p in out_dir.parent.iterdir()] == [out_dir.name]  # no partial folder left
    assert out_dir.name.startswith("base-synthetic-") and len(out_dir.name) == len("base-synthetic-") + 8
    log_dir = out_dir.parents[1] / "synthetic" / "teachers" / out_dir.name
    assert list(log_dir.glob("events.out.tfevents.*")), "no TensorBoard log beside the students' runs"

    teacher = teachers.load_teacher(str(out_dir), device="cpu", max_length=128)
    # capped by the 64 learned positions (RoBERTa numbers them from pad_token_id + 1 = 1); XLNet and T5:
    # relative positions
    assert teacher.num_labels == 2 and teacher.max_length == {"roberta": 63, "xlnet": 128, "t5": 128}.get(
        arch, 64
    )
    assert teacher.model.config.id2label == {0: "negative", 1: "positive"}
    logits = teacher.predict_logits(PREDICT_TEXTS, batch_size=4, show_progress=False)
    assert (
        logits.shape == (len(PREDICT_TEXTS), 2)
        and logits.dtype == torch.float32
        and logits.device.type == "cpu"
    )
    assert torch.isfinite(logits).all()
    # one text at a time (no padding at all) must give the same logits as padded, length-sorted batches
    single = torch.cat([teacher.predict_logits([text], show_progress=False) for text in PREDICT_TEXTS])
    torch.testing.assert_close(logits, single, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits[0], logits[3]), "different texts should get different logits"


def test_finetuned_teacher_learns(tmp_path):
    base = build_model("bert", tmp_path / "base")
    cfg = TeacherConfig(model=str(base), epochs=6, train_batch_size=16, lr=2e-3, patience=2)
    data = splits(400, 100)
    out_dir = finetune.finetune_teacher(
        cfg, data, "synthetic", tmp_path / "teachers", "cpu", log_root=tmp_path
    )
    info = json.loads((out_dir / "teacher.json").read_text(encoding="utf-8"))
    assert info["test_accuracy"] > 0.8 and info["val_accuracy"] > 0.8
    assert info["hyperparameters"]["max_length"] == 64  # capped by the model's positions
    teacher = teachers.load_teacher(str(out_dir), device="cpu")
    predicted = teacher.predict_logits(
        ["정말 최고 좋아요 명작", "진짜 최악 별로 실망"], show_progress=False
    ).argmax(-1)
    assert predicted.tolist() == [1, 0]


def test_finished_teacher_is_reused_only_with_the_same_settings_and_data(teacher_finetuned, monkeypatch):
    out_dir = teacher_finetuned("bert")
    root, base = out_dir.parent, out_dir.parent.parent / "base"
    info = json.loads((out_dir / "teacher.json").read_text(encoding="utf-8"))
    assert info["identity"]["base_model"] == {"fingerprint": teachers.teacher_fingerprint(base)}
    assert info["identity"]["settings"]["max_steps"] == 3 and info["identity"]["dataset"] == "synthetic"
    stamp = (out_dir / "teacher.json").stat().st_mtime_ns
    cfg = TeacherConfig(model=str(base), train_batch_size=8, lr=1e-3, max_steps=3)
    assert finetune.teacher_dir(cfg, splits(24, 8), "synthetic", root) == out_dir
    # Another setting, other data, another dataset name or another base model: another folder, never this one.
    flipped = splits(24, 8)["train"].assign(label=lambda d: 1 - d["label"])
    others = [
        finetune.teacher_dir(dataclasses.replace(cfg, max_steps=4), splits(24, 8), "synthetic", root),
        finetune.teacher_dir(dataclasses.replace(cfg, max_length=64), splits(24, 8), "synthetic", root),
        finetune.teacher_dir(dataclasses.replace(cfg, epochs=2), splits(24, 8), "synthetic", root),
        finetune.teacher_dir(cfg, splits(20, 8), "synthetic", root),
        finetune.teacher_dir(cfg, {**splits(24, 8), "train": flipped}, "synthetic", root),
        finetune.teacher_dir(cfg, splits(24, 8), "nsmc", root),
        finetune.teacher_dir(dataclasses.replace(cfg, model=str(out_dir)), splits(24, 8), "synthetic", root),
    ]
    assert len({out_dir, *others}) == len(others) + 1
    # The inference batch size and the test split do not change the teacher.
    other_test = {**splits(24, 8), "test": reviews(3, 9)}
    assert (
        finetune.teacher_dir(dataclasses.replace(cfg, batch_size=7), other_test, "synthetic", root) == out_dir
    )

    def no_training(*args, **kwargs):
        raise AssertionError("the Trainer was constructed for a finished teacher")

    monkeypatch.setattr(finetune, "Trainer", no_training)
    assert finetune.finetune_teacher(cfg, splits(24, 8), "synthetic", root, "cpu") == out_dir
    assert (out_dir / "teacher.json").stat().st_mtime_ns == stamp


def test_teacher_with_another_recorded_identity_is_refused(teacher_finetuned, tmp_path):
    import shutil

    source = teacher_finetuned("bert")
    cfg = TeacherConfig(model=str(source.parent.parent / "base"), train_batch_size=8, lr=1e-3, max_steps=3)
    copy = tmp_path / "teachers" / source.name  # e.g. a folder copied by hand from another run
    shutil.copytree(source, copy)
    info = json.loads((copy / "teacher.json").read_text(encoding="utf-8"))
    info["identity"]["settings"]["epochs"] = 2.0
    (copy / "teacher.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(finetune.TeacherMismatch, match=r"settings\.epochs: 2\.0 -> 3\.0.*delete it"):
        finetune.finetune_teacher(cfg, splits(24, 8), "synthetic", tmp_path / "teachers", "cpu")


def test_finetune_refuses_a_foreign_out_dir_and_bad_data(tmp_path, teacher_finetuned):
    base = str(teacher_finetuned("bert").parent.parent / "base")
    cfg = TeacherConfig(model=base, train_batch_size=8, max_steps=1)
    occupied = finetune.teacher_dir(cfg, splits(8, 4), "synthetic", tmp_path)
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no finished teacher"):
        finetune.finetune_teacher(cfg, splits(8, 4), "synthetic", tmp_path)
    with pytest.raises(ValueError, match="'valid'"):
        finetune.finetune_teacher(cfg, {"train": reviews(8, 0)}, "synthetic", tmp_path / "a")
    bad = splits(8, 4)
    bad["train"] = bad["train"].assign(label=bad["train"]["label"].astype(float))
    with pytest.raises(ValueError, match="integer classes"):
        finetune.finetune_teacher(cfg, bad, "synthetic", tmp_path / "b")
    with pytest.raises(ValueError, match="no model to fine-tune"):
        finetune.finetune_teacher(TeacherConfig(), splits(8, 4), "synthetic", tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "--teacher-epochs\\) must be > 0 unless --teacher-max-steps is set, got 0.0"),
        ({"epochs": float("nan")}, r"--teacher-epochs\) must be a finite number in \[0, inf\)"),
        ({"lr": 0}, r"--teacher-lr\) must be a number in \(0, 1\], got 0.0"),
        ({"lr": float("inf")}, "--teacher-lr\\) must be a finite number in"),
        ({"train_batch_size": 0}, r"--teacher-train-batch-size\) must be in \[1, inf\), got 0"),
        ({"batch_size": -3}, r"--teacher-batch-size\) must be in \[1, inf\)"),
        ({"max_steps": 0}, "--teacher-max-steps\\) must be -1"),
        ({"max_length": 1}, r"--teacher-max-length\) must be in \[2, inf\), got 1"),
        ({"patience": 0}, r"--teacher-patience\) must be in \[1, inf\), got 0"),
        ({"model": ""}, "--model\\) must name"),
    ],
)
def test_teacher_config_refuses_bad_values(settings, message):
    with pytest.raises(ValueError, match=message):
        TeacherConfig(**settings)


def test_dataset_and_split_names_cannot_leave_their_folder(tmp_path):
    cfg = TeacherConfig(model="org/model")
    with pytest.raises(ValueError, match=r"dataset '\.\./x' must be a plain name"):
        finetune.teacher_dir(cfg, splits(8, 4), "../x", tmp_path)
    with pytest.raises(ValueError, match="split 'a/b' must be a plain name"):
        logits_cache.cache_file(tmp_path, "nsmc", "a/b")
    assert (
        logits_cache.cache_file(tmp_path, "nsmc", "unlabeled-extra")
        == tmp_path / "nsmc-unlabeled-extra.safetensors"
    )


def test_teacher_config_types_and_metadata():
    with pytest.raises(TypeError, match="--teacher-train-batch-size\\) must be an integer, got 8.5"):
        TeacherConfig(train_batch_size=8.5)
    with pytest.raises(TypeError, match="--teacher-epochs\\) must be a number, got '3'"):
        TeacherConfig(epochs="3")
    cfg = TeacherConfig(epochs=0, max_steps=5, train_batch_size=16.0)
    assert cfg.epochs == 0.0 and isinstance(cfg.train_batch_size, int)
    assert TeacherConfig(epochs=3) == TeacherConfig(epochs=3.0)  # one identity for 3 and 3.0
    for f in dataclasses.fields(TeacherConfig):
        assert f.metadata["help"] and f.metadata["flag"].startswith("--")


def test_interrupted_fine_tuning_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, caplog):
    """Stopped in epoch 2 of 3: the rerun resumes from the epoch-1 checkpoint and finishes the teacher."""
    from transformers import TrainerCallback

    base = build_model("bert", tmp_path / "base")
    cfg = TeacherConfig(model=str(base), epochs=3, train_batch_size=8, lr=1e-3, patience=5)
    data = splits(24, 8)  # 3 steps per epoch: checkpoints after steps 3, 6 and 9
    steps: list[int] = []

    class Disconnect(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)
            if state.global_step == 5 and interrupt:
                raise KeyboardInterrupt

    build = finetune._build_trainer

    def with_disconnect(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(Disconnect())
        return trainer

    monkeypatch.setattr(finetune, "_build_trainer", with_disconnect)
    out_dir = finetune.teacher_dir(cfg, data, "synthetic", tmp_path / "teachers")
    partial = out_dir.with_name(f".{out_dir.name}.partial")

    logs = tmp_path / "runs"

    def run_finetuning() -> Path:
        return finetune.finetune_teacher(cfg, data, "synthetic", tmp_path / "teachers", "cpu", log_root=logs)

    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run_finetuning()
    assert steps == [1, 2, 3, 4, 5] and not out_dir.exists()
    assert [p.name for p in partial.glob("checkpoint-*")] == ["checkpoint-3"]  # survives, under the root
    (partial / "checkpoint-5").mkdir()  # as if killed while saving a later checkpoint: no trainer_state.json
    (partial / "checkpoint-5" / "config.json").write_text("{}")

    interrupt, steps[:] = False, []
    with caplog.at_level("WARNING", logger="distilkobilstm"):
        assert run_finetuning() == out_dir
    assert "checkpoint-5: the run was stopped while saving it" in caplog.text
    assert steps == [4, 5, 6, 7, 8, 9]  # only the steps after the checkpoint
    info = json.loads((out_dir / "teacher.json").read_text(encoding="utf-8"))
    assert info["resumed_from_step"] == 3 and info["global_step"] == 9 and info["epochs_trained"] == 3
    assert not partial.exists() and teachers.weight_files(out_dir)
    teachers.load_teacher(str(out_dir), device="cpu").predict_logits(["좋아요"], show_progress=False)
    # Train curves over one x axis (global step) in one log folder, across the restart.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tmp_path / "runs" / "synthetic" / "teachers" / out_dir.name
    steps_logged = set()
    for events in log_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            steps_logged |= {e.step for e in accumulator.Scalars(tag)} if tag.startswith("eval/") else set()
    assert {3, 6, 9} <= steps_logged


def test_stale_checkpoints_of_another_teacher_are_cleared(tmp_path, caplog):
    base = build_model("bert", tmp_path / "base")
    cfg = TeacherConfig(model=str(base), train_batch_size=8, lr=1e-3, max_steps=3)
    out_dir = finetune.teacher_dir(cfg, splits(24, 8), "synthetic", tmp_path / "teachers")
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    (partial / "checkpoint-2").mkdir(parents=True)
    (partial / "identity.json").write_text('{"other": 1}')
    with caplog.at_level("WARNING", logger="distilkobilstm"):
        finetune.finetune_teacher(
            cfg, splits(24, 8), "synthetic", tmp_path / "teachers", "cpu", log_root=tmp_path
        )
    assert "clearing" in caplog.text and not partial.exists()
    assert json.loads((out_dir / "teacher.json").read_text(encoding="utf-8"))["resumed_from_step"] is None


def test_unlabeled_rows_are_left_out_of_fine_tuning(tmp_path):
    data = splits(24, 8)
    unlabeled = reviews(10, 7).assign(label=-1)
    data["train"] = pd.concat([data["train"], unlabeled], ignore_index=True)
    cfg = TeacherConfig(model=str(build_model("bert", tmp_path / "base")), train_batch_size=8, max_steps=1)
    out_dir = finetune.finetune_teacher(
        cfg, data, "synthetic", tmp_path / "t", "cpu", log_root=tmp_path / "runs"
    )
    info = json.loads((out_dir / "teacher.json").read_text(encoding="utf-8"))
    assert info["num_examples"] == {"train": 24, "valid": 8, "test": 8}


def test_fine_tuned_teacher_files_follow_the_umask(tmp_path):
    data = splits(24, 8)
    cfg = TeacherConfig(model=str(build_model("bert", tmp_path / "base")), train_batch_size=8, max_steps=1)
    umask = os.umask(0o022)
    try:
        out_dir = finetune.finetune_teacher(
            cfg, data, "synthetic", tmp_path / "t", "cpu", log_root=tmp_path / "runs"
        )
        # its logits cache
        logits_cache.teacher_logits(str(out_dir), data["valid"], "synthetic", "valid", device="cpu")
    finally:
        os.umask(umask)
    modes = {
        p.relative_to(out_dir).as_posix(): p.stat().st_mode & 0o777 for p in [out_dir, *out_dir.rglob("*")]
    }
    assert modes["model.safetensors"] == 0o644 and modes["logits/synthetic-valid.safetensors"] == 0o644
    assert {mode for name, mode in modes.items() if (out_dir / name).is_file()} == {0o644}, modes
    assert {mode for name, mode in modes.items() if (out_dir / name).is_dir()} == {0o755}, modes


DAMAGED_FILES = ["model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"]


@pytest.mark.parametrize("damaged", DAMAGED_FILES)
def test_truncated_teacher_file_is_a_one_line_error(damaged, teacher_finetuned, tmp_path):
    import shutil

    source = teacher_finetuned("bert")
    copy = tmp_path / "teacher"
    shutil.copytree(source, copy)
    if damaged.endswith(".bin"):  # the older weight format, as some Hub models still ship it
        state = teachers.load_teacher(str(copy), device="cpu").model.state_dict()
        (copy / "model.safetensors").unlink()
        torch.save(state, copy / damaged)
    data = (copy / damaged).read_bytes()
    (copy / damaged).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        teachers.load_teacher(str(copy), device="cpu")
    message = str(err.value)
    assert message.startswith(f"{copy / damaged} is truncated or corrupt") and "\n" not in message
    assert message.endswith(f"delete {copy} and fine-tune the teacher again")


def test_finished_teacher_with_truncated_weights_is_not_reused(teacher_finetuned, tmp_path):
    import shutil

    source = teacher_finetuned("bert")
    cfg = TeacherConfig(model=str(source.parent.parent / "base"), train_batch_size=8, lr=1e-3, max_steps=3)
    copy = tmp_path / "teachers" / source.name
    shutil.copytree(source, copy)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors is truncated or corrupt"):
        finetune.finetune_teacher(cfg, splits(24, 8), "synthetic", tmp_path / "teachers", "cpu")


def test_base_model_without_trained_head_is_refused(tmp_path):
    base = build_model("bert", tmp_path / "base")
    with pytest.raises(ValueError, match="not a fine-tuned classifier"):
        teachers.load_teacher(str(base), device="cpu")


def test_bad_texts_get_clear_errors(teacher_finetuned):
    teacher = teachers.load_teacher(str(teacher_finetuned("gpt2")), device="cpu")
    with pytest.raises(TypeError, match=r"texts\[1\] is float"):
        teacher.predict_logits(["좋아요", float("nan")])
    with pytest.raises(TypeError, match="single string"):
        teacher.predict_logits("좋아요")
    with pytest.raises(ValueError, match="give no tokens"):
        teacher.predict_logits(["좋아요", ""])  # GPT-2 adds no special tokens: nothing to classify
    assert teacher.predict_logits([], show_progress=False).shape == (0, 2)


# ---------------------------------------------------------------------------------------------------------
# Architecture quirks
# ---------------------------------------------------------------------------------------------------------


def test_quirks_are_applied(teacher_finetuned):
    gpt2 = teachers.load_teacher(str(teacher_finetuned("gpt2")), device="cpu")
    assert (
        gpt2.encoder.tokenizer.pad_token == "</s>"
        and gpt2.model.config.pad_token_id == gpt2.encoder.tokenizer.eos_token_id
    )
    assert gpt2.encoder.tokenizer.padding_side == "right"
    xlnet = teachers.load_teacher(str(teacher_finetuned("xlnet")), device="cpu")
    assert (
        xlnet.encoder.tokenizer.padding_side == "left" and xlnet.max_length == 128
    )  # relative positions: no cap
    roberta = teachers.load_teacher(str(teacher_finetuned("roberta")), device="cpu")
    assert (
        "token_type_ids" not in roberta.encoder.input_names and roberta.max_length == 63
    )  # positions start at pad+1
    assert (
        "token_type_ids"
        not in teachers.load_teacher(str(teacher_finetuned("distilbert")), device="cpu").encoder.input_names
    )
    assert (
        "token_type_ids"
        in teachers.load_teacher(str(teacher_finetuned("bert")), device="cpu").encoder.input_names
    )
    bigbird = teachers.load_teacher(str(teacher_finetuned("bigbird")), device="cpu")
    assert bigbird.model.config.attention_type == "original_full"
    bart = teachers.load_teacher(str(teacher_finetuned("bart")), device="cpu")
    eos = bart.model.config.eos_token_id
    for feature in bart.encoder.encode(["좋아요", "최고 </s> 감동", " ".join(FILLER * 6)]):
        assert (
            feature["input_ids"][-1] == eos
            and feature["input_ids"].count(eos) == 1
            and len(feature["input_ids"]) <= 64
        )


@pytest.mark.parametrize("layout", ["kobert-monologg", "kobert-skt"])
def test_kobert_tokenizer_layouts(layout, tmp_path):
    directory = build_model(layout, tmp_path / layout)
    config = teachers._load_config(directory)
    tokenizer = teachers._load_tokenizer(directory, config)
    assert isinstance(tokenizer, kobert.KoBertTokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(next(directory.glob("*.model"))))
    pieces = sp.encode("정말 최고 좋아요", out_type=str)
    ids = tokenizer("정말 최고 좋아요")["input_ids"]
    vocab = (
        (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
        if layout == "kobert-monologg"
        else None
    )
    expected = [vocab.index(p) for p in pieces] if vocab else [sp.piece_to_id(p) for p in pieces]
    assert ids == [tokenizer.cls_token_id, *expected, tokenizer.sep_token_id]
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (2, 3, 1)
    if vocab:
        assert expected != [sp.piece_to_id(p) for p in pieces], "the test vocab.txt should reorder the ids"


def test_kobert_teacher_keeps_its_layout_and_old_config(tmp_path, teacher_finetuned):
    out_dir = teacher_finetuned("kobert-monologg")
    assert (out_dir / "tokenizer_78b3253a26.model").is_file() and (out_dir / "vocab.txt").is_file()
    # 2020-era uploads may lack model_type, which transformers 5 no longer guesses from the name
    config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    copy = tmp_path / "old"
    copy.mkdir()
    for path in out_dir.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    del config["model_type"]
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    before = teachers.load_teacher(str(out_dir), device="cpu").predict_logits(
        PREDICT_TEXTS, show_progress=False
    )
    after = teachers.load_teacher(str(copy), device="cpu").predict_logits(PREDICT_TEXTS, show_progress=False)
    torch.testing.assert_close(before, after)


# ---------------------------------------------------------------------------------------------------------
# A student as the teacher
# ---------------------------------------------------------------------------------------------------------


def test_student_directory_teaches(tmp_path):
    torch.manual_seed(0)
    tokenizer = wordpiece()
    student = BiLSTMClassifier(StudentConfig.from_size("large", vocab_size=len(tokenizer), max_length=32))
    directory = save_student(student, tokenizer, tmp_path / "student-large")
    teacher = teachers.load_teacher(str(directory), device="cpu")
    assert (
        isinstance(teacher, teachers.StudentTeacher) and teacher.num_labels == 2 and teacher.max_length == 32
    )
    logits = teacher.predict_logits(PREDICT_TEXTS, batch_size=2, show_progress=False)
    assert logits.shape == (len(PREDICT_TEXTS), 2) and logits.dtype == torch.float32
    expected = torch.from_numpy(teacher.student.predict_logits(PREDICT_TEXTS))
    torch.testing.assert_close(logits, expected)
    assert len(teachers.teacher_fingerprint(directory)) == 64


def test_non_finite_teacher_logits_are_never_cached(tmp_path, monkeypatch, caplog):
    tokenizer = wordpiece()
    student = BiLSTMClassifier(StudentConfig(vocab_size=len(tokenizer), embedding_dim=8, hidden_dim=8))
    directory = save_student(student, tokenizer, tmp_path / "student-teacher")
    df = reviews(6, 3)

    def diverged(self, texts, batch_size, show_progress):
        logits = torch.zeros(len(texts), 2)
        logits[4, 1], logits[5, 0] = float("inf"), float("nan")
        return logits

    monkeypatch.setattr(teachers.StudentTeacher, "_predict", diverged)
    with monkeypatch.context() as m:  # a cache written before such logits were refused
        m.setattr(logits_cache, "_check_finite", lambda *args: None, raising=False)
        logits_cache.teacher_logits(str(directory), df, "synthetic", "train", device="cpu")
    with caplog.at_level("WARNING", logger="distilkobilstm"), pytest.raises(ValueError) as err:
        logits_cache.teacher_logits(str(directory), df, "synthetic", "train", device="cpu")
    assert "holds NaN/Inf logits; rebuilding it" in caplog.text  # never used
    message = str(err.value)
    assert message.startswith(
        f"the teacher {directory} gives NaN/Inf logits for 2 of 6 synthetic/train examples"
    )
    assert "first row 4 (id r3-4: " in message
    assert "not cached" in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------------
# Names, the Hub, fingerprints
# ---------------------------------------------------------------------------------------------------------


def test_names_and_directories(tmp_path):
    assert (
        card.display_name("monologg/koelectra-small-v3-discriminator") == "koelectra-small-v3-discriminator"
    )
    assert card.display_name("/x/teacher_model/kobert-nsmc-1a2b3c4d/") == "kobert-nsmc-1a2b3c4d"
    assert (
        card.display_name("runs/nsmc/large-v3000-none-a1/student") == "large-v3000-none-a1"
    )  # student teacher
    local = tmp_path / "mine"
    local.mkdir()
    assert teachers.resolve_teacher(str(local)) == local
    assert teachers.teacher_cache_dir(str(local)) == local / "logits"
    assert teachers.resolve_teacher("mine", root=tmp_path) == local  # a name under root
    assert (
        teachers.teacher_cache_dir("monologg/kobert", root=tmp_path)
        == tmp_path / "hub--monologg--kobert" / "logits"
    )
    assert (
        teachers.teacher_cache_dir("klue-bert", root=tmp_path) == tmp_path / "hub--klue-bert" / "logits"
    )  # never a model name under root
    with pytest.raises(FileNotFoundError, match="neither a local directory"):
        teachers.resolve_teacher(str(tmp_path / "missing" / "dir"))


@pytest.fixture
def teacher_offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache with the Hub unreachable (offline mode)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_unreachable_hub_model_gives_a_clear_error(teacher_offline_hub, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        teachers.resolve_teacher("monologg/kobert", root=tmp_path)
    message = str(err.value)
    assert "monologg/kobert" in message and "unreachable" in message and "local model directory" in message


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin", None])
def test_cached_hub_model_resolves_offline(weights, teacher_offline_hub, tmp_path):
    snapshot = teacher_offline_hub / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    if weights:
        (snapshot / weights).write_bytes(b"weights")
    (teacher_offline_hub / "models--org--tiny" / "refs").mkdir()
    (teacher_offline_hub / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    if weights:
        assert teachers.resolve_teacher("org/tiny", root=tmp_path) == snapshot
    else:
        with pytest.raises(FileNotFoundError, match="no PyTorch weights"):
            teachers.resolve_teacher("org/tiny", root=tmp_path)


def test_fingerprint_tracks_weights_and_config(tmp_path):
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "config.json").write_text('{"a": 1}')
    (directory / "model.safetensors").write_bytes(b"x" * 3_000_000)  # several read chunks
    first = teachers.teacher_fingerprint(directory)
    (directory / "tokenizer.json").write_text("{}")
    (directory / "training_args.bin").write_bytes(b"args")
    assert teachers.teacher_fingerprint(directory) == first  # only config and weights count
    (directory / "model.safetensors").write_bytes(b"x" * 2_999_999 + b"y")
    second = teachers.teacher_fingerprint(directory)
    assert second != first
    (directory / "config.json").write_text('{"a": 2}')
    assert teachers.teacher_fingerprint(directory) not in (first, second)
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        teachers.teacher_fingerprint(directory)


# ---------------------------------------------------------------------------------------------------------
# Two processes (torchrun, gloo)
# ---------------------------------------------------------------------------------------------------------

DISTRIBUTED_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
import teacher as teachers
import teacher as T
texts = {texts!r}
logits = teachers.load_teacher({model_dir!r}, device="cpu").predict_logits(texts, batch_size=2)
torch.save(logits, f"{out}/rank{{dist.get_rank()}}-of-{{dist.get_world_size()}}.pt")
dist.destroy_process_group()
"""


def test_predict_logits_under_two_processes(tmp_path, teacher_finetuned):
    model_dir = teacher_finetuned("bert")
    # 11 texts: uneven shards
    texts = [*PREDICT_TEXTS, "최고 감동", "진짜 별로", *reviews(3, 5)["text"].tolist()]
    script = tmp_path / "predict.py"
    script.write_text(
        textwrap.dedent(
            DISTRIBUTED_SCRIPT.format(
                root=str(ROOT), texts=texts, model_dir=str(model_dir), out=str(tmp_path)
            )
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(script),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = teachers.load_teacher(str(model_dir), device="cpu").predict_logits(texts, show_progress=False)
    for rank in range(2):
        merged = torch.load(tmp_path / f"rank{rank}-of-2.pt")
        torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_teaches_a_student_through_the_cache(
    arch, teacher_finetuned, data_dir, tmp_path, monkeypatch
):
    import train
    from config import Paths, RunConfig

    out_dir = teacher_finetuned(arch)
    paths = Paths(
        str(data_dir),
        str(tmp_path / "data"),
        str(tmp_path / "tok"),
        str(tmp_path / "teachers"),
        str(tmp_path / "runs"),
    )
    cfg = RunConfig(teacher=str(out_dir), alpha=0.5, size="tiny", vocab_size=200, epochs=1, max_train=120)
    metrics = train.train_student(cfg, paths, device="cpu")
    assert metrics["teacher"] == str(out_dir) and metrics["epochs_run"] == 1
    cache = logits_cache.LogitsCache.load(out_dir / "logits" / "nsmc-train.safetensors")
    assert cache.logits.shape == (120, 2) and cache.meta[
        "teacher_fingerprint"
    ] == teachers.teacher_fingerprint(out_dir)
    # Another vocab size and student size: served from the cache, the teacher is never loaded.
    monkeypatch.setattr(teachers, "load_teacher", lambda *a, **k: pytest.fail("the teacher ran again"))
    again = train.train_student(dataclasses.replace(cfg, vocab_size=300, size="mini"), paths, device="cpu")
    assert again["teacher"] == str(out_dir) and again["vocab_size"] == 300
