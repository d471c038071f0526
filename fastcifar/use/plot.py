"""`fastcifar eval --plot OUT.png`: the confusion matrix and the reliability diagram.

matplotlib (the `plot` extra) is imported when a plot is asked for, with the Agg backend
(no display needed). The PNG is written atomically.
"""
from __future__ import annotations

import numpy as np

from fastcifar.atomic import atomic_write
from fastcifar.extras import require_module
from fastcifar.use.report import written

ANNOTATE_MAX_CLASSES = 10  # counts written in the cells up to this many classes


def require_pyplot():
    """matplotlib.pyplot on the Agg backend, or one line saying how to install it."""
    matplotlib = require_module("matplotlib", "plot")
    matplotlib.use("Agg", force=True)
    return require_module("matplotlib.pyplot", "plot", package="matplotlib")


def plot_evaluation(report: dict, path) -> None:
    plt = require_pyplot()
    metrics = report["metrics"]
    names = [row["class"] for row in metrics["per_class"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6.5),
                                         gridspec_kw={"width_ratios": [1.15, 1]})
    _confusion(left, np.array(metrics["confusion_matrix"]), names)
    _reliability(right, metrics)
    test_set = report["test_set"]
    where = ("prepared test split" if test_set["kind"] == "prepared"
             else f"{test_set['kind']} {test_set['path']}")
    figure.suptitle(f"{report['model']} ({report['dataset']}, "
                    f"{report['checkpoint']}) on {where}: accuracy "
                    f"{100 * metrics['accuracy']:.2f}%, TTA {report['tta']}")
    figure.tight_layout()
    with written(path), atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)


def _confusion(axes, matrix: np.ndarray, names: list[str]) -> None:
    """Each row as fractions of that true class's images (a class with none stays 0)."""
    rows = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    axes.figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of the true class")
    k = len(names)
    font = 8 if k <= 20 else 3
    axes.set_xticks(range(k), names, rotation=90, fontsize=font)
    axes.set_yticks(range(k), names, fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("confusion matrix")
    if k <= ANNOTATE_MAX_CLASSES:
        for (i, j), count in np.ndenumerate(matrix):
            axes.text(j, i, str(count), ha="center", va="center", fontsize=7,
                      color="white" if fractions[i, j] > 0.5 else "black")


def _reliability(axes, metrics: dict) -> None:
    table = metrics["reliability"]
    edges = np.array(table["bin_edges"])
    width = edges[1] - edges[0]
    centres = edges[:-1] + width / 2
    accuracy = np.array([np.nan if a is None else a for a in table["accuracy"]])
    confidence = np.array([np.nan if c is None else c for c in table["confidence"]])
    axes.bar(centres, np.nan_to_num(accuracy), width=width, edgecolor="black",
             color="tab:blue", label="accuracy")
    gap_low = np.minimum(accuracy, confidence)
    axes.bar(centres, np.nan_to_num(np.abs(confidence - accuracy)), bottom=np.nan_to_num(gap_low),
             width=width, fill=False, edgecolor="tab:red", hatch="//",
             label="gap to the mean confidence")
    axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-1 probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"reliability diagram, {len(centres)} bins: ECE {metrics['ece']:.4f}")
    axes.legend(loc="upper left")
