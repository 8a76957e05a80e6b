"""Backbones, layer subsets, exports and checkpoints that load back; the optimiser factory."""

import pickle

import pytest
import torch
from settings import adamw

from kdlab.errors import DataError
from kdlab.models.backbone import build_model
from kdlab.models.files import export_model, load_trained
from kdlab.models.layers import keep_layers
from kdlab.optim import build_optimizer, linear_warmup_decay

TINY = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def test_random_init_model_from_config(tiny_tokenizer):
    model = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer)
    assert model.config.num_labels == 2 and model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.vocab_size == len(tiny_tokenizer)
    regressor = build_model({"config": TINY}, "regression", [], tiny_tokenizer)
    assert regressor.config.num_labels == 1 and regressor.config.problem_type == "regression"


def test_student_keeps_the_chosen_teacher_layers(tiny_tokenizer):
    torch.manual_seed(0)
    teacher = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer)
    student = keep_layers(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    t_layers, s_layers = teacher.bert.encoder.layer, student.bert.encoder.layer
    for s_index, t_index in enumerate([0, 3]):
        for (name, p_s), (_, p_t) in zip(s_layers[s_index].named_parameters(), t_layers[t_index].named_parameters()):
            assert torch.equal(p_s, p_t), name
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert (
        student.bert.embeddings.word_embeddings.weight.data_ptr()
        != teacher.bert.embeddings.word_embeddings.weight.data_ptr()
    )
    batch = tiny_tokenizer(["the plot was good"], return_tensors="pt")
    assert student(**batch).logits.shape == (1, 2)
    via_spec = build_model(
        {"from_teacher_layers": [1]}, "classification", ["neg", "pos"], tiny_tokenizer, teacher=teacher
    )
    assert via_spec.config.num_hidden_layers == 1


def test_a_pretrained_backbone_can_keep_some_of_its_layers(tiny_tokenizer, tmp_path):
    from kdlab.errors import ConfigError
    from kdlab.models.multitask import build_multitask_model

    torch.manual_seed(0)
    full = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer)
    full.bert.save_pretrained(tmp_path / "pretrained")  # a pretrained encoder without a task head
    spec = {"name_or_path": str(tmp_path / "pretrained"), "layers": [0, 2]}
    cut = build_model(spec, "regression", [], tiny_tokenizer)
    multi = build_multitask_model(spec, [{"name": "a", "task": "regression"}], tiny_tokenizer)
    for encoder in (cut.bert, multi.encoder):
        assert encoder.config.num_hidden_layers == 2 and len(encoder.encoder.layer) == 2
        for kept, source in zip(encoder.encoder.layer, [full.bert.encoder.layer[0], full.bert.encoder.layer[2]]):
            assert all(torch.equal(a, b) for a, b in zip(kept.parameters(), source.parameters()))
    assert (
        build_model(
            {"name_or_path": str(tmp_path / "pretrained")}, "regression", [], tiny_tokenizer
        ).config.num_hidden_layers
        == 4
    )
    with pytest.raises(
        ConfigError, match=r"^model\.layers: needs layer indices in \[0, 3\] for this model, got \[0, 4\]"
    ):
        build_model({**spec, "layers": [0, 4]}, "regression", [], tiny_tokenizer)


def test_bad_layer_indices_are_refused(tiny_tokenizer):
    from kdlab.errors import ConfigError

    teacher = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer)
    with pytest.raises(
        ConfigError, match=r"model\.student\.from_teacher_layers: needs layer indices in \[0, 3\] for this model"
    ):
        keep_layers(teacher, [0, 7])


def test_export_loads_back_with_automodel(tiny_tokenizer, tmp_path):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    model = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer).eval()
    folder = export_model(model, tiny_tokenizer, tmp_path / "model")
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    batch = tiny_tokenizer(["the food was bad"], return_tensors="pt")
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)
    assert AutoModel.from_pretrained(folder).config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(folder)("the food")["input_ids"] == tiny_tokenizer("the food")["input_ids"]


ENCODER = {"config": TINY, "pooling": "mean", "normalize": True}
TASKS = [
    {"name": "sst", "task": "classification", "labels": ["neg", "pos"]},
    {"name": "sts", "task": "regression"},
]


def test_each_method_builds_its_roles_kind_and_refuses_a_kind_named_for_another_role(tiny_tokenizer):
    from kdlab.errors import ConfigError
    from kdlab.models.cross_encoder import build_cross_encoder
    from kdlab.models.kinds import KINDS
    from kdlab.models.multitask import MultiTaskModel
    from kdlab.models.sentence_encoder import SentenceEncoder

    encoder = build_model(ENCODER, None, [], tiny_tokenizer, key="model.teacher", method="multilingual")
    assert isinstance(encoder, SentenceEncoder) and encoder.normalize
    copy = build_model({"copy_teacher": True}, None, [], None, encoder, "model.student", method="multilingual")
    assert isinstance(copy, SentenceEncoder) and copy.backbone is not encoder.backbone
    torch.manual_seed(0)
    cross = build_model(
        {"config": TINY}, "regression", [], tiny_tokenizer, key="model.cross_encoders[0]", method="trans_encoder"
    )
    torch.manual_seed(0)
    assert cross.config.num_labels == 1 and torch.equal(  # the kind builds what the module function builds
        cross.classifier.weight, build_cross_encoder({"config": TINY}, tiny_tokenizer, "k").classifier.weight
    )
    from_bi = build_model(
        {"from_bi_start": 0},
        "regression",
        [],
        tiny_tokenizer,
        encoder,
        "model.cross_encoders[0]",
        method="trans_encoder",
    )
    torch.testing.assert_close(
        from_bi.base_model.embeddings.word_embeddings.weight, encoder.backbone.embeddings.word_embeddings.weight
    )
    multi = build_model({"config": TINY}, None, TASKS, tiny_tokenizer, key="model.student", method="bam")
    assert isinstance(multi, MultiTaskModel) and multi.names == ["sst", "sts"]
    assert (
        build_model(
            {"config": TINY}, "regression", [], tiny_tokenizer, key="model.teacher", method="bam"
        ).config.num_labels
        == 1
    )
    with pytest.raises(ConfigError) as err:
        build_model(
            {"config": TINY, "kind": "hf_classifier"},
            None,
            [],
            tiny_tokenizer,
            key="model.student",
            method="multilingual",
        )
    serving = [name for name, entry in KINDS.items() if "multilingual.student" in entry.serves]
    assert str(err.value) == (
        f"model.student.kind: must be one of {serving} for the student of method=multilingual, got 'hf_classifier'"
    )
    with pytest.raises(
        ConfigError, match=r"^model.student.kind: must be one of \['hf_classifier', 'bilstm', 'textcnn'\] "
    ):
        build_model(
            {"config": TINY, "kind": "multitask"}, None, TASKS, tiny_tokenizer, key="model.student", method="hinton"
        )


def test_sentence_encoder_and_multitask_checkpoints_and_exports_go_through_the_kind_table(tiny_tokenizer, tmp_path):
    from kdlab.models import kinds
    from kdlab.models.files import checkpoint_payload
    from kdlab.models.multitask import load_multitask

    encoder = build_model(ENCODER, None, [], tiny_tokenizer, key="model.teacher", method="multilingual").eval()
    encoder.add_projection(8)
    multi = build_model({"config": TINY}, None, TASKS, tiny_tokenizer, key="model.student", method="bam").eval()
    batch = dict(tiny_tokenizer(["the food was bad", "good"], padding=True, return_tensors="pt"))
    for model, run in ((encoder, lambda m: m(**batch)), (multi, lambda m: m(batch, "sst"))):
        payload = checkpoint_payload(model, tiny_tokenizer)
        entry = kinds.kind(payload[kinds.PAYLOAD_KEY])
        assert entry is kinds.of_model(model) and entry.name in ("sentence_encoder", "multitask")
        again = entry.call("from_payload", payload["model_config"]).eval()
        again.load_state_dict(model.state_dict())
        torch.testing.assert_close(run(again), run(model))
        checkpoint = {"kdlab": payload, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
        torch.save(checkpoint, tmp_path / f"{entry.name}.ckpt")
        with pytest.raises(DataError, match=f"holds a {entry.name} model, not a sequence classifier, given as k$"):
            load_trained(tmp_path / f"{entry.name}.ckpt", key="k")  # a teacher / kdlab-eval model must be a classifier
    encoder.max_seq_length = 24
    folder = export_model(encoder, tiny_tokenizer, tmp_path / "encoder")
    assert (folder / "2_Dense" / "model.safetensors").exists() and (folder / "3_Normalize").is_dir()
    back = kinds.kind("sentence_encoder").call("load", folder, "k").eval()
    assert back.max_seq_length == 24
    torch.testing.assert_close(back(**batch), encoder(**batch))
    folder = export_model(multi, tiny_tokenizer, tmp_path / "multi")
    back, tokenizer = load_multitask(folder)
    torch.testing.assert_close(back.eval()(batch, "sts"), multi(batch, "sts"))
    assert tokenizer("good")["input_ids"] == tiny_tokenizer("good")["input_ids"]


class _Boom:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_checkpoints_load_weights_only_and_refuse_pickled_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {}, "kdlab": _Boom(tmp_path / "kdlab-pwned")}, handle)
    with open(tmp_path / "control.pkl", "wb") as handle:  # the payload works when unpickled unsafely
        pickle.dump(_Boom(tmp_path / "control-ran"), handle)
    with open(tmp_path / "control.pkl", "rb") as handle:
        pickle.load(handle)
    assert (tmp_path / "control-ran").exists()
    with pytest.raises(DataError, match="not a loadable kdlab checkpoint"):
        load_trained(path)
    assert not (tmp_path / "kdlab-pwned").exists()


def test_linear_warmup_then_decay():
    assert [round(linear_warmup_decay(s, 2, 10), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_optimizer_skips_decay_on_bias_and_layernorm(tiny_tokenizer):
    model = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer)
    setup = build_optimizer(model.named_parameters(), adamw(lr=1e-3, weight_decay=0.1, warmup_ratio=0.1), 100)
    decayed, plain = setup["optimizer"].param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all("bias" not in names[id(p)] and "LayerNorm" not in names[id(p)] for p in decayed["params"])
    assert any("LayerNorm.weight" in names[id(p)] for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_optimizer_implementations_take_the_same_steps(tiny_tokenizer):
    """fused / foreach / for_loop AdamW: one algorithm, different kernels; the weights after a few steps agree."""
    import copy

    from kdlab.errors import ConfigError

    torch.manual_seed(0)
    base = build_model({"config": TINY}, "classification", ["neg", "pos"], tiny_tokenizer)
    batch = {"input_ids": torch.randint(5, len(tiny_tokenizer), (4, 12)), "labels": torch.tensor([0, 1, 1, 0])}
    weights = {}
    for implementation in ("for_loop", "foreach", "fused"):
        model = copy.deepcopy(base).eval()  # no dropout: the same gradients each time
        setup = build_optimizer(
            model.named_parameters(), adamw(lr=1e-3, weight_decay=0.1, implementation=implementation), 10
        )
        for _ in range(3):
            model(**batch).loss.backward()
            setup["optimizer"].step()
            setup["optimizer"].zero_grad()
        weights[implementation] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert not torch.equal(weights["for_loop"], torch.cat([p.detach().reshape(-1) for p in base.parameters()]))
    torch.testing.assert_close(weights["fused"], weights["for_loop"], rtol=0, atol=1e-6)
    torch.testing.assert_close(weights["foreach"], weights["for_loop"], rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match=r"^optimizer\.implementation: must be one of"):
        build_optimizer(base.named_parameters(), adamw(lr=1e-3, implementation="fast"), 10)


def test_training_puts_the_student_in_train_mode_and_keeps_the_teacher_frozen(tiny_tokenizer, tmp_path):
    import pytorch_lightning as pl

    from kdlab.data.text import TextDataModule
    from kdlab.methods.hinton import HintonKD
    from kdlab.models.backbone import freeze

    teacher = freeze(build_model({"config": TINY}, "classification", ["negative", "positive"], tiny_tokenizer))
    student = keep_layers(teacher, [0])  # a copy of a frozen, eval-mode teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append((module.model.training, module.teacher.training))

    cfg = {
        "task": "classification",
        "labels": ["negative", "positive"],
        "columns": {"text": "text", "text_pair": None, "label": "label"},
        "train": {"embedded": "reviews", "split": "train", "size": 64},
        "validation": {"embedded": "reviews", "split": "validation", "size": 32},
        "test": {"embedded": "reviews", "split": "test", "size": 32},
        "max_length": 32,
        "batch_size": 16,
        "eval_batch_size": 32,
    }
    module = HintonKD(
        student, teacher, tiny_tokenizer, "classification", 2, adamw(lr=1e-3), ["acc"], alpha=0.5, temperature=2.0
    )
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[Probe()],
    )
    trainer.fit(module, datamodule=TextDataModule(cfg, tokenizer=tiny_tokenizer))
    assert seen and all(s_train and not t_train for s_train, t_train in seen)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    saved = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert saved["state_dict"] and not any(k.startswith("teacher.") for k in saved["state_dict"])


def test_hidden_state_projections_are_trained_with_the_student(tiny_tokenizer):
    from kdlab.losses import HiddenStateMSE
    from kdlab.methods.hinton import HintonKD

    teacher = build_model({"config": TINY}, "classification", ["negative", "positive"], tiny_tokenizer)
    student = build_model(
        {"config": {**TINY, "hidden_size": 16, "num_hidden_layers": 2}},
        "classification",
        ["negative", "positive"],
        tiny_tokenizer,
    )
    hidden = HiddenStateMSE([(1, 2), (2, 4)], 16, 32, weight=1.0)
    module = HintonKD(
        student,
        teacher,
        tiny_tokenizer,
        "classification",
        2,
        adamw(lr=1e-3),
        ["acc"],
        alpha=0.5,
        temperature=2.0,
        hidden_loss=hidden,
    )
    batch = dict(tiny_tokenizer(["the plot was good", "the food was not good"], padding=True, return_tensors="pt"))
    batch.update(labels=torch.tensor([1, 0]), index=torch.tensor([0, 1]))
    terms = module.compute_loss(batch)
    assert terms["loss"].item() == pytest.approx(
        (terms["loss_soft"] * 0.5 + terms["loss_hard"] * 0.5 + terms["loss_hidden"]).item(), rel=1e-6
    )
    terms["loss"].backward()
    assert hidden.projections[0].weight.grad is not None and teacher.bert.pooler.dense.weight.grad is None
    names = [name for name, _ in module.trainable_named_parameters()]
    assert "hidden_loss.projections.0.weight" in names and not any(n.startswith("teacher") for n in names)


def test_trained_vocabulary_is_the_same_in_every_process(tmp_path):
    """Equal word counts (ties) must not be ordered by a per-process hash seed."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys; from kdlab.models.tokenization import train_wordpiece; "
        "texts = ['cat dog bird fish', 'dog cat fish bird', 'Zebra yak, ox!'] * 3; "
        "tok = train_wordpiece(texts, 45, sys.argv[1]); print(json.dumps(tok.get_vocab(), sort_keys=True))"
    )
    vocabularies = []
    for seed in ("1", "2"):
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / seed)], env=env, capture_output=True, text=True, check=True
        )
        vocabularies.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert vocabularies[0] == vocabularies[1] and len(vocabularies[0]) == 45  # of 50 candidates: a cut among tied words


def test_words_outside_the_vocabulary_fall_back_to_characters(tmp_path):
    from kdlab.models.tokenization import SPECIAL_TOKENS, train_wordpiece, wordpiece_vocabulary

    texts = ["the cat sat", "the cat ran", "the dog"]
    vocab = wordpiece_vocabulary(texts, 100)
    assert list(vocab)[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert {"the", "cat", "t", "##h", "##e"} <= set(vocab) and vocab["the"] < vocab["cat"] < vocab[
        "dog"
    ]  # by count, then text
    tokenizer = train_wordpiece(texts, 100, tmp_path)
    assert tokenizer.tokenize("The hat") == ["the", "h", "##a", "##t"]
    assert tokenizer.tokenize("zoo") == ["[UNK]"]  # 'z' was never seen
    small = wordpiece_vocabulary(texts, 20)
    assert len(small) == 20 and "the" not in small  # characters first: the cut drops words, not the alphabet
