"""Metric names per task, and how every table prints a metric (torch-free, so configs can be checked and results
printed before heavy imports).

One scale everywhere: task scores (accuracy, F1, MCC, Pearson, Spearman, their means such as `glue_mean`,
translation and Tatoeba accuracy) are ×100, as GLUE tables report them, in logs, `metrics.json`, tables, plots and
trackers. Losses and the MSE figures are not scores and keep their own scale.
"""

CLASSIFICATION_METRICS = ("acc", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")

# a score is ×100; these name parts mark a value that is not (a loss, an MSE, a step count, a rate, a time)
NOT_SCORES = ("loss", "mse", "epoch", "step", "lambda", "lr", "deploy")
COUNTERS = ("epoch", "step")


def is_score(key: str) -> bool:
    """Whether a metric key (`student/val/acc`, `val/glue_mean`, `train/loss_soft`) is a ×100 score."""
    return not any(part.startswith(NOT_SCORES) for part in key.split("/"))


def format_metric(key: str, value: float) -> str:
    """A metric as tables print it: scores (×100) with 2 decimals, as GLUE tables do; a counter (the kept
    checkpoint's `epoch`, `step`) as a whole number; other values with 4 decimals."""
    if key.rsplit("/", 1)[-1] in COUNTERS:
        return f"{value:.0f}"
    return f"{value:.2f}" if is_score(key) else f"{value:.4f}"
