"""BAM (issue 6): the annealed loss against hand computations, the λ schedule, content-keyed teacher predictions."""

import math

import pytest
import torch

from kdlab.cache.teacher_outputs import content_id
from kdlab.errors import DataError
from kdlab.losses import annealed_loss, annealed_target
from kdlab.methods.bam import TeacherPredictions, annealing_lambda, glue_mean

ZS = [[1.0, 2.0, 0.5], [0.3, -1.2, 2.2]]
ZT = [[0.5, 3.0, -1.0], [1.5, -0.5, 0.0]]
Y = [2, 0]


def softmax(z):
    exps = [math.exp(v) for v in z]
    return [e / sum(exps) for e in exps]


def classification_by_hand(lam):
    """mean_i −Σ_c (λ·onehot(y_i)_c + (1 − λ)·softmax(z_T,i)_c) · log softmax(z_S,i)_c, in plain Python."""
    total = 0.0
    for zs, zt, y in zip(ZS, ZT, Y):
        p_s, p_t = softmax(zs), softmax(zt)
        total -= sum((lam * (c == y) + (1 - lam) * p_t[c]) * math.log(p_s[c]) for c in range(3))
    return total / len(Y)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_annealed_classification_loss_matches_hand_computation(lam):
    loss = annealed_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), lam, "classification")
    assert loss.item() == pytest.approx(classification_by_hand(lam), abs=1e-6)


def test_annealed_classification_end_points_by_hand():
    # λ = 1: plain CE with the gold class. Row 0: log(e + e² + e^0.5) − 0.5 = log 11.756063 − 0.5 = 1.964345;
    # row 1: log(e^0.3 + e^−1.2 + e^2.2) − 0.3 = log 10.676057 − 0.3 = 2.068028; mean 2.016187
    ce = ((math.log(math.e + math.e**2 + math.e**0.5) - 0.5) + (math.log(math.e**0.3 + math.e**-1.2 + math.e**2.2) - 0.3)) / 2
    assert ce == pytest.approx(2.0161866, abs=1e-6)
    assert annealed_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), 1.0, "classification").item() == pytest.approx(ce, abs=1e-6)
    target = annealed_target(torch.tensor(ZT), torch.tensor(Y), 0.3, "classification")
    # row 1: 0.3·[1, 0, 0] + 0.7·softmax(1.5, −0.5, 0); e^1.5, e^−0.5, e^0 = 4.481689, 0.606531, 1 (sum 6.088220)
    assert target[1].tolist() == pytest.approx([0.3 + 0.7 * 0.7361247, 0.7 * 0.0996236, 0.7 * 0.1642516], abs=1e-6)
    assert target.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("lam,expected", [
    # z_S = [0.2, 0.9, 0.5], y = [0.0, 1.0, 0.4], z_T = [0.4, 0.6, 0.5]
    # λ=0:   targets z_T → errors [−0.2, 0.3, 0.0]          → (0.04 + 0.09 + 0) / 3
    (0.0, (0.04 + 0.09 + 0.0) / 3),
    # λ=0.3: targets [0.28, 0.72, 0.47] → errors [−0.08, 0.18, 0.03] → (0.0064 + 0.0324 + 0.0009) / 3
    (0.3, (0.0064 + 0.0324 + 0.0009) / 3),
    # λ=0.5: targets [0.2, 0.8, 0.45]  → errors [0.0, 0.1, 0.05]     → (0 + 0.01 + 0.0025) / 3
    (0.5, (0.0 + 0.01 + 0.0025) / 3),
    # λ=1:   targets y → errors [0.2, −0.1, 0.1]            → (0.04 + 0.01 + 0.01) / 3
    (1.0, (0.04 + 0.01 + 0.01) / 3),
])
def test_annealed_regression_loss_matches_hand_computation(lam, expected):
    student = torch.tensor([[0.2], [0.9], [0.5]])
    teacher = torch.tensor([[0.4], [0.6], [0.5]])
    gold = torch.tensor([0.0, 1.0, 0.4])
    assert annealed_loss(student, teacher, gold, lam, "regression").item() == pytest.approx(expected, abs=1e-6)


def test_lambda_rises_linearly_from_zero_to_one():
    assert [annealing_lambda(step, 10) for step in (0, 1, 3, 5, 9, 10, 12)] == pytest.approx([0.0, 0.1, 0.3, 0.5, 0.9, 1.0, 1.0])
    assert annealing_lambda(0, 0) == 1.0
    with pytest.raises(ValueError, match="lambda must be in"):
        annealed_target(torch.tensor(ZT), torch.tensor(Y), 1.5, "classification")
    assert glue_mean([0.8, 0.5, 0.2]) == pytest.approx(0.5)


def test_teacher_predictions_follow_content_not_position():
    texts = [("the plot was good", None), ("a", "b"), ("the food was bad", None), ("b", "a")]
    outputs = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    predictions = TeacherPredictions([content_id(*t) for t in texts], outputs, "/cache/entry.safetensors")
    shuffled = [3, 0, 2, 1]
    batch_ids = torch.tensor([list(content_id(*texts[i])) for i in shuffled], dtype=torch.uint8)
    assert predictions.lookup(batch_ids, "reviews").tolist() == outputs[shuffled].tolist()
    unknown = torch.tensor([list(content_id("never seen"))], dtype=torch.uint8)
    with pytest.raises(DataError, match=r"^/cache/entry\.safetensors: no teacher prediction for training example "
                                        rf"{content_id('never seen').hex()} of task 'reviews'; BAM never trains"):
        predictions.lookup(unknown, "reviews")
