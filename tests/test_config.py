"""Config composition, instantiation and validation: every experiment composes; every bad value is one clear line."""

import os
import subprocess
import sys

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from kdlab.config import validate
from kdlab.resolvers import conf_dir, register_resolvers

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


@pytest.fixture
def fake_data_dir(tmp_path, monkeypatch):
    """A KDLAB_DATA_DIR whose files have the real headers, so experiment configs validate without the real data."""
    sst = tmp_path / "data" / "glue" / "SST-2"
    sst.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (sst / f"{split}.tsv").write_text("sentence\tlabel\nit 's good \t1\nit 's bad \t0\n")
    root = tmp_path / "data"
    files = {
        "parallel/wmt-en-de-opennmt/train.en-de.tsv": "en\tde\ngood\tgut\nbad\tschlecht\nyes\tja\n",
        "parallel/multi30k/train.en-de-fr.tsv": "en\tde\tfr\ngood\tgut\tbon\nbad\tschlecht\tmauvais\nyes\tja\toui\n",
        "parallel/tatoeba-en-zh-manythings/en-zh.filtered.tsv": "en\tzh\tattribution\ngood\t好\tx\nbad\t坏\tx\nyes\t是\tx\n",
        "stsb/sts-train.csv": "".join(f"g\tf\t2012\t{i}\t1.0\tA{i}.\tB{i}.\n" for i in range(3)),
        "stsb/sts-dev.csv": "".join(f"g\tf\t2012\t{i}\t{i}.0\tC{i}.\tD{i}.\n" for i in range(3)),
        "stsb/sts-test.csv": "".join(f"g\tf\t2012\t{i}\t{i}.5\tE{i}.\tF{i}.\n" for i in range(3)),
        "stsb-multi-mt/stsb-es-train.csv": "".join(f"A{i} es.,B{i} es.,1.0\n" for i in range(3)),
        "glue/RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tC.\tD.\tnot_entailment\n",
        "glue/RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tE.\tF.\tentailment\n1\tG.\tH.\tnot_entailment\n",
        "glue/MRPC/msr_paraphrase_train.txt": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        + "".join(
            f"{i % 2}\t{i}\t{i + 9}\tA{i} .\tB{i} .\n" for i in range(410)
        ),  # more rows than glue.yaml holds out (408)
        "glue/MRPC/msr_paraphrase_test.txt": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tC .\tD .\n0\t3\t4\tE .\tF .\n",
        "glue/CoLA/train.tsv": "gj04\t1\t\tGood .\ngj04\t0\t*\tGood bad .\n",
        "glue/CoLA/dev.tsv": "gj04\t1\t\tFine .\ngj04\t0\t*\tFine fine bad .\n",
        "tatoeba-laser/tatoeba.deu-eng.deu": "Hallo\n",
        "tatoeba-laser/tatoeba.deu-eng.eng": "Hello\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setenv("KDLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KDLAB_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("KDLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


def composed(overrides, tmp_path):
    register_resolvers()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the job's config, as the task function sees it
    return cfg


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_every_experiment_composes_validates_and_instantiates(experiment, fake_data_dir, tmp_path):
    from kdlab.data.text import TextDataModule
    from kdlab.runner import make_trainer
    from kdlab.tracking import stage_loggers

    cfg = composed([f"experiment={experiment}"] if experiment else [], tmp_path)
    validate(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["paths"]["output_dir"] == str(tmp_path / "run")
    if cfg.method.name == "multilingual":
        from kdlab.data.parallel import ParallelDataModule

        with open_dict(cfg):
            if cfg.data.get("holdout"):
                cfg.data.holdout = 1  # the fake files are tiny
        assert len(ParallelDataModule(cfg.data).languages()) >= 1
    elif cfg.method.name == "bam":
        from kdlab.data.multitask import MultiTaskDataModule

        with open_dict(cfg):
            for task in cfg.data.tasks:
                for split in ("train", "validation"):
                    if task[split].get("holdout"):
                        task[split].holdout.size = 1  # the fake files are tiny
        data = MultiTaskDataModule(cfg.data)
        assert len(data.names) >= 2 and all(m.records("train") for m in data.task_modules.values())
    elif cfg.method.name == "trans_encoder":
        from kdlab.data.pairs import PairData

        data = PairData(cfg.data)
        assert data.pairs() and len(data.labelled("validation")[1]) >= 2
    else:
        module = TextDataModule(cfg.data)
        assert module.records("train") and module.num_labels == 2
    trainer = make_trainer(cfg, "teacher", tmp_path / "run" / "teacher", epochs=1, monitor=str(cfg.method.monitor))
    assert trainer.max_epochs == 1 and trainer.checkpoint_callback.dirpath.endswith("teacher/checkpoints")
    assert [type(lg).__name__ for lg in stage_loggers(cfg, "teacher")] == ["CSVLogger"]


# options that belong to the multilingual, Trans-Encoder and BAM methods compose with their partners
PARTNERS = {
    "experiment=multilingual_toy": {
        "method": ["multilingual"],
        "model": ["tiny_sentence", "minilm_sentence"],
        "data": ["parallel_toy", "parallel_real"],
    },
    "experiment=trans_encoder_toy": {
        "method": ["trans_encoder"],
        "model": ["trans_tiny", "trans_tiny_mutual", "trans_minilm"],
        "data": ["sts_toy", "stsb_pairs"],
    },
    "experiment=bam_toy": {"method": ["bam"], "data": ["multitask_toy", "glue"]},
}


@pytest.mark.parametrize("group", ["hardware", "logger", "callbacks", "data", "model", "method"])
def test_every_option_of_every_group_composes(group, fake_data_dir, tmp_path):
    for option in sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml")):
        partners = [experiment for experiment, options in PARTNERS.items() if option in options.get(group, [])]
        cfg = composed([*partners, f"{group}={option}"], tmp_path)
        OmegaConf.to_container(cfg, resolve=True)
        if group in ("logger", "callbacks"):
            for _name, node in (cfg.get(group) or {}).items():
                if group == "logger" and "Wandb" in node._target_:
                    os.environ["WANDB_MODE"] = "offline"
                assert instantiate(node, **({"version": "x"} if "CSV" in node.get("_target_", "") else {})) is not None


def test_hardware_configs_set_the_trainer(fake_data_dir, tmp_path):
    gpu = composed(["hardware=gpu"], tmp_path).trainer
    assert (gpu.accelerator, gpu.precision) == ("gpu", "bf16-mixed")
    multi = composed(["hardware=multi_gpu"], tmp_path).trainer
    assert (multi.strategy, multi.devices) == ("ddp", -1)
    ddp_cpu = composed(["hardware=ddp_cpu"], tmp_path).trainer
    assert (ddp_cpu.accelerator, ddp_cpu.strategy, ddp_cpu.devices) == ("cpu", "ddp", 2)
    nodes = composed(["hardware=multi_node"], tmp_path).trainer
    assert (nodes.strategy, nodes.devices, nodes.num_nodes) == ("ddp", 4, 2)


@pytest.mark.parametrize("experiment", ["multilingual_toy", "trans_encoder_toy", "bam_toy", None])
def test_debug_fast_validates_for_every_toy_experiment(experiment, tmp_path):
    """debug=fast sets method.teacher.epochs; methods without a teacher stage (multilingual) ignore it."""
    validate(composed(["debug=fast", *([f"experiment={experiment}"] if experiment else [])], tmp_path))


def test_cfg_job_is_fast_and_never_imports_torch(cli):
    probe = (
        "import sys, runpy; sys.argv=['kdlab-train','--cfg','job','loss.temperature=3'];\n"
        "try:\n    runpy.run_module('kdlab.train', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch','transformers','pytorch_lightning','torchmetrics','wandb') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "temperature: 3" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
    help_result = cli("--help", timeout=60)
    assert help_result.returncode == 0 and "method" in help_result.stdout


def test_a_failing_job_does_not_stop_a_sweep(cli):
    result = cli(
        "-m",
        "loss.temperature=0,2",
        "debug=fast",
        "data.train.size=100",
        "data.validation.size=32",
        "data.test.size=32",
    )
    assert result.returncode == 2, result.stderr[-2000:]  # the sweep ran on, then says a job failed (a config error)
    assert "loss.temperature: must be > 0, got 0" in result.stderr
    (sweep,) = (cli.tmp_path / "outputs" / "sweeps").iterdir()
    finished = [job.name for job in sweep.iterdir() if (job / "metrics.json").exists()]
    assert finished == ["1"]  # job 0 was refused, job 1 ran
