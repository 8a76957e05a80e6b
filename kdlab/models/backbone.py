"""Build, load and export the sequence classifiers/regressors that teachers and students are.

A model spec (``model.teacher`` / ``model.student`` in config) says where a backbone comes from:

- ``name_or_path``: a Hugging Face name or local folder with pretrained weights (new task head);
  ``layers`` (optional) keeps only these of its encoder layers (e.g. ``[0, 2, 4]`` of a 6-layer model);
- otherwise ``config``: a random-init architecture (BERT-style keys), for tests and the embedded default;
- ``from_teacher_layers`` (students): a copy of the teacher keeping only these encoder layers;
- ``trained`` (teachers): an already fine-tuned model (HF folder or kdlab ``.ckpt``) used as is;
- ``kind`` (absent: ``hf_classifier``): what kind of network the spec builds (kdlab.models.kinds), e.g. a
  ``bilstm`` or ``textcnn`` student; building, checkpoint payloads, loading and exporting go through that table.

``tokenizer`` is ``null`` (the model folder's own), ``train`` (a WordPiece vocabulary trained on the
training texts, cached), ``teacher`` (the teacher's) or a path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.errors import ConfigError, DataError
from kdlab.models import kinds
from kdlab.models.spec import check_layer_indices, check_trust_remote_code
from kdlab.utils.atomic import replacing

log = logging.getLogger(__name__)
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


def save_atomically(folder: Path, write: Callable[[str], Any]) -> None:
    """Write a folder through a temporary sibling and rename it, so a half-written folder is never read."""
    with replacing(folder, folder=True) as tmp:
        write(str(tmp))


def _head_kwargs(task: str, labels: Sequence[str]) -> dict[str, Any]:
    if task == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    return {
        "num_labels": len(labels),
        "problem_type": "single_label_classification",
        "id2label": {i: str(label) for i, label in enumerate(labels)},
        "label2id": {str(label): i for i, label in enumerate(labels)},
    }


def encoder_layers(model: nn.Module, key: str = "model.student.from_teacher_layers") -> nn.ModuleList:
    """The transformer layer stack of a HF encoder (the ModuleList as long as num_hidden_layers)."""
    depth = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise ConfigError(key, f"cannot find the layer stack of {type(model).__name__}")


def keep_layers(teacher: nn.Module, layers: Sequence[int], key: str = "model.student.from_teacher_layers") -> nn.Module:
    """A copy of `teacher` with only the given encoder layers (DistilBERT-style initialisation)."""
    layers = check_layer_indices(layers, teacher.config.num_hidden_layers, key, owner="this model")
    student = copy.deepcopy(teacher)
    stack = encoder_layers(student, key)
    kept = [stack[int(i)] for i in layers]
    for position in range(len(stack) - 1, -1, -1):
        del stack[position]
    stack.extend(kept)
    student.config.num_hidden_layers = len(kept)
    for position, layer in enumerate(kept):  # some architectures index their caches by layer_idx
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = position
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    return student


def pretrained_layers(model: nn.Module, spec: Mapping[str, Any], key: str = "model") -> nn.Module:
    """A pretrained model cut to the encoder layers `spec.layers` lists (all of them when the key is null); `key` is
    the spec's (model.student, ...)."""
    layers = spec.get("layers")
    return model if layers is None else keep_layers(model, list(layers), key=f"{key}.layers")


def config_from_spec(spec: Mapping[str, Any], tokenizer: Any, **extra: Any) -> Any:
    """A transformers config for a random-init model: `spec.config` (BERT-style keys) sized to the tokenizer."""
    from transformers import AutoConfig

    arch = dict(spec.get("config") or {})
    model_type = arch.pop("model_type", "bert")
    arch.setdefault("vocab_size", len(tokenizer))
    arch.setdefault("pad_token_id", tokenizer.pad_token_id)
    return AutoConfig.for_model(model_type, **arch, **extra)


def remote_code(spec: Mapping[str, Any], name: str, key: str = "model") -> dict[str, bool]:
    """`from_pretrained` keywords for a spec's own `trust_remote_code` (off unless the spec turns it on).

    When on, the model's own Python files run: a WARNING naming the model goes to the run's log (<run>/train.log)
    and the key is in the run's resolved config (<run>/config.yaml). Never on for any other model of the run.
    """
    if not check_trust_remote_code(spec, key):  # `key`: the spec's own (model.student, model.bi_encoders[0], ...)
        return {}
    log.warning("trust_remote_code: true for %s: the Python code shipped with this model runs", name)
    return {"trust_remote_code": True}


def _remote_code_hint(err: BaseException) -> str:
    """What to do when transformers refused a model's own code."""
    if "trust_remote_code" not in str(err):
        return ""
    return (
        "; it ships its own code, which kdlab runs only if this model's trust_remote_code is true in its model config"
    )


def load_pretrained(auto_class: Any, spec: Mapping[str, Any], key: str, **kwargs: Any) -> nn.Module:
    """`auto_class.from_pretrained(spec.name_or_path)` under the spec's own trust_remote_code; a failure is one ConfigError
    naming `key` (`<spec key>.name_or_path`)."""
    name = str(spec["name_or_path"])
    try:
        return auto_class.from_pretrained(name, **kwargs, **remote_code(spec, name, key.removesuffix(".name_or_path")))
    except (OSError, ValueError) as err:  # ValueError: the folder ships its own code and trust_remote_code is off
        raise ConfigError(key, f"cannot load {name!r} ({_first_line(err)}){_remote_code_hint(err)}") from None


def build_model(
    spec: Mapping[str, Any],
    task: str,
    labels: Sequence[str],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str | None = None,
) -> nn.Module:
    """A fresh model for the task from a spec, built by its kind (`spec.kind`, kdlab.models.kinds); `key` is the
    spec's (model.teacher, model.student), which errors about its values name (None: the kind's own default)."""
    entry = kinds.of_spec(spec, f"{key or 'model'}.kind")
    return entry.call("build", spec, task, labels, tokenizer, teacher, *([key] if key else []))


def build_hf_classifier(
    spec: Mapping[str, Any],
    task: str,
    labels: Sequence[str],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str = "model",
) -> nn.Module:
    """A Hugging Face classifier/regressor: pretrained backbone, random config, or teacher layers."""
    from transformers import AutoModelForSequenceClassification

    head = _head_kwargs(task, labels)
    if spec.get("from_teacher_layers") is not None:
        if teacher is None:
            raise ConfigError(f"{key}.from_teacher_layers", "needs a teacher (method hinton)")
        return keep_layers(teacher, list(spec["from_teacher_layers"]), key=f"{key}.from_teacher_layers")
    if spec.get("name_or_path"):
        return pretrained_layers(
            load_pretrained(AutoModelForSequenceClassification, spec, f"{key}.name_or_path", **head), spec, key
        )
    return AutoModelForSequenceClassification.from_config(config_from_spec(spec, tokenizer, **head))


def hf_payload(model: nn.Module) -> dict[str, Any]:
    """A Hugging Face model's config as a plain dict (for a .ckpt)."""
    return model.config.to_dict()


def hf_from_payload(config: Mapping[str, Any]) -> nn.Module:
    """An empty Hugging Face classifier of the config a .ckpt stores."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = dict(config)
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model(config.pop("model_type"), **config))


def load_hf_folder(path: Path, key: str) -> nn.Module:
    """A fine-tuned Hugging Face classifier from its folder (its own code is never run)."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(str(path))
    except (OSError, ValueError) as err:  # ValueError: the folder ships its own code (never run for a trained model)
        raise ConfigError(key, f"cannot load {path} ({_first_line(err)}){_remote_code_hint(err)}") from None


def export_hf(model: nn.Module, folder: str) -> None:
    """A Hugging Face model's weights (safetensors) and config.json into `folder`."""
    model.save_pretrained(folder, safe_serialization=True)


def checkpoint_payload(model: nn.Module, tokenizer: Any) -> dict[str, Any]:
    """What a kdlab checkpoint stores besides weights so it can be loaded on its own: config + tokenizer files
    (and the model's kind when it is not the default)."""
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            files[name] = Path(tmp, name).read_text(encoding="utf-8")
    entry = kinds.of_model(model)
    kind = {} if entry.name == kinds.DEFAULT_KIND else {kinds.PAYLOAD_KEY: entry.name}
    return {"model_config": entry.call("payload", model), "tokenizer_files": files, **kind}


def _first_line(err: BaseException) -> str:
    """An exception's first non-empty line without terminal colour codes."""
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def load_checkpoint_file(path: str | Path, key: str) -> dict[str, Any]:
    """A checkpoint unpickled weights-only (tensors and plain values; a pickled callable is refused, never called).

    A user hands checkpoints in (`key` names where), so a file that would import or call anything while being
    unpickled is refused with one line naming the file and what it asked for; nothing in it runs.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        wanted = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if wanted:
            raise DataError(
                path,
                f"not a loadable kdlab checkpoint, given as {key}: refused, unpickling it would call {wanted.group(1)} "
                "(kdlab loads checkpoints weights-only, tensors and plain values, so no code in a file runs)",
            ) from None
        raise DataError(
            path, f"not a loadable kdlab checkpoint, given as {key} (corrupt or not a torch file: {_first_line(err)})"
        ) from None
    except Exception as err:  # a truncated zip, a folder-like file, ...: one line, never a deep traceback
        raise DataError(
            path, f"not a loadable kdlab checkpoint, given as {key} ({type(err).__name__}: {_first_line(err)})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise DataError(
            path, f"not a kdlab checkpoint, given as {key} (it holds a {type(checkpoint).__name__}, not a dict)"
        )
    return checkpoint


def _folder_config(path: Path) -> dict[str, Any]:
    """A model folder's config.json as a dict ({} when it is not readable JSON: the kind's loader then says why)."""
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_trained(path: str | Path, key: str = "model.teacher.trained") -> tuple[nn.Module, Any]:
    """A fine-tuned model and its tokenizer from an export folder or a kdlab ``.ckpt`` (loaded weights-only), by its kind."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(key, f"{path} does not exist (expected a model folder or a kdlab .ckpt)")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ConfigError(key, f"{path} has no config.json (expected a Hugging Face model folder)")
        model = kinds.of_folder_config(
            _folder_config(path), f"{key} ({path / 'config.json'}: {kinds.FOLDER_KEY})"
        ).call("load", path, key)
        return model, load_tokenizer(str(path))
    checkpoint = load_checkpoint_file(path, key)
    payload = checkpoint.get("kdlab")
    if not isinstance(payload, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise DataError(
            path, f"checkpoint has no 'kdlab' and 'state_dict' entries (was it written by kdlab?), given as {key}"
        )
    entry = kinds.kind(payload.get(kinds.PAYLOAD_KEY), f"{key} ({path}: {kinds.PAYLOAD_KEY})")
    try:
        model = entry.call("from_payload", dict(payload["model_config"]))
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a damaged payload: one line, not a deep traceback
        raise DataError(
            path,
            f"checkpoint does not hold a model kdlab can rebuild, given as {key} ({type(err).__name__}: {_first_line(err)})",
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in payload["tokenizer_files"].items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        tokenizer = load_tokenizer(tmp)
    return model, tokenizer


def export_model(model: nn.Module, tokenizer: Any, folder: str | Path) -> Path:
    """Write `model` (safetensors weights and config.json, by its kind) and `tokenizer` into a folder, atomically."""
    folder = Path(folder)
    entry = kinds.of_model(model)

    def write(tmp: str) -> None:
        entry.call("export", model, tmp)
        tokenizer.save_pretrained(tmp)

    save_atomically(folder, write)
    return folder


def freeze(model: nn.Module) -> nn.Module:
    """Put a model in eval mode with gradients off (teachers)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
