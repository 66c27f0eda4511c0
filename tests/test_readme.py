"""The READMEs' runnable blocks work as written on a checkout with ../shared/data beside it, on tiny settings.

A block marked ``<!-- runnable -->`` runs as one bash script in a fresh folder (nothing reused from earlier
runs), with ``python X.py`` pointing at this checkout and, for the training stages, a smaller training set and
one epoch appended (later options win in argparse). ``pip`` lines are skipped: CI installs the same files.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

SHARED = ROOT.parent / "shared" / "data" / "nsmc"
READMES = ("README.md", "README.en.md")
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)
TRAINING = re.compile(r"^python (distil\.py (?:run|student|teacher)\b.*)$")
TINY = "--max-train 2000 --epochs 1 --size tiny"  # a training command's options, made small


def runnable_blocks(readme: str) -> list[str]:
    """The runnable bash blocks of a README, in order."""
    return RUNNABLE.findall((ROOT / readme).read_text(encoding="utf-8"))


def logical_lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and pip lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "pip "))]


def tiny_script(block: str) -> str:
    """The block as a bash script against this checkout, with training made small."""
    script = []
    for line in logical_lines(block):
        training = TRAINING.match(line)
        if training:
            line += " --max-train 2000" if training.group(1).split()[1] == "teacher" else f" {TINY}"
        script.append(re.sub(r"^python (\w+\.py)", rf"{sys.executable} {ROOT}/\1", line))
    return "set -euo pipefail\n" + "\n".join(script) + "\n"


def test_every_readme_has_the_four_questions_in_its_first_150_lines():
    for readme, headings in {
        "README.md": ("예측해 보기", "Colab", "다른 vocab 크기로 다시 증류하기", "TensorBoard"),
        "README.en.md": (
            "Try a prediction",
            "Colab",
            "Distil again with another vocabulary size",
            "TensorBoard",
        ),
    }.items():
        lines = (ROOT / readme).read_text(encoding="utf-8").splitlines()
        assert len(lines) <= 300, f"{readme} has {len(lines)} lines"
        found = [line for line in lines[:150] if line.startswith("#")]
        for heading in headings:
            assert any(heading in line for line in found), (
                f"{readme}: no heading {heading!r} in its first 150 lines"
            )


def test_both_readmes_have_the_same_runnable_commands():
    assert [logical_lines(b) for b in runnable_blocks("README.md")] == [
        logical_lines(b) for b in runnable_blocks("README.en.md")
    ]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs {SHARED} beside the checkout")
@pytest.mark.parametrize("index", range(len(runnable_blocks("README.md"))))
def test_runnable_block_works_on_a_fresh_folder(tmp_path, index):
    work = tmp_path / "checkout"
    work.mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    script = tiny_script(runnable_blocks("README.md")[index])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{script}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    if script.count("distil.py student") > 1:  # distilling again reads the teacher's cached logits
        assert "from cache" in result.stderr
