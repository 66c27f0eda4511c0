"""Choose an ensemble's teacher weights on the validation split (test accuracy shown, never used to choose).

    python tools/ensemble_weights.py --data-dir ../shared/data/nsmc --teacher A B C [--grid 0 1 2 3 4]

Prints each member's valid/test accuracy (from its logits cache: a member without one runs once and is
cached, as in `distil.py cache`), then the best weightings on validation (0 leaves a member out) and the
`--teacher ... --teacher-weights ...` options of the best one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import config
import logits_cache
import settings
import train
import utils


def member_logits(members: list[str], splits: dict, dataset: str, paths: config.Paths, device: str) -> dict:
    """Each member's cached logits of the valid and test rows."""
    return {
        split: [
            logits_cache.teacher_logits(
                m, splits[split], dataset, split, teacher_root=paths.teacher_root, device=device
            )
            for m in members
        ]
        for split in ("valid", "test")
    }


def main(argv: list[str] | None = None) -> list[tuple[tuple[float, ...], float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings.add_arguments(parser, config.DataConfig)
    settings.add_arguments(parser, config.Paths)
    parser.add_argument("--teacher", nargs="+", required=True, help="the members (two or more)")
    parser.add_argument(
        "--grid", nargs="+", type=float, default=[0, 1, 2, 3, 4], help="weights tried per member"
    )
    parser.add_argument("--top", type=int, default=5, help="weightings shown (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="where a member without a cache runs")
    args = parser.parse_args(argv)
    if len(args.teacher) < 2:
        parser.error("--teacher: give two or more members")
    try:
        return rank(args)
    except (ValueError, OSError) as err:  # a bad setting, a missing teacher or data file: one line
        raise SystemExit(f"error: {utils.one_line(err)}") from None


def rank(args: argparse.Namespace) -> list[tuple[tuple[float, ...], float]]:
    """Print the members' accuracies and the best weightings on validation; returns them all, best first."""
    data, paths = settings.from_args(config.DataConfig, args), settings.from_args(config.Paths, args)
    splits = train.load_splits(data, paths)
    logits = member_logits(args.teacher, splits, data.data_name(), paths, args.device)
    for i, member in enumerate(args.teacher):
        scores = [logits_cache.accuracy(logits[s][i], splits[s]) for s in ("valid", "test")]
        print(f"{member}: valid {scores[0]:.4f}, test {scores[1]:.4f}")
    ranked = logits_cache.rank_weights(logits["valid"], splits["valid"], args.grid)
    for weights, valid in ranked[: args.top]:
        kept = [i for i, w in enumerate(weights) if w > 0]
        test = logits_cache.accuracy(
            logits_cache.mean_logits([logits["test"][i] for i in kept], [weights[i] for i in kept]),
            splits["test"],
        )
        print(f"weights {' '.join(f'{w:g}' for w in weights)}: valid {valid:.4f}, test {test:.4f}")
    best = ranked[0][0]
    kept = [i for i, w in enumerate(best) if w > 0]
    print(
        "best on validation: --teacher "
        + " ".join(args.teacher[i] for i in kept)
        + (" --teacher-weights " + " ".join(f"{best[i]:g}" for i in kept) if len(kept) > 1 else "")
    )
    return ranked


if __name__ == "__main__":
    main()
