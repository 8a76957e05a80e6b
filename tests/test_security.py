"""Nothing executed that should not be (issue 9): no pickle code runs from a user-given checkpoint, and
`trust_remote_code` stays off unless a config key turns it on for one named model (and the run records it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, run_dirs


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
    assert errors[0] == (f"kdlab: error: {ckpt}: not a loadable kdlab checkpoint, given as {key}: refused, unpickling it would call "
                         "io.open (kdlab loads checkpoints weights-only, tensors and plain values, so no code in a file runs)")
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_damaged_checkpoints_are_one_line_data_errors(tmp_path, tiny_tokenizer):
    """Not a dict, no kdlab payload, weights that do not fit the stored config, a truncated file: DataError naming the file."""
    from kdlab.errors import DataError
    from kdlab.models.backbone import build_model, checkpoint_payload, load_trained

    model = build_model({"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
                        "classification", ["a", "b"], tiny_tokenizer)
    good = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "kdlab": checkpoint_payload(model, tiny_tokenizer)}
    wrong_shapes = {**good, "state_dict": {k: v[:1] if v.dim() else v for k, v in good["state_dict"].items()}}
    cases = {
        "list.ckpt": ([1, 2, 3], r"not a kdlab checkpoint, given as model_path \(it holds a list, not a dict\)"),
        "foreign.ckpt": ({"state_dict": {}}, r"checkpoint has no 'kdlab' and 'state_dict' entries"),
        "shapes.ckpt": (wrong_shapes, r"checkpoint does not hold a model kdlab can rebuild, given as model_path \(RuntimeError: "),
    }
    for name, (content, match) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: {match}"):
            load_trained(tmp_path / name, key="model_path")
    torch.save(good, tmp_path / "good.ckpt")
    assert load_trained(tmp_path / "good.ckpt")[0].config.num_labels == 2
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:1000])
    with pytest.raises(DataError, match=rf"^{tmp_path / 'cut.ckpt'}: not a loadable kdlab checkpoint, given as model_path \("):
        load_trained(tmp_path / "cut.ckpt", key="model_path")


def remote_code_model(folder: Path, marker: Path, tokenizer) -> Path:
    """A local model folder whose config names its own Python code (`auto_map`); importing that code creates `marker`."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    described = json.loads((folder / "config.json").read_text())
    described.update(model_type="kdlab-remote", architectures=["RemoteModel"],
                     auto_map={"AutoConfig": "remote.RemoteConfig", "AutoModelForSequenceClassification": "remote.RemoteModel"})
    (folder / "config.json").write_text(json.dumps(described))
    (folder / "remote.py").write_text(
        "from pathlib import Path\n"
        "from transformers import BertConfig, BertForSequenceClassification\n\n"
        f"Path({str(marker)!r}).touch()  # runs only if the loader runs this model's own code\n\n\n"
        "class RemoteConfig(BertConfig):\n    model_type = 'kdlab-remote'\n\n\n"
        "class RemoteModel(BertForSequenceClassification):\n    config_class = RemoteConfig\n"
    )
    return folder


@pytest.mark.parametrize("model_config", ["tiny", "minilm"])
def test_trust_remote_code_is_false_by_default_for_every_model(model_config):
    specs = OmegaConf.load(REPO / "conf" / "model" / f"{model_config}.yaml")
    assert {role: specs[role].trust_remote_code for role in ("teacher", "student")} == {"teacher": False, "student": False}


def test_a_models_own_code_runs_only_when_its_config_key_says_so_and_the_run_records_it(cli, tmp_path, tiny_tokenizer):
    marker = tmp_path / "remote-code-ran"
    folder = remote_code_model(tmp_path / "remote_model", marker, tiny_tokenizer)
    args = [f"model.teacher.name_or_path={folder}", "model.teacher.tokenizer=null", "model.teacher.config=null", "debug=fast",
            "data.train.size=64", "data.validation.size=32", "data.test.size=32"]
    env = {"HF_MODULES_CACHE": str(tmp_path / "hf_modules")}  # where transformers copies a model's code before importing it

    refused = cli(*args, env=env, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert refused.stderr.strip().splitlines()[-1] == (
        f"kdlab: error: model.name_or_path: cannot load '{folder}' (The repository {folder} contains custom code which must be "
        "executed to correctly load the model. You can inspect the repository content at "
        f"{folder} .); it ships its own code, which kdlab runs only if this model's trust_remote_code is true in its model config")
    assert not marker.exists()

    trusted = cli(*args, "model.teacher.trust_remote_code=true", env=env, timeout=300)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.exists()
    run = run_dirs(tmp_path)[-1]
    recorded = OmegaConf.load(run / "config.yaml")
    assert (recorded.model.teacher.trust_remote_code, recorded.model.student.trust_remote_code) == (True, False)
    assert f"trust_remote_code: true for {folder}: the Python code shipped with this model runs" in (run / "train.log").read_text()
