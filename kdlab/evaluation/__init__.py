"""Evaluators: task metrics (GLUE-style), later STS Spearman and translation retrieval."""
