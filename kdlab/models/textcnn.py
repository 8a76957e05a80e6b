"""TextCNN student (Kim 2014, *Convolutional Neural Networks for Sentence Classification*).

    x_1..x_n = word vectors (kdlab.models.word_students), zero beyond each row's length
    c^k_t = ReLU(W_k · [x_{t-k+1}; …; x_t] + b_k)   for each filter width k (wide convolution: a row shorter than k
                                                     still has windows; windows wholly in the padding are excluded)
    u = [max_t c^k_t for each k]                    max-over-time pooling, num_filters features per width
    z = W · dropout(u) + b                          the classifier (one output for regression)

Loading an export without kdlab's training code:

    from transformers import AutoTokenizer
    from kdlab.models.textcnn import TextCNNClassifier
    model, tokenizer = TextCNNClassifier.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdlab.models.word_students import WordStudent, WordStudentConfig, kind_functions, masked_max


@dataclass
class TextCNNConfig(WordStudentConfig):
    """A TextCNN student's sizes: the filter widths and the number of filters of each width."""

    filter_widths: list[int] = field(default_factory=lambda: [3, 4, 5])
    num_filters: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        self.filter_widths = [
            int(width) for width in self.filter_widths
        ]  # a plain list (a config node is not checkpoint-safe)


class TextCNNClassifier(WordStudent):
    """Embeddings → 1-D convolutions of several widths with ReLU → max over time (padding masked) → dropout → classifier."""

    kdlab_kind = "textcnn"
    config_class = TextCNNConfig

    def __init__(self, config: TextCNNConfig):
        super().__init__(config)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.num_filters, int(k), padding=int(k) - 1)
            for k in config.filter_widths
        )

    def feature_size(self) -> int:
        return self.config.num_filters * len(self.config.filter_widths)

    def encode(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1, keepdim=True)
        pooled = []
        for conv in self.convs:
            width = conv.kernel_size[0]
            features = torch.relu(conv(states.transpose(1, 2))).transpose(1, 2)  # (batch, length + width - 1, filters)
            positions = torch.arange(features.shape[1], device=mask.device).unsqueeze(0)
            pooled.append(masked_max(features, positions < lengths + width - 1))  # windows touching the row's tokens
        return torch.cat(pooled, dim=-1)


# the `textcnn` kind's entries (kdlab.models.kinds; payload and export: kdlab.models.word_students')
build, from_payload, load = kind_functions(TextCNNClassifier)
