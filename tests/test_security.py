"""Nothing executed that should not be (issue 9): no pickle code runs from a user-given checkpoint, and
`trust_remote_code` stays off unless a config key turns it on for one named model (and the run records it)."""

from __future__ import annotations

import ast
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_dirs
from omegaconf import OmegaConf

from kdlab.errors import ConfigError, DataError
from kdlab.models.backbone import build_model
from kdlab.models.multitask import build_multitask_model
from kdlab.models.sentence_encoder import load_sentence_encoder


class CreatesAFile:
    """Unpickling this runs `open(marker, "w")`: the file appears only if the loader executes pickled code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like a kdlab .ckpt whose unpickling would create `marker`."""
    torch.save({"state_dict": {}, "kdlab": CreatesAFile(marker)}, path)
    return path


def test_the_crafted_checkpoint_really_runs_code_when_unpickled_in_full(tmp_path):
    """The payload is live: a full (not weights-only) unpickling creates the file, so the refusals below mean something."""
    marker = tmp_path / "proof"
    path = crafted_checkpoint(tmp_path / "proof.ckpt", marker)
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, timeout=120)
    assert marker.exists()


ENTRY_POINTS = {
    # kdlab-eval on a .ckpt
    "eval": ("eval", "model_path={ckpt}", "model_path"),
    # a given trained teacher for Hinton KD
    "teacher": ("train", "model.teacher.trained={ckpt} debug=fast", "model.teacher.trained"),
    # BAM's given per-task teachers
    "bam": ("train", "experiment=bam_toy +method.trained_teachers.reviews={ckpt}", "method.trained_teachers.reviews"),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_checkpoint_that_would_run_code_is_refused_by_every_entry_point(cli, tmp_path, entry):
    program, overrides, key = ENTRY_POINTS[entry]
    marker = tmp_path / "pwned"
    ckpt = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    args = overrides.format(ckpt=ckpt).split()
    result = cli(*args, entry=program, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("kdlab: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0] == (
        f"kdlab: error: {ckpt}: not a loadable kdlab checkpoint, given as {key}: refused, unpickling it would call "
        "io.open (kdlab loads checkpoints weights-only, tensors and plain values, so no code in a file runs)"
    )
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_damaged_checkpoints_are_one_line_data_errors(tmp_path, tiny_tokenizer):
    """Not a dict, no kdlab payload, weights that do not fit the stored config, a truncated file: DataError naming the file."""
    from kdlab.errors import DataError
    from kdlab.models.backbone import build_model
    from kdlab.models.files import checkpoint_payload, load_trained

    model = build_model(
        {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
        "classification",
        ["a", "b"],
        tiny_tokenizer,
    )
    good = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "kdlab": checkpoint_payload(model, tiny_tokenizer),
    }
    wrong_shapes = {**good, "state_dict": {k: v[:1] if v.dim() else v for k, v in good["state_dict"].items()}}
    cases = {
        "list.ckpt": ([1, 2, 3], r"not a kdlab checkpoint, given as model_path \(it holds a list, not a dict\)"),
        "foreign.ckpt": ({"state_dict": {}}, r"checkpoint has no 'kdlab' and 'state_dict' entries"),
        "shapes.ckpt": (
            wrong_shapes,
            r"checkpoint does not hold a model kdlab can rebuild, given as model_path \(RuntimeError: ",
        ),
    }
    for name, (content, match) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: {match}"):
            load_trained(tmp_path / name, key="model_path")
    torch.save(good, tmp_path / "good.ckpt")
    assert load_trained(tmp_path / "good.ckpt")[0].config.num_labels == 2
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:1000])
    with pytest.raises(
        DataError, match=rf"^{tmp_path / 'cut.ckpt'}: not a loadable kdlab checkpoint, given as model_path \("
    ):
        load_trained(tmp_path / "cut.ckpt", key="model_path")


def remote_code_model(folder: Path, marker: Path, tokenizer) -> Path:
    """A local model folder whose config names its own Python code (`auto_map`, for a classifier and a bare encoder);
    importing that code creates `marker`."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    described = json.loads((folder / "config.json").read_text())
    described.update(
        model_type="kdlab-remote",
        architectures=["RemoteModel"],
        auto_map={
            "AutoConfig": "remote.RemoteConfig",
            "AutoModel": "remote.RemoteEncoder",
            "AutoModelForSequenceClassification": "remote.RemoteModel",
        },
    )
    (folder / "config.json").write_text(json.dumps(described))
    (folder / "remote.py").write_text(
        "from pathlib import Path\n"
        "from transformers import BertConfig, BertForSequenceClassification, BertModel\n\n"
        f"Path({str(marker)!r}).touch()  # runs only if the loader runs this model's own code\n\n\n"
        "class RemoteConfig(BertConfig):\n    model_type = 'kdlab-remote'\n\n\n"
        "class RemoteModel(BertForSequenceClassification):\n    config_class = RemoteConfig\n\n\n"
        "class RemoteEncoder(BertModel):\n    config_class = RemoteConfig\n"
    )
    return folder


def model_specs(config: OmegaConf) -> dict[str, object]:
    """Every model spec of a model config (or a run's `model` node), by its key: model.teacher, model.bi_encoders.0, ..."""
    specs = {f"model.{role}": config[role] for role in ("teacher", "student") if role in config}
    specs.update(
        {
            f"model.{group}.{index}": spec
            for group in ("bi_encoders", "cross_encoders")
            if group in config
            for index, spec in enumerate(config[group])
        }
    )
    return specs


@pytest.mark.parametrize("model_config", sorted(path.stem for path in (REPO / "conf" / "model").glob("*.yaml")))
def test_trust_remote_code_is_false_by_default_for_every_model(model_config):
    specs = model_specs(OmegaConf.load(REPO / "conf" / "model" / f"{model_config}.yaml"))
    assert specs and {key: spec.get("trust_remote_code") for key, spec in specs.items()} == {
        key: False for key in specs
    }


TINY_DATA = "data.train.size=64 data.validation.size=32 data.test.size=32"
# model kind: (overrides placing the remote-code folder, the key of the spec that loads it)
REMOTE_CODE_KINDS = {
    # a Hinton teacher (also what a Trans-Encoder cross-encoder and a BAM teacher are: backbone.build_model)
    "classifier": (
        f"debug=fast {TINY_DATA} model.teacher.name_or_path={{folder}} model.teacher.tokenizer=null model.teacher.config=null",
        "model.teacher",
    ),
    # a multilingual teacher (kdlab.models.sentence_encoder)
    "sentence_encoder": (
        "experiment=multilingual_toy debug=fast data.sources.0.size=64 data.sources.1.size=64 data.dev.0.size=32 "
        "data.dev.1.size=32 model.teacher.name_or_path={folder} model.teacher.tokenizer=null model.teacher.config=null",
        "model.teacher",
    ),
    # a Trans-Encoder bi-encoder (kdlab.models.sentence_encoder); its cross-encoder random-init
    "bi_encoder": (
        f"experiment=trans_encoder_toy {TINY_DATA} method.cycles=1 method.simcse.enabled=false method.bi.epochs=1 "
        "method.cross.epochs=1 +trainer.limit_train_batches=2 +trainer.limit_val_batches=1 model.cross_encoders.0.from_bi_start=null "
        "model.bi_encoders.0.name_or_path={folder} model.bi_encoders.0.tokenizer=null model.bi_encoders.0.config=null",
        "model.bi_encoders.0",
    ),
    # BAM's multi-task student (kdlab.models.multitask), plain multi-task so no teacher trains
    "multitask": (
        "experiment=bam_toy debug=fast method.teachers=false data.tasks.0.train.size=64 data.tasks.1.train.size=64 "
        "model.student.name_or_path={folder} model.student.tokenizer=null model.student.config=null",
        "model.student",
    ),
}


def remote_code_run(
    cli, tmp_path: Path, tokenizer, kind: str, *extra: str
) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Run `kind`'s experiment on a remote-code model folder; (the result, the folder, the marker its code would create)."""
    marker = tmp_path / "remote-code-ran"
    folder = remote_code_model(tmp_path / "remote_model", marker, tokenizer)
    args = REMOTE_CODE_KINDS[kind][0].format(folder=folder).split()
    env = {
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules")
    }  # where transformers copies a model's code before importing it
    return cli(*args, *extra, env=env, timeout=300), folder, marker


@pytest.mark.parametrize("kind", list(REMOTE_CODE_KINDS))
def test_a_models_own_code_is_refused_when_its_config_key_is_off(cli, tmp_path, tiny_tokenizer, kind):
    """Refused when the config is checked (the folder's config.json names its code): before any import, run folder or model."""
    refused, folder, marker = remote_code_run(cli, tmp_path, tiny_tokenizer, kind)
    assert refused.returncode == 2, refused.stderr[-3000:]
    key = re.sub(r"\.(\d+)$", r"[\1]", REMOTE_CODE_KINDS[kind][1])  # model.bi_encoders.0 -> model.bi_encoders[0]
    assert refused.stderr.strip() == (
        f"kdlab: error: {key}.name_or_path: {folder} ships its own Python code (auto_map in its "
        f"config.json), which kdlab runs only if {key}.trust_remote_code is true"
    )
    assert not marker.exists() and run_dirs(tmp_path) == []


LOADERS = {  # the loading function of each model kind, called with the config check bypassed (a hub model is checked only here)
    "classifier": lambda spec, tokenizer: build_model(spec, "classification", ["a", "b"], tokenizer),
    "sentence_encoder": lambda spec, tokenizer: load_sentence_encoder(spec, "model.teacher"),
    "multitask": lambda spec, tokenizer: build_multitask_model(spec, [{"name": "t", "task": "regression"}], tokenizer),
}


@pytest.mark.parametrize("kind", list(LOADERS))
def test_every_loader_refuses_a_models_own_code_without_the_key(tmp_path, tiny_tokenizer, kind):
    marker = tmp_path / "remote-code-ran"
    folder = remote_code_model(tmp_path / "remote_model", marker, tiny_tokenizer)
    for spec in ({"name_or_path": str(folder)}, {"name_or_path": str(folder), "trust_remote_code": False}):
        with pytest.raises(
            ConfigError,
            match=rf"cannot load '{re.escape(str(folder))}' \(The repository .* contains custom code .*\); "
            "it ships its own code, which kdlab runs only if this model's trust_remote_code is true",
        ):
            LOADERS[kind](spec, tiny_tokenizer)
    assert not marker.exists()


@pytest.mark.parametrize("kind", list(REMOTE_CODE_KINDS))
def test_a_models_own_code_runs_only_when_its_config_key_says_so_and_the_run_records_it(
    cli, tmp_path, tiny_tokenizer, kind
):
    spec_key = REMOTE_CODE_KINDS[kind][1]
    trusted, folder, marker = remote_code_run(cli, tmp_path, tiny_tokenizer, kind, f"{spec_key}.trust_remote_code=true")
    assert marker.exists()
    run = run_dirs(tmp_path)[-1]
    recorded = model_specs(OmegaConf.load(run / "config.yaml").model)
    assert {key: spec.get("trust_remote_code") for key, spec in recorded.items()} == {
        key: key == spec_key for key in recorded
    }
    assert (
        f"trust_remote_code: true for {folder}: the Python code shipped with this model runs"
        in (run / "train.log").read_text()
    )
    assert trusted.returncode == 0, trusted.stderr[-3000:]


# --- data is data: nothing in a data file is resolved, instantiated or evaluated ------------------------------------


def hostile_texts(marker: Path) -> list[str]:
    """Strings that would read the environment, build an object or run code (creating `marker`) if anything resolved,
    instantiated or evaluated them: an interpolation, a `_target_`, Python and YAML tags."""
    return [
        "${oc.env:KDLAB_PROBE}",
        "${oc.env:HOME} is home",
        f"${{oc.create:{{_target_: pathlib.Path.touch, self: {marker}}}}}",
        "_target_: os.system",
        f"{{_target_: builtins.open, _args_: ['{marker}', 'w']}}",
        f"__import__('os').system('touch {marker}')",
        f"!!python/object/apply:os.system ['touch {marker}']",
        "${kdlab_cwd:} ${minilm_path:} ${data.labels}",
    ]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A tsv, csv (quoted where needed) or jsonl file, by the path's suffix."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows), encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, delimiter="\t" if path.suffix == ".tsv" else ",").writerows([header, *rows])
    return path


@pytest.fixture
def probe_env(monkeypatch):
    """KDLAB_PROBE=pos: a label `${oc.env:KDLAB_PROBE}` would become a valid label if it were resolved."""
    monkeypatch.setenv("KDLAB_PROBE", "pos")


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_texts_and_labels_of_data_files_are_plain_text_never_resolved_or_instantiated(tmp_path, probe_env, suffix):
    from kdlab.data.text import TextDataModule

    marker = tmp_path / "instantiated"
    hostile = hostile_texts(marker)
    data = {"task": "classification", "labels": ["neg", "pos"], "columns": {"text": "text", "label": "label"}}
    path = write_rows(tmp_path / f"texts{suffix}", ["text", "label"], [[text, "pos"] for text in hostile])
    assert [
        record["text"] for record in TextDataModule({**data, "train": {"path": str(path)}}).records("train")
    ] == hostile

    for label in ("${oc.env:KDLAB_PROBE}", "_target_: os.system"):  # a label is compared as the raw string
        path = write_rows(tmp_path / f"labels{suffix}", ["text", "label"], [["fine", label]])
        with pytest.raises(DataError) as refused:
            TextDataModule({**data, "train": {"path": str(path)}}).records("train")
        assert (
            str(refused.value)
            == f"{path}:{1 if suffix == '.jsonl' else 2}: label {label!r} is not in the label set ['neg', 'pos'] (data.labels)"
        )
    assert not marker.exists()


def test_a_json_object_holding_a_target_is_refused_as_a_text_not_built(tmp_path):
    from kdlab.data.text import TextDataModule

    marker = tmp_path / "instantiated"
    path = tmp_path / "objects.jsonl"
    path.write_text(
        json.dumps({"text": {"_target_": "builtins.open", "_args_": [str(marker), "w"]}, "label": "pos"}) + "\n"
    )
    data = {
        "task": "classification",
        "labels": ["neg", "pos"],
        "columns": {"text": "text", "label": "label"},
        "train": {"path": str(path)},
    }
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: text must be a string, got dict "):
        TextDataModule(data).records("train")
    assert not marker.exists()


def test_parallel_and_sentence_pair_files_are_plain_text_never_resolved(tmp_path, probe_env):
    from kdlab.data.pairs import PairData
    from kdlab.data.parallel import read_pairs

    marker = tmp_path / "instantiated"
    hostile = hostile_texts(marker)
    parallel = write_rows(tmp_path / "parallel.tsv", ["en", "de"], [[text, text[::-1]] for text in hostile])
    pairs = read_pairs(
        {"path": str(parallel), "columns": {"source": "en", "target": "de"}, "lang": "en-de"}, "data.sources[0]"
    )
    assert [(pair["source"], pair["target"]) for pair in pairs] == [(text, text[::-1]) for text in hostile]

    separated = tmp_path / "pairs.txt"
    separated.write_text("".join(f"{text}||{text} again\n" for text in hostile), encoding="utf-8")
    dev = write_rows(
        tmp_path / "dev.tsv", ["s1", "s2", "score"], [[text, "b", "${oc.env:KDLAB_PROBE}"] for text in hostile]
    )
    pair_data = PairData(
        {
            "train": {"path": str(separated), "separator": "||", "columns": {"text": 0, "text_pair": 1}},
            "validation": {"path": str(dev)},
            "columns": {"text": "s1", "text_pair": "s2", "label": "score"},
        }
    )
    assert pair_data.pairs() == [(text, f"{text} again") for text in hostile]
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(dev))}:2: score '\$\{{oc\.env:KDLAB_PROBE\}}' is not a number$"
    ):
        pair_data.labelled("validation")
    assert not marker.exists()


# --- no code from strings: a scan of kdlab's own source ----------------------------------------------------------------

EVALUATING = {"eval", "exec", "compile", "__import__", "breakpoint"}
UNSAFE_LOADS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "joblib.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "yaml.load_all",
    "yaml.unsafe_load_all",
    "importlib.import_module",
    "runpy.run_path",
    "runpy.run_module",
}
# `_target_`s are built from config nodes only: the places that instantiate are listed, so a new one is reviewed
INSTANTIATING = {"kdlab/runner.py", "kdlab/tracking.py"}
# the one place that imports by name: kdlab.registry.resolve, which imports only references a table registered in code
IMPORTING = {"kdlab/registry.py"}


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain, '' for anything else (a call's result, a subscript)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        prefix = _dotted(node.value)
        return f"{prefix}.{node.attr}" if prefix else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def code_from_strings(source: str) -> list[tuple[int, str]]:
    """(line, what) for each call in `source` that evaluates a string or deserialises objects unsafely."""
    found = []
    for call in (node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)):
        name = _dotted(call.func)
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        weights_only = _keyword(call, "weights_only")
        allow_pickle = _keyword(call, "allow_pickle")
        if (
            (isinstance(call.func, ast.Name) and name in EVALUATING)
            or name.removeprefix("builtins.") in EVALUATING
            and name.startswith("builtins.")
        ):
            found.append((call.lineno, f"{name}()"))
        elif name in UNSAFE_LOADS:
            found.append((call.lineno, f"{name}()"))
        elif name == "yaml.load" and not (
            loader is not None and _dotted(loader).split(".")[-1] in ("SafeLoader", "CSafeLoader")
        ):
            found.append((call.lineno, "yaml.load() without SafeLoader"))
        elif name == "torch.load" and not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
            found.append((call.lineno, "torch.load() without weights_only=True"))
        elif name in ("np.load", "numpy.load") and not (
            allow_pickle is None or (isinstance(allow_pickle, ast.Constant) and allow_pickle.value is False)
        ):
            found.append((call.lineno, f"{name}(allow_pickle=...)"))
        elif name.split(".")[-1] == "instantiate" or name in (
            "hydra.utils.call",
            "hydra.utils.get_method",
            "hydra.utils.get_class",
        ):
            found.append((call.lineno, "instantiate"))
    return found


def test_the_source_scan_finds_each_unsafe_call_and_passes_safe_ones():
    """The scan below is precise: every pattern it looks for is found, and the safe look-alikes kdlab uses are not."""
    unsafe = [
        "eval(text)",
        "exec(code)",
        "builtins.eval(s)",
        "__import__(name)",
        "pickle.load(f)",
        "pickle.loads(b)",
        "yaml.load(f)",
        "yaml.load(f, Loader=yaml.Loader)",
        "yaml.unsafe_load(f)",
        "torch.load(p)",
        "torch.load(p, weights_only=False)",
        "np.load(p, allow_pickle=True)",
        "importlib.import_module(name)",
        "instantiate(node)",
        "hydra.utils.instantiate(node)",
    ]
    safe = [
        "model.eval()",
        "self.teacher.eval()",
        "yaml.load(f, Loader=yaml.SafeLoader)",
        "yaml.safe_load(f)",
        "json.loads(s)",
        "torch.load(p, map_location='cpu', weights_only=True)",
        "np.load(p)",
        "ast.literal_eval(s)",
        "OmegaConf.load(p)",
        "except_eval = evaluate(x)",
    ]
    assert [len(code_from_strings(line)) for line in unsafe] == [1] * len(unsafe)
    assert [code_from_strings(line) for line in safe] == [[]] * len(safe)


def test_the_registry_imports_only_references_registered_in_code():
    from kdlab.registry import METHODS, resolve

    assert callable(resolve(METHODS["hinton"].pipeline))
    for ref in ("os:system", "kdlab.pipelines.supervised:run_hinton ", "builtins:eval"):
        with pytest.raises(ValueError, match="is in no kdlab table"):
            resolve(ref)


def test_kdlab_never_evaluates_strings_nor_unpickles_and_instantiates_only_config_nodes():
    """No eval/exec/compile/__import__, no pickle/marshal/unsafe yaml, every torch.load weights-only; `instantiate` only in runner.py."""
    found = {}
    for path in sorted((REPO / "kdlab").rglob("*.py")):
        for line, what in code_from_strings(path.read_text(encoding="utf-8")):
            found.setdefault(what, []).append(f"{path.relative_to(REPO)}:{line}")
    instantiating = {where.split(":")[0] for where in found.pop("instantiate", [])}
    importing = {where.split(":")[0] for where in found.pop("importlib.import_module()", [])}
    assert found == {}
    assert importing <= IMPORTING, (
        f"import by name only through kdlab.registry.resolve: {sorted(importing - IMPORTING)}"
    )
    assert instantiating <= INSTANTIATING, (
        f"review how these build objects from config: {sorted(instantiating - INSTANTIATING)}"
    )
