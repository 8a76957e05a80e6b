"""Compact storage of teacher outputs (kdlab/cache/storage.py): dtypes, and top-k logits read back full width."""

import math

import pytest
import torch
import torch.nn.functional as F
from test_cache import DESCRIPTION

from kdlab.cache.storage import Storage, decode, encode
from kdlab.cache.teacher_outputs import TeacherOutputCache

LOGITS = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])


def round_trip(outputs: torch.Tensor, storage: Storage) -> torch.Tensor:
    return decode(*encode(outputs, storage))


def test_top_k_keeps_the_top_probabilities_and_spreads_the_tail_mass_evenly():
    """A tiny case against the full distribution, by hand: row 0 keeps classes 0, 1, 2 (z = 2, 1, 0.5); the other
    three share the rest of the mass."""
    full = F.softmax(LOGITS, dim=-1)
    decoded = F.softmax(round_trip(LOGITS, Storage("float32", 3)), dim=-1)
    top = [0, 1, 2]
    torch.testing.assert_close(decoded[0, top], full[0, top], rtol=0, atol=1e-6)  # the top k exactly
    tail = 1.0 - full[0, top].sum()
    torch.testing.assert_close(decoded[0, 3:], torch.full((3,), float(tail) / 3), rtol=0, atol=1e-6)
    # by hand: p = e^z / Σ e^z over [2, 1, .5, -1, -3, 0]
    z = [2.0, 1.0, 0.5, -1.0, -3.0, 0.0]
    total = sum(math.exp(v) for v in z)
    assert float(decoded[0, 3]) == pytest.approx((math.exp(-1) + math.exp(-3) + math.exp(0)) / total / 3, abs=1e-7)
    # row 1 keeps its 3 largest (classes 5, 4, 3); the soft targets stay close to the full ones
    # (renormalising over the top k instead would give the tail probability 0: an infinite KL)
    assert float(F.kl_div(decoded.log(), full, reduction="batchmean")) < 0.05
    # the logits stay finite and on the teacher's scale (a logit-MSE soft term can read them)
    assert torch.isfinite(round_trip(LOGITS, Storage("float32", 3))).all()


def test_top_k_of_all_but_one_class_or_more_gives_the_full_logits_back():
    torch.testing.assert_close(round_trip(LOGITS, Storage("float32", 5)), LOGITS, rtol=0, atol=1e-5)
    stored, metadata = encode(LOGITS, Storage("float32", 6))
    assert metadata["format"] == "full" and torch.equal(decode(stored, metadata), LOGITS)


@pytest.mark.parametrize(("dtype", "bytes_per_value", "tolerance"), [("float16", 2, 1e-3), ("bfloat16", 2, 8e-3)])
def test_half_precision_halves_the_bytes_within_its_rounding(dtype, bytes_per_value, tolerance):
    stored, _ = encode(LOGITS, Storage(dtype, None))
    assert stored["outputs"].element_size() == bytes_per_value
    back = round_trip(LOGITS, Storage(dtype, None))
    assert back.dtype == torch.float32
    torch.testing.assert_close(back, LOGITS, rtol=tolerance, atol=tolerance)


def test_a_top_k_entry_is_smaller_and_reads_back_full_width(tmp_path):
    """200 rows of 30,522 logits (a vocabulary-sized head): top 32 in float16 is ~0.5 % of full float32."""
    torch.manual_seed(0)
    logits = torch.randn(200, 30522)
    inputs = [(f"sentence {i}", None) for i in range(200)]
    sizes = {}
    for storage in (Storage("float32", None), Storage("float16", 32)):
        cache = TeacherOutputCache(tmp_path / storage.dtype)
        rows, info = cache.get_or_compute(
            {**DESCRIPTION, "dtype": storage.dtype, "top_k": storage.top_k}, inputs, lambda items: logits
        )
        sizes[storage] = sum(p.stat().st_size for p in (tmp_path / storage.dtype / info["entry"]).glob("*.safetensors"))
        assert rows.shape == (200, 30522) and rows.dtype == torch.float32
        top = logits.topk(32).indices
        torch.testing.assert_close(rows.gather(1, top), logits.gather(1, top), rtol=1e-3, atol=1e-3)
    assert sizes[Storage("float16", 32)] < 0.01 * sizes[Storage("float32", None)]
