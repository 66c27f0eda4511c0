"""The notebook's set-up (Colab): which requirements are missing or too old, and installing them.

Only the standard library and ``packaging`` here, so that it runs before any requirement is installed or
upgraded (upgrading a package that is already imported would leave the old version loaded in the kernel).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement


def missing_requirements(requirements: str | Path) -> list[str]:
    """Lines of a requirements file that are not installed or too old (torch: only when absent).

    Colab ships its own CUDA build of torch, which must not be replaced; pip options, comments and lines whose
    environment marker does not apply here are skipped.
    """
    missing = []
    for number, raw in enumerate(Path(requirements).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as err:
            raise ValueError(
                f"{requirements}, line {number}: {line!r} is not a requirement ({err})"
            ) from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if requirement.name != "torch" and not requirement.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


def install_missing(requirements: str | Path) -> list[str]:
    """pip-install the requirements ``missing_requirements`` finds in a requirements file; returns them."""
    missing = missing_requirements(requirements)
    if missing:
        print("installing:", " ".join(missing))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing
