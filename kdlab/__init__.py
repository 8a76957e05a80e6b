"""kdlab: knowledge-distillation experiments for NLP on PyTorch Lightning and Hydra.

Importing the package is cheap: torch, transformers and Lightning are imported by the
submodules that need them, so `kdlab-train --help` and `--cfg job` answer quickly.
"""

__version__ = "0.2.0"
