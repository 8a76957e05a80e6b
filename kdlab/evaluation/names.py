"""Metric names per task (torch-free, so configs can be checked before heavy imports)."""

CLASSIFICATION_METRICS = ("acc", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
