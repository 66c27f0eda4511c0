"""A student folder's files and their check: the sha256 of every file a student is loaded from, recorded in
its manifest.json by whoever writes the folder (model.save_student, save_onnx, write_bundle) and checked
before a student loads (model.load_student), and the one-line error for a file that fails a check.

A manifest is an integrity check, not a signature. A folder saved before manifests existed has none: it is
loaded with the other checks (config bounds, tokenizer, weight shapes) and warned about once per process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from utils import CorruptFileError, atomic_write_json, logger, one_line

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "distilkobilstm-student-manifest-v1"
ONNX_DIR = "onnx"  # inside a student directory: the exported graphs (model.ONNX_FILES)
CARD_NAME = "README.md"  # the model card of a shareable folder (card.model_card): documentation, not checked
_UNVERIFIED_WARNED: set[Path] = set()  # folders without a manifest, warned about once per process


def _student_files(directory: Path) -> list[str]:
    """The files a student is loaded from, relative (POSIX) paths: those at the top of the folder and in
    onnx/, but for hidden files (the Hub's .gitattributes, temporaries), the manifest itself and the model
    card (documentation the Hub's card editor changes; never read to load). Subfolders such as logits/ (a
    student teacher's cache) are not part of the student."""
    files = [*directory.iterdir(), *(directory / ONNX_DIR).glob("*")]
    names = [p.relative_to(directory).as_posix() for p in files if p.is_file() and not p.name.startswith(".")]
    return sorted(name for name in names if name not in (MANIFEST_NAME, CARD_NAME))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | Path) -> Path:
    """Record the sha256 of each of the student's files (see _student_files) in directory/manifest.json,
    written atomically; returns its path. Writers call it last; for a folder saved before manifests
    existed, it records the files as they are now."""
    directory = Path(directory)
    files = {name: file_sha256(directory / name) for name in _student_files(directory)}
    atomic_write_json(directory / MANIFEST_NAME, {"format": MANIFEST_FORMAT, "files": files})
    return directory / MANIFEST_NAME


def add_to_manifest(directory: Path, paths: list[Path]) -> None:
    """Record new or rewritten files in an existing manifest (a folder without one stays without)."""
    if not (directory / MANIFEST_NAME).is_file():
        return
    files = _read_manifest(directory)
    files.update({p.relative_to(directory).as_posix(): file_sha256(p) for p in paths})
    manifest = {"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))}
    atomic_write_json(directory / MANIFEST_NAME, manifest)


def _read_manifest(directory: Path) -> dict[str, str]:
    """relative path -> sha256 from directory/manifest.json; CorruptFileError naming it if malformed."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise corrupt_file(path, err) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (
        isinstance(files, dict)
        and manifest.get("format") == MANIFEST_FORMAT
        and all(isinstance(digest, str) and _is_student_file(name) for name, digest in files.items())
    ):
        raise corrupt_file(path, ValueError(f"not a {MANIFEST_FORMAT} file list"), "is corrupt")
    return files


def _is_student_file(name: str) -> bool:
    """A name _student_files could give: ``file`` or ``onnx/file``, nothing hidden and no way out."""
    parts = name.split("/")
    inside = len(parts) == 1 or (len(parts) == 2 and parts[0] == ONNX_DIR)
    return inside and all(part and not part.startswith(".") and "\\" not in part for part in parts)


def verify_manifest(directory: str | Path, *, check_onnx: bool = True) -> bool:
    """Check a student folder's files against its manifest.json: True when checked, False for a folder
    without one (saved by an older version: loaded with the other checks, and a warning once per process).

    A listed file that is missing or changed, or a file the student could be loaded from that is not
    listed, is a CorruptFileError naming it and the fix. check_onnx=False leaves out the onnx/ folder.
    """
    directory = Path(directory)
    if not (directory / MANIFEST_NAME).is_file():
        _warn_unverified(directory)
        return False
    listed = _read_manifest(directory)
    present = set(_student_files(directory))
    for name in sorted(listed.keys() | present):
        if not check_onnx and name.startswith(f"{ONNX_DIR}/"):
            continue
        if name not in present:
            problem = f"is missing (listed in {MANIFEST_NAME})"
        elif name not in listed:
            problem = f"is not listed in {MANIFEST_NAME}"
        elif file_sha256(directory / name) != listed[name]:
            problem = f"does not match its sha256 in {MANIFEST_NAME}"
        else:
            continue
        raise CorruptFileError(f"{directory / name} {problem}; {_manifest_fix(directory, name)}")
    return True


def _manifest_fix(directory: Path, name: str) -> str:
    """How to repair a folder whose file `name` fails the manifest check."""
    if name.startswith(f"{ONNX_DIR}/"):
        return f"export the ONNX graphs again (model.save_onnx({str(directory)!r})) or copy the folder again"
    return f"copy the student folder {directory} again or save it again (retrain; a bundle: package_student)"


def _warn_unverified(directory: Path) -> None:
    """Warn once per process about a student folder without a manifest."""
    if directory.resolve() in _UNVERIFIED_WARNED:
        return
    _UNVERIFIED_WARNED.add(directory.resolve())
    logger.warning(
        f"{directory} has no {MANIFEST_NAME} (saved by an older version): its files are checked only by "
        f"loading them; save it again, or record them as they are now with "
        f"manifest.write_manifest({str(directory)!r})"
    )


def corrupt_file(path: Path, err: BaseException, what: str = "is corrupt or truncated") -> CorruptFileError:
    """The one-line error for a student folder's file that cannot be used (``what`` is wrong with it, the
    reason and the fix)."""
    reason = one_line(err)[:200]
    remedy = f"copy the student directory {path.parent} again or retrain it"
    return CorruptFileError(f"{path} {what} ({reason}); {remedy}")
