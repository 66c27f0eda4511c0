"""Imports run one way: utils <- settings <- reader <- corpus <- vocab <- card <- config <- manifest <- model
<- kobert <- teacher <- logits_cache <- finetune <- augment <- train <- batch_predict <- distil <- (bench,
serve, colab, notebook, ...).

Each module is imported in a fresh interpreter, lowest first, and may load only the project modules to its
left (a module outside the chain: the chain and the modules outside it that it imports); and no project
module imports (at the top or inside a function) a module to its right. Imports under ``if TYPE_CHECKING:``
name types for the type checker only and never run: card.py's and batch_predict.py's
``Student``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# each may import only the modules before it
CHAIN = [
    *("utils", "settings", "reader", "corpus", "vocab", "card", "config", "manifest", "model", "kobert"),
    "teacher",
    *("logits_cache", "finetune", "augment", "train", "batch_predict", "distil"),
]
PROJECT = sorted(p.stem for p in ROOT.glob("*.py"))
TOP = [m for m in PROJECT if m not in CHAIN]  # bench, serve, ...: may import the chain, the chain not them


def allowed(module: str) -> set[str]:
    return set(CHAIN[: CHAIN.index(module)]) if module in CHAIN else set(CHAIN)


def outside_imports(module: str) -> set[str]:
    """Modules outside the chain that ``module`` imports, directly or through one another."""
    found, todo = set(), [module]
    while todo:
        for name in imported_names(todo.pop()) - set(CHAIN) - found - {module}:
            found.add(name)
            todo.append(name)
    return found


def imported_names(module: str) -> set[str]:
    """Project modules that ``module``'s source imports anywhere (top level or inside functions), but for
    type checking only (``if TYPE_CHECKING:``)."""
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(PROJECT) - {module}


@pytest.mark.parametrize("module", [*CHAIN, *TOP])
def test_fresh_import_loads_only_modules_to_the_left(module):
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    # An import cycle fails here (a partially initialised module).
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1])) & set(PROJECT) - {module}
    expected = allowed(module) | (outside_imports(module) if module in TOP else set())
    assert loaded <= expected, f"importing {module} loaded {sorted(loaded - expected)}"


@pytest.mark.parametrize("module", [*CHAIN, *TOP])
def test_no_import_points_the_wrong_way(module):
    wrong = imported_names(module) - allowed(module)
    if module in TOP:  # modules outside the chain may use each other, but not in a circle
        wrong = {other for other in wrong if module in imported_names(other)}
    assert not wrong, f"{module}.py imports {sorted(wrong)} (allowed: {sorted(allowed(module))})"


SCRIPTS = sorted(
    str(p.relative_to(ROOT))
    for p in [*ROOT.glob("*.py"), *ROOT.glob("tools/*.py")]
    if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_answers_help(script):
    """`--help` of every command prints its usage (a % in a setting's help once broke argparse's)."""
    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")
