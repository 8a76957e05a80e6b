"""The teacher-output cache shared by every method (logits now; embeddings and pseudo-labels later)."""
