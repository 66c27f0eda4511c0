"""Reporting: accuracy of finished runs, results rows and tables, and plots (one implementation for bench.py,
ladder.py and the notebook's evaluation)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import corpus
import teacher as teachers
import train
import utils
from card import display_name
from model import Student
from timing import time_calls


def show(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    """Print rows as a table under a title (in the given columns, else all)."""
    print(f"\n== {title}")
    if not rows:
        print("  (nothing to show)")
        return
    frame = pd.DataFrame(rows)
    print(frame[columns or list(frame.columns)].to_string(index=False, float_format=lambda x: f"{x:,.4g}"))


# -----------------------------------------------------------------------------
# accuracy of finished runs (their metrics.json)


GROUP_KEYS = [
    "dataset",
    "teacher",
    "vocab_size",
    "student_size",
    "embedding_dim",
    "hidden_dim",
    "alpha",
    "temperature",
    "kd_loss",
    "unlabeled",
    "n_train",
]
METRICS = ["val_accuracy", "test_accuracy", "test_f1"]


def read_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per finished run: every metrics.json under runs_dir that has the accuracy fields."""
    rows = []
    for path in sorted(Path(runs_dir).glob("**/metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if all(metrics.get(k) is not None for k in [*METRICS, "params"]):
            rows.append(
                {k: metrics.get(k) for k in GROUP_KEYS + METRICS + ["params", "seed"]}
                | {"run_dir": str(path.parent)}
            )
    return pd.DataFrame(rows, columns=GROUP_KEYS + METRICS + ["params", "seed", "run_dir"])


def accuracy_table(runs: pd.DataFrame) -> list[dict]:
    """Runs grouped by everything but the seed: mean and std (over seeds) of each accuracy metric."""
    table = []
    for _, group in runs.fillna({"teacher": "none", "unlabeled": "none", "n_train": "all"}).groupby(
        GROUP_KEYS, dropna=False, sort=False
    ):
        first = group.iloc[0]
        row = {
            "model": first["student_size"]
            if first["student_size"] != "custom"
            else f"e{first['embedding_dim']}h{first['hidden_dim']}",
            "teacher": display_name(str(first["teacher"])),
            "alpha": first["alpha"],
            "unlabeled": Path(first["unlabeled"]).name if first["unlabeled"] != "none" else "none",
            "vocab_size": int(first["vocab_size"]),
            "params": int(first["params"]),
            "dataset": first["dataset"],
            "n_train": first["n_train"],
            "seeds": len(group),
        }
        for metric in METRICS:
            row[f"{metric}_mean"] = float(group[metric].mean())
            row[f"{metric}_std"] = float(group[metric].std()) if len(group) > 1 else None
        row["run_dirs"] = group["run_dir"].tolist()
        table.append(row)
    return sorted(table, key=lambda r: (r["params"], r["teacher"], r["alpha"]))


def teacher_accuracies(runs: pd.DataFrame, teacher_root: str | Path) -> list[dict]:
    """Test accuracy and size of the fine-tuned teachers named in the runs, from their teacher.json."""
    from safetensors import safe_open

    found = []
    for name in sorted(set(runs["teacher"].dropna())):
        directory = next(
            (d for d in (Path(name), Path(teacher_root) / name) if (d / teachers.TEACHER_INFO).is_file()),
            None,
        )
        if directory is None:
            continue
        info = json.loads((directory / teachers.TEACHER_INFO).read_text(encoding="utf-8"))
        params = 0
        for weights in directory.glob("model*.safetensors"):
            with safe_open(str(weights), framework="pt") as f:
                # safe_open is not iterable: SIM118's `k in f` raises TypeError
                params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
        if info.get("test_accuracy") is not None and params:
            found.append(
                {"teacher": display_name(name), "test_accuracy": info["test_accuracy"], "params": params}
            )
    return found


# -----------------------------------------------------------------------------
# plots: test accuracy against size, validation curves (for bench.py and the notebook)

# (marker, x offset factor on the log axis, shade: 0 dark / 1 light) of each kind of student point
KIND_STYLE = {
    "baseline": ("s", 0.95, 1),
    "distilled": ("o", 1.0, 0),
    "distilled + transfer set": ("D", 1.05, 0),
}
CURVE_LINES = {"baseline": "--", "distilled": "-", "distilled + transfer set": ":"}


def student_kind(teacher: str | None, unlabeled: str | None) -> str:
    """baseline (no teacher), distilled, or distilled + transfer set (unlabeled text the teacher labels)."""
    if pd.isna(teacher) or teacher == "none":
        return "baseline"
    return "distilled" if pd.isna(unlabeled) or unlabeled == "none" else "distilled + transfer set"


def short_label(model: str, vocab_size: int, kind: str = "baseline", alpha: float | None = None) -> str:
    """``base v3000`` for a baseline, ``base v3000 KD a0.1`` distilled, ``... +U`` with a transfer set."""
    label = f"{model} v{int(vocab_size)}"
    if kind != "baseline":
        label += f" KD a{alpha:g}" + (" +U" if kind == "distilled + transfer set" else "")
    return label


def family_colours(families: list) -> dict:
    """A colour pair (dark, light) per student family, so that a distilled point and its baseline match."""
    from matplotlib import colormaps

    pairs = colormaps["tab20"].colors
    unique = list(dict.fromkeys(families))
    return {family: (pairs[(2 * i) % 20], pairs[(2 * i + 1) % 20]) for i, family in enumerate(unique)}


def new_figure(size: tuple[float, float]):
    """A pyplot-free figure (no global state, no backend switch): saved to a file or shown by IPython."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# label offsets in points from its point: above, below, right, left, then further above and below
LABEL_SPOTS = [(0, 7, "center"), (0, -17, "center"), (9, -4, "left"), (-9, -4, "right")] + [
    (0, sign * (7 + 11 * k) - (10 if sign < 0 else 0), "center") for k in range(1, 12) for sign in (1, -1)
]


def dodge_labels(annotations: list, ax, renderer, avoid: list | None = None) -> None:
    """Place each annotation (in order of x) at the first spot inside the axes that overlaps no placed one,
    else at the spot with the least overlap."""
    placed = list(avoid or [])  # boxes to keep clear of, e.g. the legend
    inside = ax.get_window_extent(renderer)

    def clash(box) -> float:
        outside = not (
            inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
        )
        overlap = sum(
            max(0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0, min(box.y1, o.y1) - max(box.y0, o.y0))
            for o in placed
        )
        return overlap + (box.width * box.height if outside else 0)

    for annotation in sorted(annotations, key=lambda a: a.xy[0]):
        annotation.set_in_layout(False)
        scores = []
        for dx, dy, ha in LABEL_SPOTS:
            annotation.xyann = (dx, dy)
            annotation.set_horizontalalignment(ha)
            scores.append(clash(annotation.get_window_extent(renderer)))
            if scores[-1] == 0:
                break
        dx, dy, ha = LABEL_SPOTS[int(np.argmin(scores))]
        annotation.xyann = (dx, dy)
        annotation.set_horizontalalignment(ha)
        placed.append(annotation.get_window_extent(renderer))


def plot_students(ax, table: list[dict]) -> list:
    """One point per ``accuracy_table`` row (mean ± std), a colour per student family (dark when distilled,
    light for its baseline); returns the family labels placed above each family's best point."""
    colours = family_colours([(r["model"], r["vocab_size"]) for r in table])
    top: dict = {}
    for row in table:
        marker, shift, shade = KIND_STYLE[student_kind(row["teacher"], row["unlabeled"])]
        family = (row["model"], row["vocab_size"])
        y = 100 * row["test_accuracy_mean"]
        ax.errorbar(
            [row["params"] * shift],
            [y],
            yerr=[100 * (row["test_accuracy_std"] or 0)],
            fmt=marker,
            capsize=3,
            color=colours[family][shade],
            markeredgecolor=colours[family][0],
            markersize=7,
        )
        top[family] = max(top.get(family, (0, -1.0)), (row["params"], y), key=lambda p: p[1])
    return [label_point(ax, short_label(*family), point, 7) for family, point in top.items()]


def label_point(ax, text: str, point: tuple[float, float], above: float):
    """A small centred label ``above`` points over ``point``."""
    return ax.annotate(
        text,
        point,
        xytext=(0, above),
        textcoords="offset points",
        ha="center",
        fontsize=8,
        annotation_clip=False,
    )


def plot_legend(ax, table: list[dict], teachers: list[dict]):
    """The legend of the kinds of student shown (and the teacher star); None when nothing is plotted."""
    kinds = {student_kind(r["teacher"], r["unlabeled"]) for r in table}
    names = {k: "no teacher (α = 1)" if k == "baseline" else k for k in KIND_STYLE if k in kinds}
    handles = [ax.plot([], [], KIND_STYLE[k][0], color="grey", label=name)[0] for k, name in names.items()]
    handles += [ax.plot([], [], "*", color="black", markersize=12, label="teacher")[0]] if teachers else []
    return ax.legend(handles=handles, fontsize=8, loc="best") if handles else None


def plot_accuracy(table: list[dict], teachers: list[dict], path: str | Path | None = None):
    """Test accuracy (mean ± std over seeds) against parameters, log x; returns the figure (saved when path).

    ``table`` holds ``accuracy_table`` rows, ``teachers`` dicts with teacher, test_accuracy and params. A
    student family (size and vocabulary) has one colour: dark when distilled, light for its baseline, and one
    label.
    """
    fig = new_figure((8, 5))
    ax = fig.add_subplot()
    notes = plot_students(ax, table)
    for t in teachers:
        point = (t["params"], 100 * t["test_accuracy"])
        ax.plot([point[0]], [point[1]], "*", color="black", markersize=14)
        notes.append(label_point(ax, f"teacher {t['teacher']}", point, 9))
    if not table and not teachers:
        ax.text(0.5, 0.5, "no finished runs found", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.2)
    ax.set(
        xlabel="parameters (log scale)",
        ylabel="test accuracy (%), mean ± std over seeds",
        title="Test accuracy against size",
    )
    ax.grid(True, which="both", alpha=0.3)
    legend = plot_legend(ax, table, teachers)
    fig.canvas.draw()  # lays the axes and the legend out first
    renderer = fig.canvas.get_renderer()
    dodge_labels(notes, ax, renderer, avoid=[legend.get_window_extent(renderer)] if legend else [])
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def curve_groups(runs: list[dict]) -> dict[tuple, pd.DataFrame]:
    """Validation accuracy per epoch of each group of runs that differ only in the seed: mean, std, seeds."""
    histories: dict[tuple, list[pd.DataFrame]] = {}
    for metrics in runs:
        kind = student_kind(metrics.get("teacher"), metrics.get("unlabeled"))
        model = model_name(metrics["student_size"], metrics["embedding_dim"], metrics["hidden_dim"])
        key = (
            model,
            metrics["vocab_size"],
            kind,
            metrics["alpha"],
            metrics.get("teacher"),
            metrics.get("temperature"),
        )
        histories.setdefault(key, []).append(pd.DataFrame(metrics["history"]))
    return {
        key: pd.concat(parts).groupby("epoch")["val_accuracy"].agg(["mean", "std", "count"])
        for key, parts in histories.items()
    }


def plot_curves(runs: list[dict], path: str | Path | None = None):
    """Validation accuracy per epoch (mean ± std over seeds): distilled solid, its baseline dashed alike."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure((9, 4.5))
    ax = fig.add_subplot()
    groups = curve_groups(runs)
    colours = family_colours([key[:2] for key in groups])
    for (model, vocab, kind, alpha, _, _), curve in groups.items():
        shade = KIND_STYLE[kind][2]
        ax.errorbar(
            curve.index,
            100 * curve["mean"],
            yerr=100 * curve["std"].fillna(0),
            fmt=CURVE_LINES[kind],
            marker=KIND_STYLE[kind][0],
            markersize=4,
            capsize=2,
            color=colours[(model, vocab)][shade],
            label=short_label(model, vocab, kind, alpha),
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Learning curves (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    if groups:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def model_name(student_size: str, embedding_dim, hidden_dim) -> str:
    """The preset's name, or e<embedding>h<hidden> for a custom size."""
    return student_size if student_size != "custom" else f"e{int(embedding_dim)}h{int(hidden_dim)}"


# -----------------------------------------------------------------------------
# the notebook's evaluation: one row per run directory, accumulated in runs/<dataset>/results.csv

RESULT_COLUMNS = [
    "run_dir",
    "kind",
    *GROUP_KEYS,
    "seed",
    "params",
    "size_bytes",
    *METRICS,
    "test_within_one",  # labels that are ordered numbers (stars): predicted within one class
    "cpu_sentences_per_s",
    "cpu_batch1_ms",
]


def cpu_speed(predict: Callable[[list], object], texts: list[str], repeats: int = 3) -> dict:
    """CPU sentences/s at batch 64 and median batch-1 milliseconds of predict(texts), timed by time_calls."""
    timing = time_calls(predict, texts, latency_items=min(16, len(texts)), repeats=repeats)
    return {"cpu_sentences_per_s": timing["batch64_per_s"], "cpu_batch1_ms": timing["batch1_median_ms"]}


def student_result(metrics: dict, texts: list[str]) -> dict:
    """A results row for a finished run (its metrics.json) with its student's CPU speed on texts."""
    student = Student.from_pretrained(Path(metrics["run_dir"]) / "student", device="cpu")
    row = {key: metrics.get(key) for key in RESULT_COLUMNS}
    row["kind"] = "baseline" if student_kind(metrics["teacher"], None) == "baseline" else "distilled"
    return row | cpu_speed(student.predict, texts)


def teacher_result(
    teacher: str,
    logits: dict[str, torch.Tensor],
    splits: dict[str, pd.DataFrame],
    texts: list[str],
    *,
    dataset: str,
    teacher_root: str | Path = "teacher_model",
    max_length: int = 128,
) -> dict:
    """A results row for the teacher: accuracy from its cached logits, size from its weights, CPU speed."""
    model = teachers.load_teacher(teacher, device="cpu", max_length=max_length, root=teacher_root)
    predicted = {split: logits[split].argmax(-1).numpy() for split in ("valid", "test")}
    labels = {split: splits[split]["label"].to_numpy() for split in ("valid", "test")}
    test = train.classification_metrics(labels["test"], predicted["test"], corpus.label_names(splits))
    row = dict.fromkeys(RESULT_COLUMNS) | {
        "run_dir": str(teacher),
        "kind": "teacher",
        "dataset": dataset,
        "teacher": str(teacher),
        "params": model.num_parameters(),
        "size_bytes": model.size_bytes(),
        "val_accuracy": float((predicted["valid"] == labels["valid"]).mean()),
        "test_accuracy": test["accuracy"],
        "test_f1": test["f1"],
        "test_within_one": test.get("within_one"),
    }
    return row | cpu_speed(lambda batch: model.predict_logits(batch, show_progress=False), texts, repeats=1)


def accumulate_results(rows: list[dict], path: str | Path) -> pd.DataFrame:
    """Merge rows into the results CSV at path, one row per run directory (the latest wins); returns all."""
    return merge_csv(path, pd.DataFrame(rows, columns=RESULT_COLUMNS), ["run_dir"])


def merge_csv(path: str | Path, new: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Write ``new`` into the CSV at path (atomically), replacing the old rows with the same ``key`` values;
    returns all rows, in ``new``'s columns."""
    old = pd.read_csv(path).reindex(columns=new.columns) if Path(path).is_file() else new.iloc[:0]
    same = old.set_index(key).index.isin(new.set_index(key).index)
    parts = [df for df in (old[~same], new) if not df.empty]  # no empty concat
    frame = pd.concat(parts, ignore_index=True).reindex(columns=new.columns) if parts else new
    utils.atomic_write_text(path, frame.to_csv(index=False))
    return frame


def markdown(rows: list[dict]) -> str:
    """A GitHub table of the rows' public columns (those not starting with _)."""
    columns = [c for c in rows[0] if not c.startswith("_")] if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def human_bytes(size: float) -> str:
    """Three significant digits in decimal units: 1,565,640 -> '1.57 MB', 110,504 -> '111 KB'."""
    exponent = min(int(math.log10(max(size, 1)) // 3), 3)
    value = size / 1000**exponent
    unit = ("B", "KB", "MB", "GB")[exponent]
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The reader's table: teachers, then students grouped over seeds (test accuracy in %, mean ± std)."""
    rows = []
    for t in frame[frame["kind"] == "teacher"].to_dict("records"):
        rows.append(
            {
                "model": "teacher",
                "vocab": "",
                "teacher": display_name(t["teacher"]),
                "alpha": "",
                "transfer set": "",
                "params": f"{int(t['params']):,}",
                "size": human_bytes(t["size_bytes"]),
                "test acc (%)": f"{100 * t['test_accuracy']:.2f}",
                "within one (%)": percent_or_dash(t.get("test_within_one")),
                "seeds": 1,
                "CPU sentences/s": round(t["cpu_sentences_per_s"]),
            }
        )
    for group in accuracy_table(frame[frame["kind"] != "teacher"]):
        part = frame[frame["run_dir"].isin(group["run_dirs"])]
        kind = student_kind(group["teacher"], group["unlabeled"])
        transfer = {"baseline": "", "distilled": "train"}.get(
            kind, f"train + {Path(str(group['unlabeled'])).stem}"
        )
        std = group["test_accuracy_std"]
        rows.append(
            {
                "model": group["model"],
                "vocab": group["vocab_size"],
                "teacher": group["teacher"],
                "alpha": f"{group['alpha']:g}",
                "transfer set": transfer,
                "params": f"{group['params']:,}",
                "size": human_bytes(part["size_bytes"].iloc[0]),
                "test acc (%)": f"{100 * group['test_accuracy_mean']:.2f}"
                + (f" ± {100 * std:.2f}" if std else ""),
                "within one (%)": percent_or_dash(part["test_within_one"].mean()),
                "seeds": group["seeds"],
                "CPU sentences/s": round(part["cpu_sentences_per_s"].mean()),
            }
        )
    columns = ["model", "vocab", "teacher", "alpha", "transfer set", "params", "size", "test acc (%)"]
    if frame["test_within_one"].notna().any():  # labels that are ordered numbers (stars)
        columns.append("within one (%)")
    return pd.DataFrame(rows, columns=[*columns, "seeds", "CPU sentences/s"])


def percent_or_dash(share: float | None) -> str:
    """A share in percent with two decimals; "–" when missing (NaN)."""
    return "–" if share is None or pd.isna(share) else f"{100 * share:.2f}"


def plot_results(frame: pd.DataFrame, path: str | Path | None = None):
    """plot_accuracy over a results table (runs/<dataset>/results.csv)."""
    teacher_rows = [  # not named ``teachers``: that is the teacher module
        {"teacher": display_name(t["teacher"]), "test_accuracy": t["test_accuracy"], "params": t["params"]}
        for t in frame[frame["kind"] == "teacher"].to_dict("records")
    ]
    return plot_accuracy(accuracy_table(frame[frame["kind"] != "teacher"]), teacher_rows, path)
