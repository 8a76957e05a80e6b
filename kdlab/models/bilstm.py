"""BiLSTM student (Tang et al. 2019, *Distilling Task-Specific Knowledge from BERT into Simple Neural Networks*).

    x_1..x_n = word vectors (kdlab.models.word_students)
    h_t = [LSTM→(x)_t ; LSTM←(x)_t]                 one bidirectional layer, run over each row's own length
    u = max_t h_t   (padding excluded)              max-pooling over time
    z = W_2 · dropout(ReLU(W_1 · u + b_1)) + b_2    a ReLU layer, then the classifier (one output for regression)

Loading an export without kdlab's training code:

    from transformers import AutoTokenizer
    from kdlab.models.bilstm import BiLSTMClassifier
    model, tokenizer = BiLSTMClassifier.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kdlab.models.word_students import WordStudent, WordStudentConfig, kind_functions, masked_max


@dataclass
class BiLSTMConfig(WordStudentConfig):
    """A BiLSTM student's sizes: `hidden_size` per direction, `fc_size` of the ReLU layer."""

    hidden_size: int = 128
    fc_size: int = 128


class BiLSTMClassifier(WordStudent):
    """Embeddings → one bidirectional LSTM layer → max over time (padding masked) → ReLU layer → classifier."""

    kdlab_kind = "bilstm"
    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.lstm = nn.LSTM(
            config.embedding_dim, config.hidden_size, num_layers=1, batch_first=True, bidirectional=True
        )
        self.fc = nn.Linear(2 * config.hidden_size, config.fc_size)

    def feature_size(self) -> int:
        return self.config.fc_size

    def encode(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(states, lengths, batch_first=True, enforce_sorted=False)
        outputs, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=states.shape[1])
        return torch.relu(self.fc(masked_max(outputs, mask)))


# the `bilstm` kind's entries (kdlab.models.kinds; payload and export: kdlab.models.word_students')
build, from_payload, load = kind_functions(BiLSTMClassifier)
