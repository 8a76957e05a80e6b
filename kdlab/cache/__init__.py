"""The teacher-output cache shared by every method that caches (Hinton and BAM logits, multilingual embeddings): per-row
entries (teacher_outputs.py), compact storage (storage.py), and `kdlab-cache` (cli.py). docs/cache.md."""
