"""The results table of one ``--data`` file: the TF-IDF + LR peer (the scikit-learn teacher) and every
finished student run, all on the same test split, with accuracy, macro F1 and, for labels that are ordered
numbers (stars), the share within one class.

    python tools/own_data_report.py --data reviews.csv --peer teacher_model/tfidf-lr-reviews-<hash> \\
        --runs runs/reviews --commands tools/own_data_stars.sh --out results/own_data

Writes ``<out>.md`` (the table and the commands that made the runs) and ``<out>.json`` (every row's metrics).
The peer is scored from its logits cache (built by ``distil.py run/teacher``; it runs once if missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import config
import corpus
import logits_cache
import teacher as teachers
import train
import utils
from card import display_name
from report import markdown as table_markdown
from report import percent_or_dash


def peer_row(peer: str, splits, name: str) -> dict:
    """The scikit-learn teacher scored on the test split like a student."""
    test, labels = splits["test"], splits.labels
    logits = logits_cache.teacher_logits(peer, test, name, "test", device="cpu", labels=labels)
    metrics = train.classification_metrics(test["label"].to_numpy(), logits.argmax(-1).numpy(), labels)
    info = json.loads((Path(peer) / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
    model = teachers.load_teacher(peer, device="cpu")
    return {
        "model": "TF-IDF + LR (scikit-learn teacher)",
        "teacher": "-",
        "alpha": "-",
        "epochs": "-",
        "params": model.num_parameters(),
        "settings": info["settings"],
        "run": str(peer),
        **{f"test_{key}": value for key, value in metrics.items()},
    }


def run_rows(runs: str) -> list[dict]:
    """Every finished run under ``runs`` (its metrics.json), students without a teacher first."""
    rows = []
    for path in sorted(Path(runs).glob("*/metrics.json")):
        m = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            {
                "model": f"BiLSTM {m['student_size']} (v{m['vocab_size']})",
                "teacher": display_name(m["teacher"]) if m.get("teacher") else "none",
                "alpha": m["alpha"],
                "epochs": f"{m['epochs_run']} (best {m['best_epoch']})",
                "params": m["params"],
                "run": str(path.parent),
                **{key: m.get(key) for key in ("test_accuracy", "test_f1", "test_within_one")},
                "test_f1_per_class": m.get("test_f1_per_class"),
                "test_confusion_matrix": m.get("test_confusion_matrix"),
            }
        )
    return sorted(rows, key=lambda r: (r["teacher"] != "none", r["params"]))


def markdown(rows: list[dict], splits, data: str, commands: str) -> str:
    """The table (percentages), the split it was measured on and the commands."""
    table = [
        {
            "model": r["model"],
            "teacher": r["teacher"],
            "α": r["alpha"],
            "epochs": r["epochs"],
            "params": f"{r['params']:,}",
            "test accuracy (%)": percent_or_dash(r["test_accuracy"]),
            "macro F1 (%)": percent_or_dash(r["test_f1"]),
            "within one class (%)": percent_or_dash(r.get("test_within_one")),
        }
        for r in rows
    ]
    sizes = ", ".join(f"{split} {len(df):,}" for split, df in splits.items())
    ordered = ""
    if corpus.is_ordinal(splits.labels):
        ordered = " (ordered numbers: within one class is at most one class off, e.g. one star)"
    lines = [
        f"# Own data: `{data}`",
        "",
        f"Labels {' / '.join(splits.labels)}{ordered}; split by a hash of each row's id ({sizes}). Generated "
        "by `tools/own_data_report.py` from the runs' metrics.json and the peer's logits cache.",
        "",
        table_markdown(table),
        "",
        "Commands (OMP_NUM_THREADS=1, one process at a time, on a shared 2-core CPU):",
        "",
        "```bash",
        commands.strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="the review file or folder (distil.py --data)")
    parser.add_argument("--peer", required=True, help="the fitted scikit-learn teacher folder")
    parser.add_argument("--runs", required=True, help="the folder of the data's runs (runs/<name>)")
    parser.add_argument("--commands", required=True, help="the script that made the runs, quoted as is")
    parser.add_argument("--out", required=True, help="path without extension: <out>.md and <out>.json")
    args = parser.parse_args(argv)
    utils.setup_logging(quiet=True)
    data = config.DataConfig(data=args.data)
    splits = train.load_splits(data)
    rows = [peer_row(args.peer, splits, data.data_name()), *run_rows(args.runs)]
    commands = Path(args.commands).read_text(encoding="utf-8")
    utils.atomic_write_text(f"{args.out}.md", markdown(rows, splits, args.data, commands))
    utils.atomic_write_json(f"{args.out}.json", {"data": args.data, "labels": splits.labels, "rows": rows})
    print(Path(f"{args.out}.md").read_text(encoding="utf-8"))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
