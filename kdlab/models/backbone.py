"""Build, load and export the sequence classifiers/regressors that teachers and students are.

A model spec (``model.teacher`` / ``model.student`` in config) says where a backbone comes from:

- ``name_or_path``: a Hugging Face name or local folder with pretrained weights (new task head);
  ``layers`` (optional) keeps only these of its encoder layers (e.g. ``[0, 2, 4]`` of a 6-layer model);
- otherwise ``config``: a random-init architecture (BERT-style keys), for tests and the embedded default;
- ``from_teacher_layers`` (students): a copy of the teacher keeping only these encoder layers;
- ``trained`` (teachers): an already fine-tuned model (HF folder or kdlab ``.ckpt``) used as is;
- ``kind`` (absent: the default of the spec's role under the run's method, e.g. ``hf_classifier`` for hinton's
  student): what kind of network the spec builds (kdlab.models.kinds), e.g. a ``bilstm`` or ``textcnn`` student, a
  ``sentence_encoder``, a ``cross_encoder`` or BAM's ``multitask`` model; building, checkpoint payloads, loading and
  exporting go through that table.

``tokenizer`` is ``null`` (the model folder's own), ``train`` (a WordPiece vocabulary trained on the
training texts, cached), ``teacher`` (the teacher's) or a path.

Where each concern lives: tokenizers in kdlab/models/tokenization.py, encoder layers in layers.py, the Hugging Face
classifier kind in hf.py, checkpoints / trained models / exports in files.py; this module builds a model of any kind
(`build_model`) and freezes teachers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from kdlab.models import kinds


def build_model(
    spec: Mapping[str, Any],
    task: str | None,
    labels: Sequence[Any],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str | None = None,
    method: str | None = None,
) -> nn.Module:
    """A fresh model from a spec, built by its kind (kdlab.models.kinds): the spec's `kind`, else the default of its
    role (`key`) under `method` (None: the default kind, a Hugging Face classifier).

    `task` (classification | regression) and `labels` (the class names) shape a classifier's head; a multi-task
    model's `labels` are the data.tasks entries; a sentence encoder uses neither. `teacher` is the model a copy
    starts from (from_teacher_layers, copy_teacher, from_bi_start). `key` is the spec's (model.teacher,
    model.bi_encoders[0], ...), which errors about its values name (None: the kind's own default)."""
    entry = kinds.of_spec(spec, f"{key or 'model'}.kind", method)
    return entry.call("build", spec, task, labels, tokenizer, teacher, *([key] if key else []))


def freeze(model: nn.Module) -> nn.Module:
    """Put a model in eval mode with gradients off (teachers)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
