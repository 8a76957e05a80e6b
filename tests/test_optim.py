"""The shared optimiser factory's layerwise learning-rate decay: the lr of every group, for BERT and GPT-2 names."""

import pytest
import torch
from settings import adamw
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2Model

from kdlab.errors import ConfigError
from kdlab.optim import build_optimizer, linear_warmup_decay, parameter_groups

LR, BETA = 1e-3, 0.5


def tiny_bert(layers: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


def group_of(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, dict]:
    """Parameter name -> the one param group holding it (asserting it is held exactly once)."""
    names = {id(p): n for n, p in model.named_parameters()}
    found: dict[str, dict] = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            name = names[id(parameter)]
            assert name not in found, f"{name} is in two groups"
            found[name] = group
    return found


def expected_depth(name: str) -> int:
    if name.startswith("bert.embeddings."):
        return 0
    if name.startswith("bert.encoder.layer."):
        return int(name.split(".")[3]) + 1
    assert name.startswith(("bert.pooler.", "classifier.")), name
    return 4


def test_each_depth_gets_lr_times_beta_to_the_distance_from_the_top():
    model = tiny_bert()
    cfg = adamw(lr=LR, weight_decay=0.1, layerwise_decay=BETA)
    groups = group_of(build_optimizer(model.named_parameters(), cfg, 100)["optimizer"], model)
    assert set(groups) == {name for name, _ in model.named_parameters()}  # every trainable parameter, once
    expected_lrs = {0: LR * 0.5**4, 1: LR * 0.5**3, 2: LR * 0.5**2, 3: LR * 0.5, 4: LR}
    for name, group in groups.items():
        assert group["lr"] == expected_lrs[expected_depth(name)], name
        assert group["depth"] == expected_depth(name), name
    assert groups["bert.embeddings.word_embeddings.weight"]["lr"] == 6.25e-05
    assert groups["bert.encoder.layer.0.attention.self.query.weight"]["lr"] == 1.25e-04
    assert groups["bert.encoder.layer.2.output.dense.weight"]["lr"] == 5e-04
    assert groups["bert.pooler.dense.weight"]["lr"] == groups["classifier.weight"]["lr"] == 1e-03


def test_layerwise_groups_keep_the_weight_decay_split():
    model = tiny_bert()
    optimizer = build_optimizer(model.named_parameters(), adamw(lr=LR, weight_decay=0.1, layerwise_decay=BETA), 100)[
        "optimizer"
    ]
    for name, group in group_of(optimizer, model).items():
        plain = name.endswith("bias") or "LayerNorm" in name
        assert group["weight_decay"] == (0.0 if plain else 0.1), name
    # one decayed and one plain group per depth (embeddings, 3 layers, top), bottom first
    assert [(g["depth"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (d, wd) for d in range(5) for wd in (0.1, 0.0)
    ]


def test_beta_one_gives_the_two_groups_of_before():
    model = tiny_bert()
    for cfg in (adamw(lr=LR, weight_decay=0.1), adamw(lr=LR, weight_decay=0.1, layerwise_decay=1.0)):
        optimizer = build_optimizer(model.named_parameters(), cfg, 100)["optimizer"]
        before = parameter_groups(model.named_parameters(), 0.1)
        assert len(optimizer.param_groups) == len(before) == 2
        for group, old in zip(optimizer.param_groups, before):
            assert [id(p) for p in group["params"]] == [id(p) for p in old["params"]]
            assert group["weight_decay"] == old["weight_decay"] and group["lr"] == LR


def test_scheduler_scales_every_group():
    model = tiny_bert()
    cfg = adamw(lr=LR, weight_decay=0.1, warmup_ratio=0.2, layerwise_decay=BETA)
    setup = build_optimizer(model.named_parameters(), cfg, 10)
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    base = [LR * BETA ** (4 - g["depth"]) for g in optimizer.param_groups]
    for step in range(10):
        factor = linear_warmup_decay(step, 2, 10)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([b * factor for b in base], rel=1e-12)
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.0] * len(base)


def test_frozen_parameters_stay_out_and_the_layer_count_can_come_from_the_config():
    model = tiny_bert()
    for parameter in model.bert.embeddings.parameters():
        parameter.requires_grad_(False)
    cfg = adamw(lr=LR, layerwise_decay=BETA)
    optimizer = build_optimizer(model.named_parameters(), cfg, 10, num_layers=model.config.num_hidden_layers)[
        "optimizer"
    ]
    groups = group_of(optimizer, model)
    assert not any(name.startswith("bert.embeddings.") for name in groups)
    assert groups["bert.encoder.layer.0.output.dense.weight"]["lr"] == LR * BETA**3
    # a model whose config says more layers than its names show: the top moves up
    deeper = group_of(build_optimizer(model.named_parameters(), cfg, 10, num_layers=5)["optimizer"], model)
    assert deeper["bert.encoder.layer.0.output.dense.weight"]["lr"] == LR * BETA**5
    with pytest.raises(ConfigError, match=r"optimizer\.layerwise_decay: layer 2 is beyond the model's 2 layers"):
        build_optimizer(model.named_parameters(), cfg, 10, num_layers=2)


def test_gpt2_names_and_the_fused_kernel():
    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    setup = build_optimizer(model.named_parameters(), adamw(lr=LR, layerwise_decay=BETA, implementation="fused"), 10)
    groups = group_of(setup["optimizer"], model)
    assert groups["wte.weight"]["lr"] == groups["wpe.weight"]["lr"] == LR * BETA**3
    assert groups["h.0.attn.c_attn.weight"]["lr"] == LR * BETA**2
    assert groups["h.1.mlp.c_fc.weight"]["lr"] == LR * BETA
    assert groups["ln_f.weight"]["lr"] == LR and groups["ln_f.weight"]["weight_decay"] == 0.0
    before = model.h[0].attn.c_attn.weight.detach().clone()
    model(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state.sum().backward()
    setup["optimizer"].step()
    assert not torch.equal(before, model.h[0].attn.c_attn.weight)


@pytest.mark.parametrize("beta", [0.0, -0.5, 1.5])
def test_beta_outside_zero_one_is_refused(beta):
    with pytest.raises(ConfigError, match=r"optimizer\.layerwise_decay: must be in \(0, 1\]"):
        build_optimizer(tiny_bert().named_parameters(), adamw(lr=LR, layerwise_decay=beta), 10)


def test_a_model_without_a_layer_stack_is_refused():
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    with pytest.raises(
        ConfigError,
        match=r"optimizer\.layerwise_decay: needs one transformer layer stack in the model, found no transformer layer",
    ):
        build_optimizer(mlp.named_parameters(), adamw(lr=LR, layerwise_decay=BETA), 10)
    two = torch.nn.ModuleDict({"a": tiny_bert(1), "b": tiny_bert(1)})
    with pytest.raises(
        ConfigError, match=r"several layer stacks \['a\.bert\.encoder\.layer', 'b\.bert\.encoder\.layer'\]"
    ):
        build_optimizer(two.named_parameters(), adamw(lr=LR, layerwise_decay=BETA), 10)


@pytest.mark.parametrize(
    "experiment,key,value",
    [
        (None, "method.student.optimizer", 1.5),
        ("trans_encoder_toy", "method.bi.optimizer", 0),
    ],
)
def test_composed_configs_check_layerwise_decay(experiment, key, value, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kdlab.config import validate
    from kdlab.resolvers import conf_dir, register_resolvers

    monkeypatch.setenv("KDLAB_OUTPUT_DIR", str(tmp_path / "out"))
    register_resolvers()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"] if experiment else [])
    assert OmegaConf.select(cfg, f"{key}.layerwise_decay") == 1.0  # the default: off
    OmegaConf.update(cfg, f"{key}.layerwise_decay", value)
    with pytest.raises(
        ConfigError, match=rf"^{key}\.layerwise_decay: must be in \(0, 1\] \(1\.0 = off\), got {value:g}$"
    ):
        validate(cfg)


def test_a_bad_optimizer_value_met_at_run_time_names_the_stages_real_key():
    """The config check and the optimizer factory share one rule (kdlab.optim_checks); at run time the factory names
    the key of the stage that trains (kdlab.runner.fit_stage sets it), not a generic `optimizer.*`."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from kdlab.methods.finetune import Finetune
    from kdlab.runner import stage_key

    cfg = OmegaConf.create({"method": {"name": "hinton", "student": {"optimizer": adamw(lr=-1.0)}}})
    assert stage_key(cfg, cfg.method.student, "optimizer") == "method.student.optimizer"
    assert stage_key(cfg, OmegaConf.create({"optimizer": {}}), "optimizer") == "optimizer"  # not one of cfg.method's
    module = Finetune(tiny_bert(), None, "classification", 3, adamw(lr=-1.0), ["acc"])
    module.optimizer_key = stage_key(cfg, cfg.method.student, "optimizer")
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)
    with pytest.raises(ConfigError, match=r"^method\.student\.optimizer\.lr: must be > 0"):
        module.configure_optimizers()
