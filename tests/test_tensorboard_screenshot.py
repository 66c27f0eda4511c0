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
def test_learning_curves_are_drawn_in_a_real_browser(tmp_path, data_dir):
    pytest.importorskip("playwright", reason="the playwright package (requirements-dev.txt) is missing")
    runs = tmp_path / "runs"
    options = "--dataset nsmc --vocab-size 200 --size tiny --alpha 1 --epochs 2 --batch-size 32 --device cpu"
    folders = ["--data-dir", str(data_dir), "--out", str(runs), "--tokenizer-root", str(tmp_path / "tok")]
    distil.main(["student", *options.split(), *folders])
    tool = load_tool()
    out = tmp_path / "scalars.png"
    with tool.tensorboard(runs) as url:
        shown = tool.screenshot(url, out)
        tool.screenshot_hparams(url, tmp_path / "hparams.png")  # waits for the table of runs
    assert {"train/loss", "valid/accuracy", "valid/loss"} <= set(shown)  # each was found on the page
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (1060, 1280) and pixels[..., :3].std() > 0.1  # a drawn page, not a blank one
    assert matplotlib.image.imread(tmp_path / "hparams.png").shape[:2] == (360, 3400)


def test_missing_browser_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="/nowhere/chromium not found: install chromium"):
        load_tool().main(["--logdir", str(tmp_path), "--browser", "/nowhere/chromium"])
