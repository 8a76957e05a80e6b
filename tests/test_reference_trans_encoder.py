"""The Trans-Encoder reference preset (conf/method/trans_encoder_reference.yaml, docs/reference_presets.md): each
point where amzn/trans-encoder's code differs from kdlab's defaults, pinned on a tiny case, and one tiny run of the
preset through the CLI (its labels, validation steps, lengths, pooling and the deviations it records)."""

import csv
import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, kdlab_folders, run_dirs
from omegaconf import OmegaConf

from kdlab.api import compose
from kdlab.data.pairs import PairData
from kdlab.errors import ConfigError
from kdlab.losses.pseudo_labels import cosine_labels
from kdlab.presets import deviations, preset_points

PRESET = "trans_encoder_reference"


# --- the points, one at a time ---------------------------------------------------------------------------------------
def test_bi_to_cross_labels_are_raw_cosines_in_the_reference_and_clipped_in_kdlab():
    cosines = torch.tensor([-0.4, 0.3, 0.8])
    assert cosine_labels([cosines], "raw", "method.cross.label_rule").tolist() == pytest.approx([-0.4, 0.3, 0.8])
    assert cosine_labels([cosines], "clipped", "method.cross.label_rule").tolist() == pytest.approx([0.0, 0.3, 0.8])
    with pytest.raises(ConfigError, match=r"method.cross.label_rule: must be one of \['clipped', 'raw'\], got 'clip'"):
        cosine_labels([cosines], "clip", "method.cross.label_rule")


def test_the_mutual_variant_averages_the_raw_cosines():
    first, second = torch.tensor([-0.4, 0.6]), torch.tensor([0.8, 1.0])
    # mutual_distill_parallel.py:162: torch.stack([cos1, cos2]).mean(0), no clipping before or after
    assert cosine_labels([first, second], "raw", "k").tolist() == pytest.approx([0.2, 0.8])
    assert cosine_labels([first, second], "clipped", "k").tolist() == pytest.approx(
        [0.4, 0.8]
    )  # kdlab: clip, then mean


def test_the_preset_sets_every_method_point_and_its_experiment_the_rest():
    cfg = compose(f"method={PRESET}", "model=trans_tiny", "data=sts_toy")
    assert deviations(cfg) == {}
    method = cfg.method
    assert (method.cross.label_rule, method.bi.label_orders) == ("raw", "one")
    assert (method.bi.max_length, method.cross.max_length) == (32, 64)
    assert (method.bi.val_check_steps, method.cross.val_check_steps) == (200, 200)
    assert (method.bi.optimizer.warmup_ratio, method.cross.optimizer.warmup_ratio) == (0.0, 0.1)
    assert (method.bi.optimizer.eps, method.cross.optimizer.eps) == (1e-6, 1e-6)
    kdlab = compose("experiment=trans_encoder_toy").method  # kdlab's defaults, for contrast
    assert (kdlab.cross.label_rule, kdlab.bi.label_orders, kdlab.bi.val_check_steps) == ("clipped", "both", None)
    assert (kdlab.bi.max_length, kdlab.cross.max_length, kdlab.bi.optimizer.warmup_ratio) == (64, 64, 0.1)
    stsb = compose("experiment=trans_encoder_stsb_reference")
    assert deviations(stsb) == {}
    assert [spec.pooling for spec in stsb.model.bi_encoders] == ["cls"]
    assert (stsb.data.pair_source, stsb.data.group_by_length) == ("all_splits", False)


def test_an_override_of_a_point_is_a_recorded_deviation_and_an_unknown_preset_one_line(cli):
    cfg = compose(f"method={PRESET}", "model=trans_tiny", "data=sts_toy", "method.cross.label_rule=clipped")
    assert deviations(cfg) == {"method.cross.label_rule": {"reference": "raw", "run": "clipped"}}
    out = cli("method=trans_encoder_referenc", "--cfg", "job")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "kdlab: error: overrides: In 'train': Could not find 'method/trans_encoder_referenc' Available options in "
        "'method': " + " ".join(sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml")))
    ]


def test_the_bi_encoder_warms_up_for_no_step_and_follows_the_reference_schedule():
    from transformers import get_linear_schedule_with_warmup

    from kdlab.optim import build_optimizer

    method = compose(f"method={PRESET}", "model=trans_tiny", "data=sts_toy").method
    layer = torch.nn.Linear(2, 2)
    total = 20

    def lrs(schedule):  # the lr of each optimizer step
        seen = []
        for _ in range(total):
            seen.append(schedule.get_last_lr()[0])
            schedule.optimizer.step()
            schedule.step()
        return seen

    def kdlab_lrs(stage):
        settings = OmegaConf.to_container(method[stage].optimizer, resolve=True)
        built = build_optimizer(layer.named_parameters(), settings, total, key=f"method.{stage}.optimizer")
        return lrs(built["lr_scheduler"]["scheduler"])

    def reference_lrs(lr, warmup):  # SentenceTransformer.fit / CrossEncoder.fit: WarmupLinear
        return lrs(get_linear_schedule_with_warmup(torch.optim.AdamW(layer.parameters(), lr=lr), warmup, total))

    assert kdlab_lrs("bi") == pytest.approx(reference_lrs(5e-5, 0), rel=1e-9, abs=1e-15)  # self_distill.py:269
    cross, reference = kdlab_lrs("cross"), reference_lrs(2e-5, 2)  # ceil(0.1 x 20) = 2 warm-up steps
    assert cross[2:] == pytest.approx(reference[2:], rel=1e-9)  # the same decay; the warm-up is one step ahead:
    assert (cross[0], reference[0]) == (pytest.approx(1e-5), 0.0)  # kdlab's first step has lr/W, the reference's 0


def test_each_stage_cuts_its_texts_to_its_own_max_length(tiny_tokenizer, tmp_path):
    long = " ".join(["the plot was good and the acting was bad"] * 8)
    (tmp_path / "pairs.tsv").write_text(f"s1\ts2\tscore\n{long}\t{long}\t3.0\nshort\ttext\t1.0\n")
    cfg = {
        "train": {"path": str(tmp_path / "pairs.tsv")},
        "validation": {"path": str(tmp_path / "pairs.tsv")},
        "test": {"path": str(tmp_path / "pairs.tsv")},
        "columns": {"text": "s1", "text_pair": "s2", "label": "score"},
        "max_length": 128,
        "eval_batch_size": 8,
    }
    data, labels = PairData(cfg), torch.tensor([0.5, 0.5])
    bi = data.training_features("bi", tiny_tokenizer, labels, 32)
    cross = data.training_features("cross", tiny_tokenizer, labels, 64)
    assert len(bi[0]["a"]) == len(bi[0]["b"]) == 32  # each sentence cut to 32 (models.Transformer max_seq_length)
    assert len(cross[0]["input_ids"]) == 64  # the pair together cut to 64 (CrossEncoder max_length)
    assert len(data.eval_features("bi", tiny_tokenizer, "validation", 32)[0]["a"]) == 32  # dev as training


def test_all_splits_as_the_pair_source_reads_every_split(tmp_path):
    for name, rows in (("train", "a\tb\t1\nc\td\t2\n"), ("dev", "e\tf\t3\nb\ta\t4\n"), ("test", "g\th\t5\n")):
        (tmp_path / f"{name}.tsv").write_text("s1\ts2\tscore\n" + rows)
    cfg = {
        "train": {"path": str(tmp_path / "train.tsv")},
        "validation": {"path": str(tmp_path / "dev.tsv")},
        "test": {"path": str(tmp_path / "test.tsv")},
        "columns": {"text": "s1", "text_pair": "s2", "label": "score"},
        "pair_source": "all_splits",
        "max_length": 16,
        "eval_batch_size": 8,
    }
    data = PairData(cfg)
    assert data.pairs() == [("a", "b"), ("c", "d"), ("e", "f"), ("g", "h")]  # (b, a) counts as (a, b)
    assert data.info["splits"] == ["train", "validation", "test"] and data.info["pair_source"] == "all_splits"


def test_validation_every_n_batches_and_at_each_epoch_end_keeps_the_best_checkpoint(tmp_path):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from kdlab.callbacks import BestCheckpoint, ValidateEvery

    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.4, 0.6, 0.0])  # the dev score of each validation in turn

    class Scripted(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.validated_after: list[tuple[int, int]] = []  # (epoch, batches of the epoch done)

        def training_step(self, batch, batch_idx):
            self.done = batch_idx + 1
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            pass

        def on_validation_epoch_end(self):
            self.validated_after.append((self.current_epoch, self.done))
            self.log("val/spearman", next(scores))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def configure_callbacks(self):
            return [ValidateEvery(3)]

    loader = DataLoader(TensorDataset(torch.ones(7, 1)), batch_size=1)  # 7 batches an epoch
    checkpoint = BestCheckpoint(dirpath=str(tmp_path), filename="best", monitor="val/spearman", mode="max")
    module = Scripted()
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=DataLoader(TensorDataset(torch.ones(1, 1))))
    # after batches 3 and 6 of each epoch, and after its last (7): evaluation_steps=3 and fit's end-of-epoch evaluation
    assert module.validated_after == [(0, 3), (0, 6), (0, 7), (1, 3), (1, 6), (1, 7)]
    best = torch.load(checkpoint.best_model_path, weights_only=False)
    assert best["global_step"] == 13 and float(checkpoint.best_model_score) == pytest.approx(0.9)  # epoch 2, batch 6


def test_the_docs_table_has_every_point_of_the_preset():
    table = (REPO / "docs" / "reference_presets.md").read_text(encoding="utf-8")
    section = table.split("## Trans-Encoder", 1)[1].split("\n## ", 1)[0]
    keys = set(re.findall(r"`((?:method|data|model)\.[^`]+)`", section))
    assert set(preset_points(PRESET)) <= keys
    assert {"model.bi_encoders[*].pooling", "data.pair_source", "data.group_by_length"} <= keys


# --- one tiny run of the preset --------------------------------------------------------------------------------------
RUN = [
    "experiment=trans_encoder_toy",
    f"method={PRESET}",
    "trainer.enable_progress_bar=false",
    "method.cycles=1",
    "data.train.size=160",
    "data.validation.size=80",
    "data.test.size=80",
    "method.bi.epochs=2",
    "method.bi.batch_size=32",
    "method.cross.val_check_steps=3",
    "method.bi.val_check_steps=2",
    "method.simcse.enabled=false",
    "model.bi_encoders.0.pooling=cls",
]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("te_reference")
    with kdlab_folders(tmp, HF_HUB_OFFLINE="1", WANDB_MODE="disabled"):
        command = [sys.executable, "-m", "kdlab.train", *RUN]
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dirs(tmp)[-1], out.stdout + out.stderr


def read_rows(path, delimiter="\t"):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE))


def test_the_run_records_what_it_changed_from_the_reference(reference_run):
    run, log = reference_run
    recorded = json.loads((run / "reference_deviations.json").read_text())
    assert recorded["preset"] == PRESET
    assert set(recorded["deviations"]) == {
        "method.cycles",
        "method.bi.epochs",
        "method.bi.batch_size",
        "method.bi.val_check_steps",
        "method.cross.val_check_steps",
        "method.bi.optimizer.lr",  # trans_encoder_toy's
        "method.cross.optimizer.lr",
        "method.cross.epochs",
    }
    assert recorded["deviations"]["method.cross.val_check_steps"] == {"reference": 200, "run": 3}
    assert len([line for line in log.splitlines() if "deviate from the reference" in line]) == 1
    info = json.loads((run / "trans_encoder.json").read_text())
    assert info["labels"] == {"bi_to_cross": "raw", "cross_to_bi_orders": "one"}
    assert info["max_length"] == {"bi": 32, "cross": 64} and info["bi_pooling"] == ["cls"]
    assert info["pairs"]["pair_source"] == "train"


def test_the_cross_encoder_learns_raw_cosines_and_the_bi_encoder_its_sigmoid_on_one_order(reference_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run, _ = reference_run
    bi_rows = read_rows(run / "cycle1" / "pseudo_labels_bi.tsv")
    assert all(row["label"] == row["bi"] for row in bi_rows)  # raw: the cosine itself, whatever its sign
    cross_rows = read_rows(run / "cycle1" / "pseudo_labels_cross.tsv")
    folder = str(run / "cycle1" / "cross" / "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    a, b = [row["sentence1"] for row in cross_rows], [row["sentence2"] for row in cross_rows]

    def sigma(first, second):
        batch = tokenizer(first, second, truncation=True, max_length=64, padding=True, return_tensors="pt")
        with torch.no_grad():
            return torch.sigmoid(model(**batch).logits.view(-1))

    one_order = sigma(a, b)  # self_distill.py:230: cross_encoder.predict(all_pairs)
    labels = torch.tensor([float(row["label"]) for row in cross_rows])
    both = (one_order + sigma(b, a)) / 2  # kdlab's default
    assert (labels - one_order).abs().max() < 1e-6  # the same batch, the same padding: the same numbers
    assert (labels - both).abs().max() > 1e-5  # a tiny cross-encoder after a few steps: the orders differ a little


def test_the_stages_validate_every_n_batches_and_at_epoch_end(reference_run):
    run, _ = reference_run

    def validated_at(stage):  # the CSV logger's step of each in-training validation (global step - 1)
        rows = read_rows(run / "logs" / "cycle1" / stage / "metrics.csv", ",")
        steps = [int(row["step"]) + 1 for row in rows if row.get("val/spearman")]
        return steps[:-1]  # the last row is the evaluation of the kept checkpoint after training

    # cross: 2 x 160 pairs / 32 = 10 batches an epoch, every 3 -> after 3, 6, 9 and the last, 10, in each of 2 epochs
    assert validated_at("cross") == [3, 6, 9, 10, 13, 16, 19, 20]
    # bi: 160 / 32 = 5 batches an epoch, every 2 -> 2, 4, 5 in each of 2 epochs
    assert validated_at("bi") == [2, 4, 5, 7, 9, 10]


def test_the_exported_bi_encoder_pools_the_cls_token_as_sentence_transformers_does(reference_run):
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from kdlab.data.embedded import sts_toy

    run, _ = reference_run
    bi = SentenceTransformer(str(run / "best" / "bi"), device="cpu")
    assert bi.max_seq_length == 32 and bi[1].pooling_mode == "cls"  # models.Pooling(..., pooling_mode="cls")
    dev = sts_toy("validation", 80)
    a, b, gold = [r["sentence1"] for r in dev], [r["sentence2"] for r in dev], [r["score"] for r in dev]
    cosines = torch.nn.functional.cosine_similarity(
        bi.encode(a, convert_to_tensor=True), bi.encode(b, convert_to_tensor=True)
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert 100 * spearmanr(cosines.numpy(), gold)[0] == pytest.approx(metrics["bi/val/spearman"], abs=1e-3)
