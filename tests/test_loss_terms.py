"""hinton's KD loss terms (kdlab/losses/registry.py): golden values of logit MSE and attention transfer against
plain-Python formulas, attention maps out of real Hugging Face models, the config rules (same message at config
time and at run time), and a tiny end-to-end run with each new term."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO, kdlab_folders
from settings import FAST, adamw

LABELS = ["negative", "positive"]
ZS = [[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]]
ZT = [[0.5, 3.0, -1.0], [1.5, -0.5, 0.0]]
Y = [1, 0]


def cross_entropy(rows, labels):
    """mean_i −log softmax(z_i)[y_i], by hand."""
    return sum(math.log(sum(math.exp(v) for v in z)) - z[y] for z, y in zip(rows, labels)) / len(labels)


def reference_attention_mse(student, teacher, mask):
    """Plain-Python MSE of [B][H][L][L] nested lists over the heads (each side averaged over its heads first when the
    counts differ) and the (query, key) pairs whose tokens are both real."""
    if len(student[0]) != len(teacher[0]):

        def average(maps):
            return [
                [
                    [
                        [sum(head[i][j] for head in heads) / len(heads) for j in range(len(heads[0]))]
                        for i in range(len(heads[0]))
                    ]
                ]
                for heads in maps
            ]

        student, teacher = average(student), average(teacher)
    total, count = 0.0, 0
    for s_heads, t_heads, real in zip(student, teacher, mask):
        for s_map, t_map in zip(s_heads, t_heads):
            for i, row in enumerate(s_map):
                for j, value in enumerate(row):
                    if real[i] and real[j]:
                        total += (value - t_map[i][j]) ** 2
                        count += 1
    return total / count


# --- the table -------------------------------------------------------------------------------------------------------


def test_the_table_names_each_term_and_its_module():
    from kdlab.losses import registry

    assert registry.names("soft") == ["soft_target", "logit_mse"] and registry.names("extra") == ["hidden", "attention"]
    for entry in registry.TERMS.values():
        cls = entry.load()
        assert issubclass(cls, torch.nn.Module) and cls.__doc__ and sys.modules[cls.__module__].__doc__
        assert entry.role == "soft" or hasattr(cls, "from_models")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_term(registry.TERMS["hidden"])


def test_the_table_and_the_config_check_import_no_torch():
    probe = (
        "import sys; import kdlab.config; from kdlab.losses import registry; registry.TERMS['attention'];"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]


# --- logit MSE (Tang et al. 2019) ------------------------------------------------------------------------------------


def test_logit_mse_golden_value_by_hand():
    from kdlab.losses.logit_mse import LogitMSEKDLoss, logit_mse_loss

    # row 1: (0.5)² + (−1)² + (1.5)² = 3.5; row 2: (−1.2)² + (−0.7)² + (2.2)² = 6.77; batch mean 5.135
    soft = 5.135
    assert logit_mse_loss(torch.tensor(ZS), torch.tensor(ZT)).item() == pytest.approx(soft, abs=1e-6)
    hard = cross_entropy(ZS, Y)
    for alpha in (0.0, 0.3, 1.0):
        out = LogitMSEKDLoss(alpha=alpha)(
            torch.tensor(ZS, dtype=torch.float64),
            torch.tensor(ZT, dtype=torch.float64),
            torch.tensor(Y) if alpha < 1 else None,
        )
        assert out.soft.item() == pytest.approx(soft, abs=1e-6)
        assert out.hard.item() == pytest.approx(hard if alpha < 1 else 0.0, abs=1e-6)
        assert out.total.item() == pytest.approx(alpha * soft + (1 - alpha) * (hard if alpha < 1 else 0.0), abs=1e-6)


def test_logit_mse_regression_is_the_mse_mix():
    from kdlab.losses.logit_mse import LogitMSEKDLoss

    out = LogitMSEKDLoss(alpha=0.25, task="regression")(
        torch.tensor([[0.2], [0.9]]), torch.tensor([[0.4], [0.5]]), torch.tensor([0.0, 1.0])
    )
    soft, hard = ((0.2 - 0.4) ** 2 + (0.9 - 0.5) ** 2) / 2, ((0.2 - 0.0) ** 2 + (0.9 - 1.0) ** 2) / 2
    assert (out.soft.item(), out.hard.item()) == (pytest.approx(soft, abs=1e-6), pytest.approx(hard, abs=1e-6))
    assert out.total.item() == pytest.approx(0.25 * soft + 0.75 * hard, abs=1e-6)


# --- attention transfer (TinyBERT) -----------------------------------------------------------------------------------

# one sequence of 3 tokens, the last one padding; the padded row and column differ on purpose and must not count
A_S = [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.3, 0.3, 0.4]]
A_T = [[0.7, 0.3, 0.0], [0.2, 0.6, 0.2], [0.9, 0.1, 0.0]]
A_T2 = [[0.5, 0.5, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0]]


def test_attention_mse_by_hand_with_padding_masked():
    from kdlab.losses.attention import masked_attention_mse

    # real (query, key) pairs: (0,0) (0,1) (1,0) (1,1); differences −0.2, 0.2, 0, 0.2 → 0.12 / 4 = 0.03
    value = masked_attention_mse(torch.tensor([[A_S]]), torch.tensor([[A_T]]), torch.tensor([[1, 1, 0]]))
    assert value.item() == pytest.approx(0.03, abs=1e-6)


def test_attention_mse_by_hand_with_different_head_counts():
    from kdlab.losses.attention import masked_attention_mse

    # teacher's 2 heads averaged: [[0.6, 0.4], [0.3, 0.6]] on the real pairs; differences −0.1, 0.1, −0.1, 0.2 → 0.07 / 4
    value = masked_attention_mse(torch.tensor([[A_S]]), torch.tensor([[A_T, A_T2]]), torch.tensor([[1, 1, 0]]))
    assert value.item() == pytest.approx(0.0175, abs=1e-6)


@pytest.mark.parametrize("student_heads,teacher_heads", [(2, 2), (2, 4), (1, 3)])
def test_attention_transfer_sums_mapped_layers_against_the_plain_formula(student_heads, teacher_heads):
    from kdlab.losses.attention import AttentionMSE

    generator = torch.Generator().manual_seed(student_heads * 10 + teacher_heads)

    def maps(heads):
        return torch.softmax(torch.randn(2, heads, 5, 5, generator=generator, dtype=torch.float64), dim=-1)

    student = (maps(student_heads), maps(student_heads))
    teacher = (maps(teacher_heads), maps(teacher_heads), maps(teacher_heads))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    loss = AttentionMSE([(1, 3), (2, 1)], weight=0.5)
    expected = 0.5 * sum(
        reference_attention_mse(student[s - 1].tolist(), teacher[t - 1].tolist(), mask.tolist())
        for s, t in [(1, 3), (2, 1)]
    )
    assert loss(student, teacher, mask).item() == pytest.approx(expected, abs=1e-6)


def test_attention_transfer_says_when_a_model_returned_no_maps():
    from kdlab.losses.attention import AttentionMSE

    with pytest.raises(ValueError, match="returned 0 and 0 attention maps"):
        AttentionMSE([(1, 1)])((), (), torch.ones(1, 3))


def tiny_bert(tokenizer, layers, heads, width=32, seed=0):
    from kdlab.models.backbone import build_model

    torch.manual_seed(seed)
    config = {
        "model_type": "bert",
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 64,
    }
    return build_model({"config": config}, "classification", LABELS, tokenizer)


def padded_batch(tokenizer):
    batch = dict(tokenizer(["the plot was good and the food was fine", "bad"], padding=True, return_tensors="pt"))
    batch.update(labels=torch.tensor([1, 0]), index=torch.tensor([0, 1]))
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # there is padding
    return batch


def test_hinton_attention_term_matches_an_independent_computation_on_real_models(tiny_tokenizer):
    """Student 1 layer × 2 heads, teacher 2 layers × 4 heads (heads averaged): the term HintonKD logs equals the MSE
    computed from the eager attention maps of both models with the plain formula; the models keep their attention."""
    from kdlab.losses.attention import AttentionMSE
    from kdlab.methods.hinton import HintonKD

    teacher, student = tiny_bert(tiny_tokenizer, 2, 4, seed=1), tiny_bert(tiny_tokenizer, 1, 2, seed=2)
    implementation = student.config._attn_implementation
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
        terms={"attention": AttentionMSE([(1, 2)], weight=2.0)},
    ).eval()  # eval: no attention dropout
    batch = padded_batch(tiny_tokenizer)
    terms = module.compute_loss(batch)
    assert student.config._attn_implementation == teacher.config._attn_implementation == implementation

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    maps = []
    for model, layer in ((student, 0), (teacher, 1)):
        model.set_attn_implementation("eager")
        with torch.no_grad():
            maps.append(model(**inputs, output_attentions=True).attentions[layer].tolist())
        model.set_attn_implementation(implementation)
    expected = 2.0 * reference_attention_mse(*maps, batch["attention_mask"].tolist())
    assert terms["loss_attention"].item() == pytest.approx(expected, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(
        (0.5 * terms["loss_soft"] + 0.5 * terms["loss_hard"] + terms["loss_attention"]).item(), abs=1e-6
    )
    terms["loss"].backward()
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None


def test_the_student_maps_are_probabilities_before_dropout_and_its_output_is_eager_attentions(tiny_tokenizer):
    from kdlab.models.attention_maps import attention_probabilities

    student = tiny_bert(tiny_tokenizer, 1, 2).train()
    student.config.attention_probs_dropout_prob = 0.5
    student.bert.encoder.layer[0].attention.self.dropout.p = 0.5
    inputs = {
        k: v for k, v in padded_batch(tiny_tokenizer).items() if k in ("input_ids", "attention_mask", "token_type_ids")
    }
    torch.manual_seed(3)
    with attention_probabilities(student):
        ours = student(**inputs, output_attentions=True)
    student.set_attn_implementation("eager")
    torch.manual_seed(3)
    eager = student(**inputs, output_attentions=True)
    assert torch.equal(ours.logits, eager.logits)  # same maths, same dropout draws
    sums = ours.attentions[0].sum(dim=-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
    assert not torch.allclose(
        eager.attentions[0].sum(dim=-1), torch.ones_like(sums), atol=1e-3
    )  # eager's maps: after dropout


def test_a_model_without_switchable_attention_is_a_config_error():
    from kdlab.errors import ConfigError
    from kdlab.models.attention_maps import attention_probabilities

    with pytest.raises(
        ConfigError, match=r"^loss.attention.weight: attention transfer needs a Hugging Face transformer, got a Linear$"
    ):
        with attention_probabilities(torch.nn.Linear(2, 2)):
            pass


def test_the_default_hinton_loss_is_the_soft_target_formula(tiny_tokenizer):
    """The composed default (soft_target, no extra term) through HintonKD: α τ² KL + (1 − α) CE on the models' logits."""
    from kdlab.methods.hinton import HintonKD

    teacher, student = tiny_bert(tiny_tokenizer, 2, 2, seed=1), tiny_bert(tiny_tokenizer, 1, 2, seed=2)
    module = HintonKD(
        student, teacher, tiny_tokenizer, "classification", 2, adamw(lr=1e-3), ["acc"], alpha=0.3, temperature=2.0
    ).eval()
    batch = padded_batch(tiny_tokenizer)
    terms = module.compute_loss(batch)
    assert set(terms) == {"loss", "loss_soft", "loss_hard"}
    with torch.no_grad():
        zs, zt = (
            module(batch).tolist(),
            teacher(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits.tolist(),
        )
    soft = 0.0
    for s_row, t_row in zip(zs, zt):
        p_s = [math.exp(v / 2) / sum(math.exp(u / 2) for u in s_row) for v in s_row]
        p_t = [math.exp(v / 2) / sum(math.exp(u / 2) for u in t_row) for v in t_row]
        soft += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    soft, hard = 4 * soft / len(zs), cross_entropy(zs, [1, 0])
    assert terms["loss_soft"].item() == pytest.approx(soft, abs=1e-6) and terms["loss_hard"].item() == pytest.approx(
        hard, abs=1e-6
    )
    assert terms["loss"].item() == pytest.approx(0.3 * soft + 0.7 * hard, abs=1e-6)


# --- config rules: one function each, the same line at config time and at run time -----------------------------------


def config_error(tmp_path, *overrides):
    """The ConfigError line kdlab.config.validate gives for these overrides (None when the config is accepted)."""
    from omegaconf import OmegaConf

    from kdlab import api
    from kdlab.config import validate
    from kdlab.errors import ConfigError

    with kdlab_folders(tmp_path):
        cfg = api.compose(*overrides)
        try:
            validate(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
        except ConfigError as err:
            return str(err)
    return None


@pytest.mark.parametrize(
    "overrides,error",
    [
        (["loss=logit_mse"], None),
        (["loss=logit_mse", "method.teacher_outputs=live", "loss.attention.weight=1", "loss.hidden.weight=0.5"], None),
        (["loss.soft=kl"], "loss.soft: must be one of ['soft_target', 'logit_mse'], got 'kl'"),
        (
            ["loss=logit_mse", "loss.temperature=3"],
            "loss.temperature: is not used by loss.soft=logit_mse (logit MSE); select the term with loss=logit_mse, which leaves it null",
        ),
        (
            ["loss.soft=logit_mse"],
            "loss.temperature: is not used by loss.soft=logit_mse (logit MSE); select the term with loss=logit_mse, which leaves it null",
        ),
        (["loss=logit_mse", "loss.alpha=2"], "loss.alpha: must be in [0, 1], got 2"),
        (
            ["loss.attention.weight=1"],
            "loss.attention.weight: attention transfer needs method.teacher_outputs=live (the cache holds logits only)",
        ),
        (["loss.attention.weight=-1"], "loss.attention.weight: must be >= 0, got -1"),
        (["loss.attention.weight=x"], "loss.attention.weight: must be a number, got 'x'"),
        (
            ["loss.attention.layer_map=[[0,1]]"],
            "loss.attention.layer_map: pair [0, 1] is outside student 1..1 / teacher 1..4",
        ),
        (
            ["loss.attention.layer_map=[1,2]"],
            "loss.attention.layer_map: must be a list of [student, teacher] integer index pairs, got [1, 2]",
        ),
        (["loss.hidden.layer_map=[[0,0]]"], None),  # hidden-state index 0 is the embeddings
        (["+loss.distance=1"], None),  # refused by the added-key check of compose (below)
    ],
)
def test_the_loss_rules_at_config_time(tmp_path, overrides, error):
    from kdlab.errors import ConfigError

    if overrides[0].startswith("+"):
        with pytest.raises(ConfigError, match=r"^loss.distance: no part of kdlab reads this key"):
            config_error(tmp_path, *overrides)
        return
    assert config_error(tmp_path, *overrides) == error


def test_a_stray_key_under_loss_names_the_terms():
    from kdlab.errors import ConfigError
    from kdlab.losses.registry import check_loss_keys

    with pytest.raises(
        ConfigError,
        match=r"^loss.attn: is not a loss setting; extra terms are \['hidden', 'attention'\], "
        r"soft terms \['soft_target', 'logit_mse'\]$",
    ):
        check_loss_keys(["soft", "alpha", "attn"])


def test_the_run_time_guards_give_the_config_time_lines(tmp_path, tiny_tokenizer):
    from kdlab import api
    from kdlab.errors import ConfigError
    from kdlab.losses.attention import AttentionMSE
    from kdlab.methods.hinton import HintonKD
    from kdlab.pipelines.supervised import loss_terms

    teacher, student = tiny_bert(tiny_tokenizer, 4, 4), tiny_bert(tiny_tokenizer, 1, 2)
    overrides = ["method.teacher_outputs=live", "loss.attention.weight=1", "loss.attention.layer_map=[[2,1]]"]
    line = "loss.attention.layer_map: pair [2, 1] is outside student 1..1 / teacher 1..4"
    assert config_error(tmp_path, *overrides) == line
    with kdlab_folders(tmp_path):
        cfg = api.compose(*overrides)
    with pytest.raises(ConfigError) as caught:
        loss_terms(cfg, student, teacher)
    assert str(caught.value) == line
    live = "loss.attention.weight: attention transfer needs method.teacher_outputs=live (the cache holds logits only)"
    assert config_error(tmp_path, "loss.attention.weight=1") == live
    with pytest.raises(ConfigError) as caught:
        HintonKD(
            student,
            None,
            tiny_tokenizer,
            "classification",
            2,
            adamw(lr=1e-3),
            ["acc"],
            alpha=0.5,
            temperature=2.0,
            teacher_outputs=torch.zeros(4, 2),
            terms={"attention": AttentionMSE([(1, 1)])},
        )
    assert str(caught.value) == live


# --- end to end: a tiny hinton run with each new term ----------------------------------------------------------------

SMALL = (*FAST, "trainer.limit_train_batches=3", "method.baseline=false")


@pytest.fixture(scope="module")
def given_teacher(tmp_path_factory, tiny_tokenizer):
    """A tiny random-init teacher exported as an HF folder (model.teacher.trained: no teacher fine-tuning)."""
    from kdlab.models.files import export_model

    folder = tmp_path_factory.mktemp("teacher") / "model"
    export_model(tiny_bert(tiny_tokenizer, 2, 4, width=64), tiny_tokenizer, folder)
    return str(folder)


def student_log(run_path):
    import csv

    with open(run_path / "logs" / "student" / "metrics.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("train/loss")]


def test_a_hinton_run_with_logit_mse(tmp_path, given_teacher):
    from kdlab import api

    with kdlab_folders(tmp_path):
        run = api.train(*SMALL, "loss=logit_mse", f"model.teacher.trained={given_teacher}")
    assert run.config.loss.soft == "logit_mse" and run.config.loss.temperature is None
    rows = student_log(run.path)
    assert rows and all(
        math.isfinite(float(row[name])) for row in rows for name in ("train/loss", "train/loss_soft", "train/loss_hard")
    )
    assert float(rows[0]["train/loss_soft"]) > 0
    assert math.isfinite(json.loads((run.path / "metrics.json").read_text())["student/val/loss"])


def test_a_hinton_run_with_attention_transfer_and_the_live_teacher(tmp_path, given_teacher):
    from kdlab import api

    with kdlab_folders(tmp_path):
        run = api.train(
            *SMALL, "method.teacher_outputs=live", "loss.attention.weight=1", f"model.teacher.trained={given_teacher}"
        )
    rows = student_log(run.path)
    assert rows and all(
        math.isfinite(float(row[name]))
        for row in rows
        for name in ("train/loss", "train/loss_soft", "train/loss_attention")
    )
    assert all(float(row["train/loss_attention"]) > 0 for row in rows)
    config = json.loads((run.path / "student" / "model" / "config.json").read_text())
    assert "attn_implementation" not in json.dumps(config)  # the switch is not exported
