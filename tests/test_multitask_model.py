"""The multi-task model: a shared encoder with one head per task, exports that load back, and a short
Lightning fit over the multi-task mixture with layerwise learning-rate decay."""

import json

import pytest
import pytorch_lightning as pl
import torch
from settings import adamw

from kdlab.errors import ConfigError, DataError
from kdlab.losses import hard_loss
from kdlab.models.multitask import MultiTaskModel, build_multitask_model, export_multitask, load_multitask

TINY = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
TASKS = [
    {"name": "nli", "task": "classification", "labels": ["entailment", "neutral", "contradiction"]},
    {"name": "sts", "task": "regression", "labels": None},
    {"name": "sst", "task": "classification", "labels": ["0", "1"]},
]


def batch_of(tokenizer, texts, pairs=None):
    return dict(tokenizer(texts, pairs, padding=True, return_tensors="pt"))


def test_each_task_gets_logits_of_its_own_width(tiny_tokenizer):
    torch.manual_seed(0)
    model = build_multitask_model({"config": TINY}, TASKS, tiny_tokenizer).eval()
    batch = batch_of(tiny_tokenizer, ["the plot was good", "the food was bad", "fine"])
    assert [tuple(model(batch, name).shape) for name in model.names] == [(3, 3), (3, 1), (3, 2)]
    torch.testing.assert_close(model(batch, 1), model(batch, "sts"), rtol=0, atol=0)
    assert model.pooling == "pooler" and model.config.hidden_size == 32
    pooled = model.encoder(**batch).pooler_output  # each head is BERT's sequence-classification head
    torch.testing.assert_close(model(batch, "sst"), model.heads["sst"](pooled))
    with pytest.raises(KeyError, match="unknown task 'qnli'"):
        model(batch, "qnli")


def test_gradients_reach_the_encoder_and_only_the_head_used(tiny_tokenizer):
    model = build_multitask_model({"config": TINY}, TASKS, tiny_tokenizer)
    batch = batch_of(tiny_tokenizer, ["the plot was good", "the food was bad"], ["a", "b"])
    hard_loss(model(batch, "sts"), torch.tensor([0.2, 0.9]), "regression").backward()
    assert model.heads["sts"].weight.grad is not None and model.heads["sts"].weight.grad.abs().sum() > 0
    assert model.heads["nli"].weight.grad is None and model.heads["sst"].weight.grad is None
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_export_loads_back_with_identical_logits(tiny_tokenizer, tmp_path):
    from transformers import AutoModel

    torch.manual_seed(1)
    model = build_multitask_model({"config": TINY}, TASKS, tiny_tokenizer).eval()
    folder = export_multitask(model, tiny_tokenizer, tmp_path / "student")
    described = json.loads((folder / "heads.json").read_text())
    assert described["pooling"] == "pooler" and described["dropout"] == 0.1
    assert [(t["name"], t["task"], t["num_labels"]) for t in described["tasks"]] == [
        ("nli", "classification", 3),
        ("sts", "regression", 1),
        ("sst", "classification", 2),
    ]
    reloaded, tokenizer = load_multitask(folder)
    reloaded.eval()
    batch = batch_of(tokenizer, ["the view was lovely", "the staff was not warm"], ["it was", "so bad"])
    assert (
        batch["input_ids"].tolist()
        == batch_of(tiny_tokenizer, ["the view was lovely", "the staff was not warm"], ["it was", "so bad"])[
            "input_ids"
        ].tolist()
    )
    for name in model.names:
        torch.testing.assert_close(reloaded(batch, name), model(batch, name), rtol=0, atol=0)
    assert reloaded.tasks == model.tasks
    # the shared encoder alone is a plain Hugging Face folder
    encoder = AutoModel.from_pretrained(folder).eval()
    torch.testing.assert_close(encoder(**batch).pooler_output, model.encode(batch), rtol=0, atol=0)
    # a student built from the export gets its encoder weights and fresh heads
    again = build_multitask_model({"name_or_path": str(folder)}, TASKS[:2], tiny_tokenizer)
    assert torch.equal(
        again.encoder.encoder.layer[1].output.dense.weight, model.encoder.encoder.layer[1].output.dense.weight
    )
    assert not torch.equal(again.heads["nli"].weight, model.heads["nli"].weight)


def test_an_encoder_without_pooler_reads_the_first_token(tiny_tokenizer, tmp_path):
    torch.manual_seed(2)
    spec = {
        "config": {
            "model_type": "distilbert",
            "dim": 32,
            "n_layers": 2,
            "n_heads": 2,
            "hidden_dim": 64,
            "max_position_embeddings": 64,
        }
    }
    model = build_multitask_model(spec, TASKS[1:], tiny_tokenizer).eval()
    assert model.pooling == "first_token"
    batch = {k: v for k, v in batch_of(tiny_tokenizer, ["the plot was good"]).items() if k != "token_type_ids"}
    first = model.encoder(**batch).last_hidden_state[:, 0]
    torch.testing.assert_close(model(batch, "sst"), model.heads["sst"](first))
    reloaded, _ = load_multitask(export_multitask(model, tiny_tokenizer, tmp_path / "distil"))
    torch.testing.assert_close(reloaded.eval()(batch, "sts"), model(batch, "sts"), rtol=0, atol=0)


def test_bad_task_lists_and_exports_are_refused(tiny_tokenizer, tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.tasks: task 'sts' is listed twice \(entries 1 and 3\)$"):
        build_multitask_model({"config": TINY}, TASKS + [TASKS[1]], tiny_tokenizer)
    with pytest.raises(
        ConfigError, match=r"^data\.tasks\[0\]\.task: must be classification or regression, got 'ranking'$"
    ):
        build_multitask_model({"config": TINY}, [{"name": "x", "task": "ranking"}], tiny_tokenizer)
    with pytest.raises(
        ConfigError, match=r"^data\.tasks\[1\]\.labels: a classification task needs at least 2 labels, got \['yes'\]$"
    ):
        build_multitask_model(
            {"config": TINY}, [TASKS[0], {"name": "x", "task": "classification", "labels": ["yes"]}], tiny_tokenizer
        )
    with pytest.raises(ConfigError, match=r"^model\.student: needs name_or_path"):
        build_multitask_model({}, TASKS, tiny_tokenizer)
    with pytest.raises(DataError, match=r"heads\.json: not found: not a kdlab multi-task export"):
        load_multitask(tmp_path)
    folder = export_multitask(
        build_multitask_model({"config": TINY}, TASKS, tiny_tokenizer), tiny_tokenizer, tmp_path / "m"
    )
    described = json.loads((folder / "heads.json").read_text())
    described["tasks"] = described["tasks"][:2] + [{**described["tasks"][2], "name": "sst2"}]
    (folder / "heads.json").write_text(json.dumps(described))
    with pytest.raises(
        DataError, match=r"heads\.safetensors: holds .*'sst\.bias'.* but heads\.json describes .*'sst2\.bias'"
    ):
        load_multitask(folder)


class MultiTaskProbe(pl.LightningModule):
    """Plain multi-task training (gold labels) that records which task each batch and eval loader held."""

    def __init__(self, model: MultiTaskModel, optimizer: dict):
        super().__init__()
        self.model, self.optimizer_cfg = model, optimizer
        self.train_tasks: dict[int, list[int]] = {}
        self.val_tasks: set[tuple[int, int]] = set()

    def training_step(self, batch, batch_idx):
        task = int(batch["task"][0])
        self.train_tasks.setdefault(self.current_epoch, []).append(task)
        return hard_loss(self.model(batch, task), batch["labels"], self.model.tasks[task]["task"])

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.val_tasks.add((dataloader_idx, int(batch["task"][0])))

    def configure_optimizers(self):
        from kdlab.optim import build_optimizer

        return build_optimizer(
            self.model.named_parameters(), self.optimizer_cfg, int(self.trainer.estimated_stepping_batches)
        )


def test_lightning_fit_follows_the_logged_mix_with_layerwise_decay(tiny_tokenizer, tmp_path):
    from kdlab.data.multitask import MultiTaskDataModule

    tasks = [
        {
            "name": "reviews",
            "task": "classification",
            "labels": ["negative", "positive"],
            "columns": {"text": "text", "text_pair": None, "label": "label"},
            "train": {"embedded": "reviews", "split": "train", "size": 48},
            "validation": {"embedded": "reviews", "split": "validation", "size": 8},
            "test": {"embedded": "reviews", "split": "test", "size": 8},
        },
        {
            "name": "sts",
            "task": "regression",
            "label_scale": 5.0,
            "columns": {"text": "sentence1", "text_pair": "sentence2", "label": "score"},
            "train": {"embedded": "sts_toy", "split": "train", "size": 16},
            "validation": {"embedded": "sts_toy", "split": "validation", "size": 8},
            "test": {"embedded": "sts_toy", "split": "test", "size": 8},
        },
    ]
    data = MultiTaskDataModule(
        {"tasks": tasks, "sampling_exponent": 0.0, "seed": 5, "max_length": 32, "batch_size": 8, "eval_batch_size": 4},
        tokenizer=tiny_tokenizer,
    )
    torch.manual_seed(0)
    probe = MultiTaskProbe(
        build_multitask_model({"config": TINY}, tasks, tiny_tokenizer), adamw(lr=1e-3, layerwise_decay=0.9)
    )
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=data)
    for epoch in (0, 1):  # Lightning sets the sampler's epoch: the batches follow the mix reported for it
        counts = [probe.train_tasks[epoch].count(t) for t in (0, 1)]
        assert dict(zip(data.names, counts)) == data.epoch_mix(epoch) and sum(counts) == 6 + 2
    assert probe.train_tasks[0] != probe.train_tasks[1]
    assert probe.val_tasks == {(0, 0), (1, 1)}
    lrs = {}
    names = {id(p): n for n, p in probe.model.named_parameters()}
    for group in trainer.optimizers[0].param_groups:
        for parameter in group["params"]:
            lrs[names[id(parameter)]] = group["initial_lr"]
    assert lrs["encoder.embeddings.word_embeddings.weight"] == 1e-3 * 0.9**3
    assert lrs["encoder.encoder.layer.0.attention.self.query.weight"] == 1e-3 * 0.9**2
    assert lrs["encoder.encoder.layer.1.output.dense.weight"] == 1e-3 * 0.9
    assert lrs["encoder.pooler.dense.weight"] == lrs["heads.reviews.weight"] == lrs["heads.sts.bias"] == 1e-3
