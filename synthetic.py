"""Synthetic Korean reviews (filler and sentiment words): text for runs without a dataset, and the tests'
word list."""

from __future__ import annotations

import random

import pandas as pd

SYNTHETIC_WORDS = {
    1: ["최고", "재밌어요", "감동", "좋아요", "명작", "추천합니다", "훌륭한", "꿀잼"],
    0: ["최악", "별로", "지루해요", "실망", "노잼", "아까운", "엉망", "비추"],
    None: [
        "영화",
        "배우",
        "스토리",
        "연기",
        "진짜",
        "그냥",
        "정말",
        "오늘",
        "보고",
        "왔는데",
        "음악",
        "감독",
        "내용",
        "처음",
        "마지막",
        "ㅋㅋ",
    ],
}


def synthetic_reviews(n: int, seed: int) -> pd.DataFrame:
    """Reviews made of filler and sentiment words (tests/conftest.py uses the same words), for runs without
    --data-dir."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(SYNTHETIC_WORDS[None], k=rng.randint(2, 30)) + rng.choices(
            SYNTHETIC_WORDS[label], k=rng.randint(1, 3)
        )
        rng.shuffle(words)
        rows.append((f"synthetic-{i}", " ".join(words), label))
    return pd.DataFrame(rows, columns=["id", "text", "label"])
