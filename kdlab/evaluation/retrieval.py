"""Translation retrieval accuracy and embedding MSE on parallel sentences (Reimers & Gurevych 2020).

Rows i of ``source_emb`` and ``target_emb`` ([N, D]) embed a sentence and its translation. With
ŝ_i = s_i / ‖s_i‖ and t̂_j = t_j / ‖t_j‖:

    src2trg = 1/N · Σ_i [ argmax_j  ŝ_i · t̂_j  = i ]
    trg2src = 1/N · Σ_j [ argmax_i  t̂_j · ŝ_i  = j ]
    mean    = (src2trg + trg2src) / 2

Ties go to the first index (``torch.argmax``): with duplicate targets only the first copy can be
retrieved. A zero vector has cosine 0 with everything. The [N, N] similarity matrix is never built
at once: queries go through in chunks of ``chunk_size`` rows.

    MSE×100 = 100 · 1/(N·D) · Σ_i Σ_d (student_id − teacher_id)²

(the sentence-transformers ``MSEEvaluator`` convention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ValueError unless a and b are finite [N, D] tensors of the same shape with N >= 1."""
    if a.dim() != 2 or b.dim() != 2:
        shapes = f"{tuple(a.shape)} and {tuple(b.shape)}"
        raise ValueError(f"{name_a} and {name_b} must be 2-D [N, D], got shapes {shapes}")
    if a.shape != b.shape:
        shapes = f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)}"
        raise ValueError(f"{shapes} must have the same shape (row i pairs with row i)")
    if a.shape[0] == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: no pairs to evaluate")
    for name, tensor in ((name_a, a), (name_b, b)):
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or inf")


def _hits(queries: torch.Tensor, keys: torch.Tensor, chunk_size: int) -> int:
    """How many query rows i have key row i as their nearest key by cosine (first index on ties)."""
    q = F.normalize(queries.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    hits = 0
    for start in range(0, q.shape[0], chunk_size):
        nearest = (q[start : start + chunk_size] @ k.T).argmax(dim=1)
        expected = torch.arange(start, start + nearest.shape[0], device=nearest.device)
        hits += int((nearest == expected).sum())
    return hits


@torch.no_grad()
def translation_accuracy(
    source_emb: torch.Tensor, target_emb: torch.Tensor, chunk_size: int = 1024
) -> dict[str, float]:
    """Fraction of rows whose own translation is the nearest by cosine: src2trg, trg2src and their mean."""
    _check_pair("source_emb", source_emb, "target_emb", target_emb)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n = source_emb.shape[0]
    src2trg = _hits(source_emb, target_emb, chunk_size) / n
    trg2src = _hits(target_emb, source_emb, chunk_size) / n
    return {"src2trg": src2trg, "trg2src": trg2src, "mean": (src2trg + trg2src) / 2}


@torch.no_grad()
def embedding_mse(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> float:
    """100 × the mean over pairs and dimensions of (student − teacher)²."""
    _check_pair("student_emb", student_emb, "teacher_emb", teacher_emb)
    return float((student_emb.double() - teacher_emb.double()).pow(2).mean() * 100)
