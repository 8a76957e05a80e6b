"""Task metrics as GLUE reports them, built from torchmetrics.

Classification: ``acc`` (accuracy), ``f1`` (binary F1 of class 1 for two classes, macro F1 otherwise),
``mcc`` (Matthews correlation). Regression: ``pearson`` and ``spearman`` (×100 is not applied here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torchmetrics
from torchmetrics import classification as C
from torchmetrics import regression as R

from kdlab.evaluation.names import CLASSIFICATION_METRICS, REGRESSION_METRICS


def build_metrics(task: str, num_labels: int, names: Sequence[str], prefix: str) -> torchmetrics.MetricCollection:
    """A MetricCollection named `<prefix><name>` for the task's metrics."""
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metrics = {}
    for name in names:
        if name not in allowed:
            raise ValueError(f"metric {name!r} is not available for {task}; choose from {list(allowed)}")
        if name == "acc":
            metrics[name] = C.MulticlassAccuracy(num_labels, average="micro")
        elif name == "f1":
            metrics[name] = C.BinaryF1Score() if num_labels == 2 else C.MulticlassF1Score(num_labels, average="macro")
        elif name == "mcc":
            metrics[name] = C.MulticlassMatthewsCorrCoef(num_labels)
        elif name == "pearson":
            metrics[name] = R.PearsonCorrCoef()
        elif name == "spearman":
            metrics[name] = R.SpearmanCorrCoef()
    return torchmetrics.MetricCollection(metrics, prefix=prefix)
