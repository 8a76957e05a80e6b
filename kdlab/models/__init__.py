"""Backbones (HF name, local folder, or a tiny random-init config), tokenizers, heads, exports."""
