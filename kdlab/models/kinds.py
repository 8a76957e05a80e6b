"""The kinds of model a model spec can build, by name: one table, torch-free.

A spec's `kind` (``model.teacher.kind``, ``model.student.kind``, ``model.bi_encoders[i].kind``, ...) picks the entry;
a spec without one builds the kind its role defaults to under the run's method (`serves` / `default_for` below:
``hf_classifier`` for finetune and hinton, ``sentence_encoder`` for multilingual and Trans-Encoder's bi-encoders,
``cross_encoder`` for its cross-encoders, ``multitask`` for BAM's student). Each entry names, as "module:function"
strings imported only when a run needs them (so `kdlab-train --cfg job` and `--help` import no torch), what the
shared layers do with such a model:

    build        build(spec, task, labels, tokenizer, teacher, key) -> nn.Module: a fresh model (`task`, `labels`: the
                 head a classifier needs; a multi-task model's `labels` are the data.tasks entries; `teacher`: the
                 model a copy starts from; `key`: the spec's, e.g. model.student, for its errors)
    payload      payload(model) -> dict: the config a kdlab .ckpt stores beside the weights
    from_payload from_payload(config) -> nn.Module: an empty model of that config (the .ckpt weights go in next)
    load         load(folder, key) -> nn.Module: an exported model folder
    export       export(model, folder): the weights (safetensors) and config files into a folder (the tokenizer is
                 written next to them by kdlab.models.files.export_model)
    transformer  whether it is a transformer with layers (hidden-state / attention matching, from_teacher_layers)
    classifier   whether it is a sequence classifier (below); a trained teacher or kdlab-eval's model must be one
    serves       the "<method>.<role>" places it may be built for (role: teacher, student, bi_encoders, ...)
    default_for  those of them where a spec without `kind` builds it
    settings     the keys its spec's `config` may hold, for its `check` (a word student's sizes)
    check        check(key, spec, method): config-time rules on the spec's own keys (torch-free; optional)

A classifier kind's forward takes input_ids / attention_mask / token_type_ids and returns an object with `.logits`,
and its `model.config` has num_labels, id2label and model_type, so the LightningModules, the teacher-output cache
and kdlab-eval work on any of them; a sentence encoder's forward returns the embeddings, a multi-task model's
`forward(batch, task)` one head's logits. A built model names its kind in its class's `kdlab_kind` (absent: the
default). An export folder's config.json names a kind other than the default in `kdlab_kind` where the folder is
kdlab's own format (word students); a kdlab .ckpt names it in its payload's `model_kind`.

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
    classifier: bool = (
        True  # forward(input_ids, ...) returns .logits; config has num_labels (kdlab.models.files.load_trained)
    )
    serves: tuple[str, ...] = ()  # "<method>.<role>" where it may be built
    default_for: tuple[str, ...] = ()  # those where a spec without `kind` builds it
    settings: tuple[str, ...] = ()  # the keys its spec's `config` takes, where its `check` reads them (word students)
    check: str | None = None  # check(key, spec, method): torch-free config-time rules on the spec's own keys

    def call(self, step: str, *args: Any) -> Any:
        """Run one of the entry's functions (`step` is a field name), importing its module now (kdlab.registry.resolve)."""
        return registry.resolve(getattr(self, step))(*args)


KINDS: dict[str, ModelKind] = {}


def register_kind(entry: ModelKind) -> ModelKind:
    """Add a kind to the table (its name must be new)."""
    if entry.name in KINDS:
        raise ValueError(f"model kind {entry.name!r} is registered twice")
    for place in entry.default_for:
        if place not in entry.serves or any(place in other.default_for for other in KINDS.values()):
            raise ValueError(f"model kind {entry.name!r}: {place} has another default or is not among its `serves`")
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


def role(key: str) -> str:
    """A spec's role from its key: model.student -> student, model.bi_encoders[0] -> bi_encoders."""
    return key.split(".")[1].split("[")[0] if key.count(".") >= 1 else key


def of_spec(spec: Mapping[str, Any], key: str = "model.kind", method: str | None = None) -> ModelKind:
    """The kind a model spec builds (`key`: its `kind` key): the one it names, else the default of its role under
    `method` (None, or a place no kind serves: the default kind). A named kind that does not serve that place is a
    ConfigError naming `key` and listing those that do."""
    place = f"{method}.{role(key)}"
    serving = [entry for entry in KINDS.values() if place in entry.serves]
    name = spec.get("kind")
    if name is None:
        name = next((entry.name for entry in serving if place in entry.default_for), None)
    entry = kind(name, key)
    if serving and entry not in serving:
        choices = [other.name for other in serving]
        raise ConfigError(key, f"must be one of {choices} for the {role(key)} of method={method}, got {entry.name!r}")
    return entry


def of_model(model: Any) -> ModelKind:
    """The kind of a built model: its class's `kdlab_kind`, else the default (a Hugging Face model)."""
    return kind(getattr(type(model), "kdlab_kind", None))


def of_folder_config(config: Mapping[str, Any], key: str) -> ModelKind:
    """The kind an export folder's config.json describes."""
    return kind(config.get(FOLDER_KEY), key)


def check_kinds(
    specs: Mapping[str, Any], method: str, loss: Mapping[str, Any] | None, stages: Mapping[str, Any]
) -> None:
    """Config-time rules on `specs` (model.teacher, model.student, ... by key): each kind is registered and built for
    that role by `method` (of_spec); a kind that is not a transformer refuses the options that need one (its
    `from_teacher_layers`; for the student an extra loss term, `loss.<name>.weight` > 0: hidden-state or attention
    matching; `method.<role>.optimizer.layerwise_decay` < 1); then each kind's own spec check. `stages` is the
    `method` node."""
    for key, spec in specs.items():
        entry = of_spec(spec, f"{key}.kind", method)
        if entry.transformer:
            continue
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
    for name in ("teacher", "student"):
        decay = ((stages.get(name) or {}).get("optimizer") or {}).get("layerwise_decay")
        spec = specs.get(f"model.{name}")
        entry = of_spec(spec, f"model.{name}.kind", method) if spec is not None else None
        if entry is not None and decay is not None and float(decay) < 1.0 and not entry.transformer:
            raise ConfigError(
                f"method.{name}.optimizer.layerwise_decay",
                f"needs a transformer (its layer stack); model.{name}.kind={entry.name}: set it to 1.0",
            )
    for key, spec in specs.items():
        entry = of_spec(spec, f"{key}.kind", method)
        if entry.check is not None:
            entry.call("check", key, spec, method)


EMBEDDINGS = ("random", "teacher")  # a word student's embedding init: random, or the teacher's input embeddings
PROJECTIONS = (
    "pca",
    "learnt",
)  # teacher embeddings to a smaller width: fixed (top principal components) or a trained Linear


def check_word_student(key: str, spec: Mapping[str, Any], method: str) -> None:
    """A word student's spec (BiLSTM, TextCNN): no Hugging Face keys (name_or_path, layers, trust_remote_code), embeddings
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
    known = KINDS[spec.get("kind")].settings
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


# how a Hugging Face classifier is stored (its checkpoint payload, export folder): the default kind's and a cross-encoder's
HF_FILES = {
    "payload": "kdlab.models.hf:hf_payload",
    "from_payload": "kdlab.models.hf:hf_from_payload",
    "load": "kdlab.models.hf:load_hf_folder",
    "export": "kdlab.models.hf:export_hf",
}
CLASSIFIER_PLACES = ("finetune.teacher", "finetune.student", "hinton.teacher", "hinton.student")

register_kind(
    ModelKind(
        DEFAULT_KIND,
        "a Hugging Face AutoModelForSequenceClassification (pretrained name/folder, random config, or teacher layers)",
        build="kdlab.models.hf:build_hf_classifier",
        **HF_FILES,
        transformer=True,
        serves=(*CLASSIFIER_PLACES, "bam.teacher"),
        default_for=(*CLASSIFIER_PLACES, "bam.teacher"),
    )
)


register_kind(
    ModelKind(
        "bilstm",
        "Tang et al. 2019: embeddings, one bidirectional LSTM layer, max-pooled states, a ReLU layer, the classifier",
        **word_student("kdlab.models.bilstm"),
        transformer=False,
        serves=CLASSIFIER_PLACES,
        settings=("embedding_dim", "hidden_size", "fc_size", "dropout"),  # kdlab.models.bilstm.BiLSTMConfig
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
        serves=CLASSIFIER_PLACES,
        settings=("embedding_dim", "filter_widths", "num_filters", "dropout"),  # kdlab.models.textcnn.TextCNNConfig
        check="kdlab.models.kinds:check_word_student",
    )
)
SENTENCE_ENCODER_PLACES = ("multilingual.teacher", "multilingual.student", "trans_encoder.bi_encoders")
register_kind(
    ModelKind(
        "sentence_encoder",
        "a Hugging Face encoder + pooling (+ a Dense projection, + L2 normalisation), exported as a "
        "sentence-transformers folder",
        **entries("kdlab.models.sentence_encoder"),
        transformer=True,
        classifier=False,
        serves=SENTENCE_ENCODER_PLACES,
        default_for=SENTENCE_ENCODER_PLACES,
    )
)
register_kind(
    ModelKind(
        "cross_encoder",
        "a one-logit Hugging Face sequence classifier over a sentence pair (from a spec or a bi-encoder's weights)",
        build="kdlab.models.cross_encoder:build",
        **HF_FILES,
        transformer=True,
        serves=("trans_encoder.cross_encoders",),
        default_for=("trans_encoder.cross_encoders",),
    )
)
register_kind(
    ModelKind(
        "multitask",
        "one shared Hugging Face encoder and one head per task of data.tasks (BAM)",
        **entries("kdlab.models.multitask"),
        transformer=True,
        classifier=False,
        serves=("bam.student",),
        default_for=("bam.student",),
    )
)
