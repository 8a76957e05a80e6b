"""Evaluators: task metrics (GLUE-style), STS Spearman, translation retrieval accuracy and embedding MSE."""
