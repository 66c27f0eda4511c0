"""tools/tensorboard_screenshot.py: TensorBoard over a runs root, drawn in a real headless browser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import distil

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "tensorboard_screenshot", ROOT / "tools" / "tensorboard_screenshot.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="chromium is not installed (apt-get install chromium)")
def test_a_new_user_sees_learning_curves_and_the_key_hparams_first(tmp_path, data_dir):
    """TensorBoard as it opens in a 1400x900 window, defaults untouched, in a real browser."""
    pytest.importorskip("playwright", reason="the playwright package (requirements-dev.txt) is missing")
    runs = tmp_path / "runs"
    options = "--dataset nsmc --vocab-size 200 --size tiny --alpha 1 --seed 42 7 --epochs 2 --device cpu"
    folders = ["--data-dir", str(data_dir), "--out", str(runs), "--tokenizer-root", str(tmp_path / "tok")]
    results = distil.main(["student", *options.split(), "--batch-size", "32", *folders])
    tool = load_tool()
    with tool.tensorboard(runs) as url:
        series = tool.screenshot(url, tmp_path / "series.png")
        scalars = tool.screenshot(url, tmp_path / "scalars.png", dashboard="scalars")
        table = tool.screenshot_hparams(url, tmp_path / "hparams.png")
    for cards in (series, scalars):  # learning curves first: no single-point card on the first screen
        assert cards[0] == "train/ce" and {"train/loss", "train/kd"} <= set(cards)
        assert all(card.startswith(("train/", "valid/")) for card in cards), cards
    assert {"teacher", "size", "vocab_size", "seed"} <= set(table.columns)  # ticked by default, in the window
    # one row per run, named by its folder under the log root (a row per folder, not per set of values)
    assert sorted(table.trials) == sorted(Path(r["run_dir"]).relative_to(runs).as_posix() for r in results)
    import matplotlib.image

    for png in ("series.png", "scalars.png", "hparams.png"):
        pixels = matplotlib.image.imread(tmp_path / png)
        assert pixels.shape[:2] == (900, 1400) and pixels[..., :3].std() > 0.1  # a drawn page, not blank


def test_missing_browser_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="/nowhere/chromium not found: install chromium"):
        load_tool().main(["--logdir", str(tmp_path), "--browser", "/nowhere/chromium"])
