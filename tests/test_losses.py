"""Golden values for the soft-target KD loss, computed with plain-Python formulas independent of torch."""

import math

import pytest
import torch

from kdlab.losses import SoftTargetKDLoss, hard_loss, soft_target_loss


def softmax(z, t=1.0):
    exps = [math.exp(v / t) for v in z]
    total = sum(exps)
    return [e / total for e in exps]


def reference(zs_rows, zt_rows, labels, alpha, tau):
    """α τ² mean_i KL(p_T,i ‖ p_S,i) + (1 − α) mean_i −log softmax(z_S,i)[y_i], by hand."""
    soft = hard = 0.0
    for zs, zt, y in zip(zs_rows, zt_rows, labels):
        p_s, p_t = softmax(zs, tau), softmax(zt, tau)
        soft += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
        hard += -math.log(softmax(zs)[y])
    n = len(labels)
    soft, hard = tau**2 * soft / n, hard / n
    return alpha * soft + (1 - alpha) * hard, soft, hard


ZS = [[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]]
ZT = [[0.5, 3.0, -1.0], [1.5, -0.5, 0.0]]
Y = [1, 0]


@pytest.mark.parametrize("alpha,tau", [(0.5, 1.0), (0.3, 2.0), (0.9, 4.0), (0.0, 3.0), (1.0, 2.0)])
def test_soft_target_kd_matches_hand_computed(alpha, tau):
    loss = SoftTargetKDLoss(alpha=alpha, temperature=tau)
    out = loss(torch.tensor(ZS, dtype=torch.float64), torch.tensor(ZT, dtype=torch.float64), torch.tensor(Y))
    total, soft, hard = reference(ZS, ZT, Y, alpha, tau)
    assert out.soft.item() == pytest.approx(soft, abs=1e-6)
    if alpha < 1:
        assert out.hard.item() == pytest.approx(hard, abs=1e-6)
    assert out.total.item() == pytest.approx(total if alpha < 1 else alpha * soft, abs=1e-6)


def test_one_known_value():
    # Two classes, z_S = [0, 0], z_T = [ln 3, 0], tau = 1: p_T = [3/4, 1/4], p_S = [1/2, 1/2]
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120464...
    value = soft_target_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), 1.0)
    assert value.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)


def test_tau_squared_gives_hintons_high_temperature_limit():
    """With τ², the soft gradient tends to ((z_S − z_T) − mean(z_S − z_T)) / (C·B) as τ grows (Hinton §2.1);
    without τ² it would vanish like 1/τ²."""
    torch.manual_seed(0)
    batch, classes = 4, 5
    zt = torch.randn(batch, classes)
    zs = torch.randn(batch, classes).requires_grad_(True)
    soft_target_loss(zs, zt, 1000.0).backward()
    diff = zs.detach() - zt
    expected = (diff - diff.mean(dim=-1, keepdim=True)) / (classes * batch)
    torch.testing.assert_close(zs.grad, expected, rtol=1e-2, atol=1e-5)


def test_regression_variant_is_mse_mix():
    zs, zt, y = torch.tensor([[0.2], [0.9]]), torch.tensor([[0.4], [0.5]]), torch.tensor([0.0, 1.0])
    out = SoftTargetKDLoss(alpha=0.25, temperature=3.0, task="regression")(zs, zt, y)
    soft = ((0.2 - 0.4) ** 2 + (0.9 - 0.5) ** 2) / 2
    hard = ((0.2 - 0.0) ** 2 + (0.9 - 1.0) ** 2) / 2
    assert out.soft.item() == pytest.approx(soft, abs=1e-6)
    assert out.hard.item() == pytest.approx(hard, abs=1e-6)
    assert out.total.item() == pytest.approx(0.25 * soft + 0.75 * hard, abs=1e-6)
    assert hard_loss(zs, y, "regression").item() == pytest.approx(hard, abs=1e-6)


def test_pure_distillation_needs_no_labels():
    out = SoftTargetKDLoss(alpha=1.0, temperature=2.0)(torch.tensor(ZS), torch.tensor(ZT), None)
    assert out.hard.item() == 0.0


@pytest.mark.parametrize("kwargs,message", [({"alpha": 1.5}, "alpha"), ({"temperature": 0.0}, "temperature")])
def test_invalid_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SoftTargetKDLoss(**kwargs)


def test_hidden_state_matching_golden_value_with_mask_and_projection():
    from kdlab.losses import HiddenStateMSE, default_layer_map, masked_mse

    # one sequence of 3 tokens, the last one padding; student width 2, teacher width 3
    h_s = [torch.zeros(1, 3, 2), torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])]
    h_t = [
        torch.zeros(1, 3, 3),
        torch.zeros(1, 3, 3),
        torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]]),
    ]
    mask = torch.tensor([[1, 1, 0]])
    loss = HiddenStateMSE([(1, 2)], student_width=2, teacher_width=3, weight=0.5)
    with torch.no_grad():  # P(x) = [x0, x1, x0 + x1]
        loss.projections[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        loss.projections[0].bias.zero_()
    # projected tokens: [1, 2, 3] and [3, 4, 7]; squared errors vs teacher: (0 + 4 + 4) + (9 + 9 + 49) = 75 over 2 tokens × 3 dims
    assert loss(h_s, h_t, mask).item() == pytest.approx(0.5 * 75 / 6, abs=1e-6)
    assert masked_mse(h_t[2], h_t[2] + 1, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert default_layer_map(2, 6) == [(1, 3), (2, 6)] and default_layer_map(3, 3) == [(1, 1), (2, 2), (3, 3)]
