"""Tokenizers for kdlab's models: a deterministic WordPiece vocabulary trained on the training texts (cached by
their content), and loading a tokenizer by name or folder."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError
from kdlab.utils.atomic import save_atomically

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _fingerprint_texts(texts: Sequence[str], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def wordpiece_vocabulary(texts: Sequence[str], vocab_size: int) -> dict[str, int]:
    """A WordPiece vocabulary from `texts` that is the same in every process and on every machine.

    The `tokenizers` trainer breaks ties between equally frequent merges in hash order, which differs per
    process, so two runs trained different token sets. Here: the special tokens, then every character seen
    (as `c` and as the continuation `##c`), then whole words; each group by frequency, ties by the text,
    cut at `vocab_size`. Words outside the vocabulary fall back to their characters, so only characters
    too rare to fit become [UNK].
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces: Counter[str] = Counter()  # every character seen, as a word start and as a continuation
    for word, count in words.items():
        for char in word:
            pieces[char] += count
            pieces["##" + char] += count

    def ranked(counter: Counter[str]) -> list[str]:
        return [token for token, _ in sorted(counter.items(), key=lambda item: (-item[1], item[0]))]

    vocabulary = list(SPECIAL_TOKENS)
    seen = set(vocabulary)
    for token in ranked(pieces) + ranked(words):
        if len(vocabulary) >= vocab_size:
            break
        if token not in seen:
            vocabulary.append(token)
            seen.add(token)
    return {token: index for index, token in enumerate(vocabulary)}


def train_wordpiece(texts: Sequence[str], vocab_size: int, cache_dir: str | Path) -> Any:
    """A lower-casing BERT-style WordPiece tokenizer over `texts` (`wordpiece_vocabulary`), cached by their content."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(cache_dir) / "tokenizers" / f"vocab-{_fingerprint_texts(texts, str(vocab_size))}"
    if (folder / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(folder))
    tok = Tokenizer(
        models.WordPiece(wordpiece_vocabulary(texts, vocab_size), unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=INPUT_NAMES,
    )
    save_atomically(folder, fast.save_pretrained)
    return fast


def load_tokenizer(path: str) -> Any:
    """A tokenizer from a HF name or local folder, with a clear error when it cannot be found."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ConfigError(
            "model.tokenizer", f"cannot load a tokenizer from {path!r} ({str(err).splitlines()[0]})"
        ) from None
