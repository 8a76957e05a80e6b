"""Task metrics as GLUE reports them, built from torchmetrics.

Classification: ``acc`` (accuracy), ``f1`` (binary F1 of class 1 for two classes, macro F1 otherwise),
``mcc`` (Matthews correlation). Regression: ``pearson`` and ``spearman``. Each is ×100 (kdlab.evaluation.names: one
scale everywhere), through torchmetrics' metric arithmetic, so Lightning still accumulates and resets them.

Every process evaluates the whole split (kdlab/data/sampling.py), so the metrics are not synchronised across
processes (`sync_on_compute=False`): each rank's figure is already the single-process figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torchmetrics
from torchmetrics import classification as C
from torchmetrics import regression as R

from kdlab.evaluation.names import CLASSIFICATION_METRICS, REGRESSION_METRICS

# each process holds the whole split's predictions: no cross-process reduction
LOCAL = {"sync_on_compute": False}


def build_metrics(task: str, num_labels: int, names: Sequence[str], prefix: str) -> torchmetrics.MetricCollection:
    """A MetricCollection named `<prefix><name>` for the task's metrics."""
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metrics = {}
    for name in names:
        if name not in allowed:
            raise ValueError(f"metric {name!r} is not available for {task}; choose from {list(allowed)}")
        if name == "acc":
            metrics[name] = C.MulticlassAccuracy(num_labels, average="micro", **LOCAL)
        elif name == "f1":
            metrics[name] = (
                C.BinaryF1Score(**LOCAL)
                if num_labels == 2
                else C.MulticlassF1Score(num_labels, average="macro", **LOCAL)
            )
        elif name == "mcc":
            metrics[name] = C.MulticlassMatthewsCorrCoef(num_labels, **LOCAL)
        elif name == "pearson":
            metrics[name] = R.PearsonCorrCoef(**LOCAL)
        elif name == "spearman":
            metrics[name] = R.SpearmanCorrCoef(**LOCAL)
    return torchmetrics.MetricCollection({name: metric * 100 for name, metric in metrics.items()}, prefix=prefix)


def glue_mean(values: Sequence[float]) -> float:
    """The unweighted mean of each task's main metric (BAM's `glue_mean`)."""
    return float(sum(values) / len(values))
