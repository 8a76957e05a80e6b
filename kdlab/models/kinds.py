"""The kinds of sequence classifier a model spec can build, by name: one table, torch-free.

A spec's `kind` (``model.teacher.kind`` / ``model.student.kind``; absent = ``hf_classifier``) picks the entry.
Each entry names, as "module:function" strings imported only when a run needs them (so `kdlab-train --cfg job`
and `--help` import no torch), what the shared layers do with such a model:

    build        build(spec, task, labels, tokenizer, teacher, key) -> nn.Module: a fresh model for the task (`key`:
                 the spec's, e.g. model.student, for its errors)
    payload      payload(model) -> dict: the config a kdlab .ckpt stores beside the weights
    from_payload from_payload(config) -> nn.Module: an empty model of that config (the .ckpt weights go in next)
    load         load(folder) -> nn.Module: an exported model folder
    export       export(model, folder): the weights (safetensors) and config.json into a folder
    transformer  whether it is a transformer with layers (hidden-state / attention matching, from_teacher_layers)
    check        check(key, spec, method): config-time rules on the spec's own keys (torch-free; optional)

Every model's forward takes input_ids / attention_mask / token_type_ids and returns an object with `.logits`,
and `model.config` has num_labels, id2label and model_type, so the LightningModules, the teacher-output cache
and kdlab-eval work on any kind. An export folder's config.json names a kind other than the default in
`kdlab_kind`; a kdlab .ckpt in its payload's `model_kind`.

Adding a kind: its module under kdlab/models/ (the network and those five functions), a conf/model/<name>.yaml
with `kind: <name>`, and one `register_kind(...)` line below. Error messages that list the kinds read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kdlab import registry
from kdlab.errors import ConfigError

DEFAULT_KIND = "hf_classifier"
FOLDER_KEY = "kdlab_kind"  # in an export's config.json (absent: a Hugging Face folder)
PAYLOAD_KEY = "model_kind"  # in a .ckpt's kdlab payload (absent: a Hugging Face config)


@dataclass(frozen=True)
class ModelKind:
    """What building, checkpointing, loading and exporting need to know about one kind of model."""

    name: str
    summary: str
    build: str
    payload: str
    from_payload: str
    load: str
    export: str
    transformer: bool
    check: str | None = None  # check(key, spec, method): torch-free config-time rules on the spec's own keys

    def call(self, step: str, *args: Any) -> Any:
        """Run one of the entry's functions (`step` is a field name), importing its module now (kdlab.registry.resolve)."""
        return registry.resolve(getattr(self, step))(*args)


KINDS: dict[str, ModelKind] = {}


def register_kind(entry: ModelKind) -> ModelKind:
    """Add a kind to the table (its name must be new)."""
    if entry.name in KINDS:
        raise ValueError(f"model kind {entry.name!r} is registered twice")
    KINDS[entry.name] = entry
    registry.allow(
        *(ref for ref in (entry.build, entry.payload, entry.from_payload, entry.load, entry.export, entry.check) if ref)
    )
    return entry


def kind(name: Any, key: str = "model.kind") -> ModelKind:
    """The registered kind called `name` (None: the default); ConfigError naming `key` and the choices otherwise."""
    name = DEFAULT_KIND if name is None else name
    if name not in KINDS:
        raise ConfigError(key, f"must be one of {list(KINDS)}, got {name!r}")
    return KINDS[name]


def of_spec(spec: Mapping[str, Any], key: str = "model.kind") -> ModelKind:
    """The kind a model spec builds."""
    return kind(spec.get("kind"), key)


def of_model(model: Any) -> ModelKind:
    """The kind of a built model: its class's `kdlab_kind`, else the default (a Hugging Face model)."""
    return kind(getattr(type(model), "kdlab_kind", None))


def of_folder_config(config: Mapping[str, Any], key: str) -> ModelKind:
    """The kind an export folder's config.json describes."""
    return kind(config.get(FOLDER_KEY), key)


def check_kinds(
    specs: Mapping[str, Any], method: str, loss: Mapping[str, Any] | None, stages: Mapping[str, Any]
) -> None:
    """Config-time rules on `specs` (model.teacher, model.student, ... by key): each kind is registered; a kind that
    is not a transformer is for finetune/hinton only, and refuses the options that need one (its
    `from_teacher_layers`; for the student an extra loss term, `loss.<name>.weight` > 0: hidden-state or attention
    matching; `method.<role>.optimizer.layerwise_decay` < 1); then each kind's own spec check. `stages` is the
    `method` node."""
    for key, spec in specs.items():
        entry = of_spec(spec, f"{key}.kind")
        if entry.transformer:
            continue
        if method not in ("finetune", "hinton"):
            raise ConfigError(f"{key}.kind", f"{entry.name} is for method=finetune or hinton, not {method}")
        if spec.get("from_teacher_layers") is not None:
            raise ConfigError(
                f"{key}.from_teacher_layers",
                f"needs a transformer student; {key}.kind={entry.name} has no layers to copy",
            )
        if key != "model.student":
            continue
        for name, term in (loss or {}).items():
            if isinstance(term, Mapping) and float(term.get("weight") or 0.0) > 0:
                raise ConfigError(
                    f"loss.{name}.weight",
                    f"needs a transformer student (its layer outputs); {key}.kind={entry.name} has none: set it to 0",
                )
    for role in ("teacher", "student"):
        decay = ((stages.get(role) or {}).get("optimizer") or {}).get("layerwise_decay")
        spec = specs.get(f"model.{role}")
        if spec is not None and decay is not None and float(decay) < 1.0 and not of_spec(spec).transformer:
            raise ConfigError(
                f"method.{role}.optimizer.layerwise_decay",
                f"needs a transformer (its layer stack); model.{role}.kind={of_spec(spec).name}: set it to 1.0",
            )
    for key, spec in specs.items():
        entry = of_spec(spec)
        if entry.check is not None:
            entry.call("check", key, spec, method)


EMBEDDINGS = ("random", "teacher")  # a word student's embedding init: random, or the teacher's input embeddings
PROJECTIONS = (
    "pca",
    "learnt",
)  # teacher embeddings to a smaller width: fixed (top principal components) or a trained Linear
ARCHITECTURE_KEYS = {  # a word student's `config` keys (kdlab.models.word_students.WordStudentConfig and its subclasses)
    "bilstm": ("embedding_dim", "hidden_size", "fc_size", "dropout"),
    "textcnn": ("embedding_dim", "filter_widths", "num_filters", "dropout"),
}


def check_word_student(key: str, spec: Mapping[str, Any], method: str) -> None:
    """A BiLSTM/TextCNN spec: no Hugging Face keys (name_or_path, layers, trust_remote_code), embeddings
    random|teacher (teacher: method hinton), projection null|pca|learnt, its own `config` keys with positive sizes."""
    embeddings, projection = spec.get("embeddings", "random"), spec.get("projection")
    for name in (
        "name_or_path",
        "layers",
    ):  # a trained one is given as model.teacher.trained (its folder says its kind)
        if spec.get(name) is not None:
            raise ConfigError(
                f"{key}.{name}",
                f"is for a Hugging Face model; {key}.kind={spec.get('kind')} is built from its config: set it to null",
            )
    if spec.get("trust_remote_code"):
        raise ConfigError(
            f"{key}.trust_remote_code",
            f"has no effect: {key}.kind={spec.get('kind')} is built by kdlab and runs no shipped code",
        )
    if embeddings not in EMBEDDINGS:
        raise ConfigError(f"{key}.embeddings", f"must be one of {list(EMBEDDINGS)}, got {embeddings!r}")
    if embeddings == "teacher" and method != "hinton":
        raise ConfigError(
            f"{key}.embeddings", f"teacher needs the teacher model (method=hinton); with method={method} use random"
        )
    if projection is not None and projection not in PROJECTIONS:
        raise ConfigError(f"{key}.projection", f"must be one of {list(PROJECTIONS)} or null, got {projection!r}")
    known = ARCHITECTURE_KEYS[spec.get("kind")]
    for name, value in (spec.get("config") or {}).items():
        if name not in known:
            raise ConfigError(f"{key}.config.{name}", f"is not a {spec.get('kind')} setting; they are {list(known)}")
        if name == "dropout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"{key}.config.dropout", f"must be in [0, 1), got {value!r}")
            continue
        if name == "embedding_dim" and value is None and embeddings == "teacher":
            continue  # the teacher's width
        values = [value] if value is None or isinstance(value, (bool, int, float, str)) else list(value)
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ConfigError(
                f"{key}.config.{name}",
                f"must be a positive integer{' list' if name == 'filter_widths' else ''}, got {value!r}",
            )


register_kind(
    ModelKind(
        DEFAULT_KIND,
        "a Hugging Face AutoModelForSequenceClassification (pretrained name/folder, random config, or teacher layers)",
        build="kdlab.models.hf:build_hf_classifier",
        payload="kdlab.models.hf:hf_payload",
        from_payload="kdlab.models.hf:hf_from_payload",
        load="kdlab.models.hf:load_hf_folder",
        export="kdlab.models.hf:export_hf",
        transformer=True,
    )
)

STEPS = ("build", "payload", "from_payload", "load", "export")


def entries(module: str, steps: tuple[str, ...] = STEPS) -> dict[str, str]:
    """A kind's entries named as its steps in `module` ("kdlab.models.x" -> {"build": "kdlab.models.x:build", ...})."""
    return {step: f"{module}:{step}" for step in steps}


def word_student(module: str) -> dict[str, str]:
    """A word-embedding student's entries: build, from_payload and load its module's, payload and export shared."""
    return {
        **entries("kdlab.models.word_students", ("payload", "export")),
        **entries(module, ("build", "from_payload", "load")),
    }


register_kind(
    ModelKind(
        "bilstm",
        "Tang et al. 2019: embeddings, one bidirectional LSTM layer, max-pooled states, a ReLU layer, the classifier",
        **word_student("kdlab.models.bilstm"),
        transformer=False,
        check="kdlab.models.kinds:check_word_student",
    )
)
register_kind(
    ModelKind(
        "textcnn",
        "Kim 2014: embeddings, convolutions of several widths with ReLU, max-over-time pooling, "
        "dropout, the classifier",
        **word_student("kdlab.models.textcnn"),
        transformer=False,
        check="kdlab.models.kinds:check_word_student",
    )
)
