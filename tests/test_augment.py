"""Korean Tang-style augmentation: masking, POS-guided replacement, n-gram sampling, the transfer-set file."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

import augment
import corpus
import distil
from augment import AugmentConfig, PosTable
from conftest import write_nsmc

SENTENCES = [
    "이 영화 정말 재밌어요 배우들 연기가 최고",
    "스토리가 너무 지루해서 중간에 잠들었다",
    "감독의 연출이 훌륭하고 음악도 좋았습니다",
    "돈이 아까운 영화 다시는 안 본다",
    "처음부터 끝까지 긴장감이 넘치는 명작",
    "배우는 좋은데 내용이 엉망이라 실망했어요",
    "아이들과 함께 보기 좋은 따뜻한 영화네요",
    "기대를 많이 했는데 생각보다 별로였다",
    "마지막 장면에서 눈물이 났어요 감동입니다",
    "연기도 어색하고 대사도 유치해서 최악",
]


@pytest.fixture(scope="module")
def kiwi():
    return augment.make_kiwi(1)


@pytest.fixture(scope="module")
def analysed(kiwi):
    return list(augment.analyse(kiwi, SENTENCES))


def test_config_validates():
    AugmentConfig()
    for bad, message in (
        ({"p_mask": 1.5}, r"p_mask \(--p-mask\) must be a number in \[0, 1\], got 1.5"),
        ({"p_ng": -0.1}, "p_ng .* must be"),
        ({"p_mask": 0.6, "p_pos": 0.6}, "p_mask \\+ p_pos must be <= 1"),
        ({"n_iter": 0}, "n_iter .* must be"),
        ({"ngram_max": 0}, "ngram_max"),
        ({"mask_token": "[ M ]"}, "mask_token"),
        ({"max_sentences": 0}, "max_sentences"),
    ):
        with pytest.raises(ValueError, match=message):
            AugmentConfig(**bad)


def test_analysis_and_join_rebuild_the_sentences(kiwi, analysed):
    """With no rule applied, Kiwi's join gives back each sentence, spacing included."""
    assert len(analysed) == len(SENTENCES) and all(len(m) >= 4 for m in analysed)
    assert all(
        isinstance(form, str) and tag and isinstance(space, bool) for m in analysed for form, tag, space in m
    )
    assert [kiwi.join(m) for m in analysed] == SENTENCES


def test_a_masked_stem_takes_in_its_bare_jamo_ending(kiwi, analysed):
    masked = [
        [("[MASK]" if tag.startswith("V") else form, tag, space) for form, tag, space in m] for m in analysed
    ]
    jamo = re.compile("[\u1100-\u11ff]")
    assert any(jamo.search(kiwi.join(m)) for m in masked)  # join alone gives e.g. "[MASK]ᆫ다"
    rebuilt = [augment.rebuild(kiwi, m, "[MASK]") for m in masked]
    assert not any(jamo.search(text) for text in rebuilt)
    assert all(("[MASK]" in text) == any(f == "[MASK]" for f, _, _ in m) for text, m in zip(rebuilt, masked))
    assert rebuilt[1] == "스토리가 너무 지루해서 중간에 [MASK]었다"


def test_masking_rate(analysed):
    cfg = AugmentConfig(p_mask=0.2, p_pos=0.0)
    table, rng = PosTable.from_sentences(analysed), np.random.default_rng(0)
    masked = total = 0
    for _ in range(200):
        for morphs in analysed:
            out = augment.perturb(morphs, cfg, table, rng)
            assert [(t, s) for _, t, s in out] == [(t, s) for _, t, s in morphs]
            masked += sum(f == "[MASK]" for f, _, _ in out)
            changed = [a for a, b in zip(out, morphs) if a != b]
            assert all(f == "[MASK]" for f, _, _ in changed)
            total += len(morphs)
    assert abs(masked / total - 0.2) < 0.02, masked / total  # ~14k morphemes: std 0.0034


def test_pos_replacement_rate_keeps_the_tag(analysed):
    cfg = AugmentConfig(p_mask=0.0, p_pos=0.3, mask_token="<mask>")
    table, rng = PosTable.from_sentences(analysed), np.random.default_rng(1)
    replaceable = sum(len(table.forms[tag]) > 1 for m in analysed for _, tag, _ in m) / sum(
        map(len, analysed)
    )
    replaced = total = 0
    for _ in range(200):
        for morphs in analysed:
            out = augment.perturb(morphs, cfg, table, rng)
            for (new, new_tag, new_space), (old, tag, space) in zip(out, morphs):
                assert (new_tag, new_space) == (tag, space) and new != "<mask>"
                if new != old:
                    replaced += 1
                    assert new in table.forms[tag]  # a form seen with the same POS tag
            total += len(morphs)
    assert abs(replaced / total - 0.3 * replaceable) < 0.02, (replaced / total, replaceable)


def test_pos_replacement_follows_corpus_frequencies():
    table = PosTable({"NNG": Counter({"영화": 900, "배우": 100, "감독": 5}), "JKS": Counter({"이": 3})})
    rng = np.random.default_rng(2)
    draws = Counter(table.sample("NNG", "감독", rng) for _ in range(4000))
    assert set(draws) == {"영화", "배우"} and abs(draws["영화"] / 4000 - 0.9) < 0.03
    assert table.sample("JKS", "이", rng) is None and table.sample("XX", "a", rng) is None


def test_ngram_sampling_lengths():
    text = "하나 둘 셋 넷 다섯 여섯 일곱 여덟"
    words = text.split()
    rng = np.random.default_rng(3)
    always, never = AugmentConfig(p_ng=1.0), AugmentConfig(p_ng=0.0)
    lengths = Counter()
    for _ in range(2000):
        sample = augment.ngram_sample(text, always, rng).split()
        start = words.index(sample[0])
        assert 1 <= len(sample) <= 5 and words[start : start + len(sample)] == sample
        lengths[len(sample)] += 1
    assert set(lengths) == {1, 2, 3, 4, 5} and min(lengths.values()) > 300  # n uniform in [1, 5]
    assert augment.ngram_sample("짧은 문장", always, rng) in {"짧은", "문장", "짧은 문장"}
    assert augment.ngram_sample(text, never, rng) == text
    kept = sum(augment.ngram_sample(text, AugmentConfig(p_ng=0.25), rng) == text for _ in range(2000))
    assert abs(kept / 2000 - 0.75) < 0.04  # every n-gram (n <= 5) is shorter than these 8 words


def test_samples_are_deterministic_deduplicated_and_never_a_split_text(kiwi):
    cfg = AugmentConfig(n_iter=6, p_mask=0.1, p_pos=0.2, p_ng=0.5)
    first = augment.augment_texts(SENTENCES, cfg, kiwi=kiwi)
    assert first == augment.augment_texts(SENTENCES, cfg, kiwi=kiwi)
    assert first != augment.augment_texts(
        SENTENCES, AugmentConfig(n_iter=6, p_mask=0.1, p_pos=0.2, p_ng=0.5, seed=1), kiwi=kiwi
    )
    assert len(first) == len(set(first)) > len(SENTENCES) and not set(first) & set(SENTENCES)
    assert any("[MASK]" in s for s in first) and any(len(s.split()) < 3 for s in first)
    # Held-out texts that the rules do produce (single words from n-gram sampling) are dropped.
    held_out = ["영화", "최고", "재밌어요", "명작", "실망했어요"]
    unigrams = AugmentConfig(n_iter=20, p_mask=0.0, p_pos=0.0, p_ng=1.0, ngram_max=1)
    produced = augment.augment_texts(SENTENCES, unigrams, kiwi=kiwi)
    assert set(held_out) <= set(produced)
    assert not set(held_out) & set(augment.augment_texts(SENTENCES, unigrams, exclude=held_out, kiwi=kiwi))


def test_augmented_file_is_read_as_unlabeled_text(tmp_path, capsys):
    data_dir = write_nsmc(tmp_path / "nsmc", n_train=200, n_test=50)
    out = tmp_path / "aug.txt"
    options = ["--data-dir", str(data_dir), "--data-root", str(tmp_path / "d"), "--n-iter", "3"]
    distil.main(["augment", *options, "--out", str(out), "--p-mask", "0.2", "--seed", "5"])
    lines = out.read_text(encoding="utf-8").splitlines()
    unlabeled = corpus.read_unlabeled(out)
    assert len(unlabeled) == len(lines) > 200 and (unlabeled["label"] == -1).all()
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    assert not set(lines) & {t for df in splits.values() for t in df["text"]}
    assert not list(tmp_path.glob(".aug.txt*"))  # written atomically, no temporary left
    with pytest.raises(SystemExit) as stop:
        distil.main(["augment", *options, "--out", str(tmp_path / "x.txt"), "--p-ng", "2"])
    assert stop.value.code == 2 and not (tmp_path / "x.txt").exists()
    assert "p_ng (--p-ng) must be a number in [0, 1]" in capsys.readouterr().err
