"""How the teacher-output cache stores a row: its dtype and, for logits, only the k largest logits.

`cache.dtype` (float32 | float16 | bfloat16) is the dtype of the stored values. `cache.top_k: k` (logits only) keeps,
per row, the k largest logits z_(1..k), their class indices and the row's logsumexp L = log Σ_c exp z_c. The full-width
logits are formed again in one place, `decode`, which every reader of the cache goes through:

    z'_c = z_c                                   for the k stored classes
    z'_c = L + log((1 − Σ_top-k exp(z_c − L)) / (C − k))   for the other C − k classes (the tail)

i.e. the tail's probability mass is kept and spread evenly over the classes that were not stored. softmax(z') gives
the teacher's exact probabilities for the top k and the exact total of the rest, so at τ = 1 the soft targets differ
from the full ones only inside the tail; the logits stay finite and on the teacher's scale, so a logit-MSE soft term
and BAM's annealed targets read them as well. (Renormalising over the top k instead would put −∞ on the tail: every
class outside the top k would get probability 0, which overstates the teacher's confidence and makes logit MSE
infinite.) With k ≥ C − 1 the decoded logits equal the stored ones up to the dtype's rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdlab.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where rows are encoded, not by the config check
    import torch

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Storage:
    """The storage of a cache entry's rows: `dtype` (a DTYPES name) and `top_k` (None: every value)."""

    dtype: str
    top_k: int | None


def check_storage(spec: Any, kind: str, used: bool = True) -> Storage:
    """`cache.dtype` and `cache.top_k` checked for outputs of `kind` (`logits` or an embedding kind); ConfigError
    naming the key. `used=False` (the teacher runs live): any setting other than full float32 is refused."""
    dtype = spec.get("dtype")
    if dtype not in DTYPES:
        raise ConfigError("cache.dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
    top_k = spec.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError("cache.top_k", f"must be a whole number >= 1 or null (every logit), got {top_k!r}")
    if top_k is not None and kind != "logits":
        raise ConfigError(
            "cache.top_k", f"only logits can be stored as their top k; this method caches {kind} (set cache.top_k=null)"
        )
    if not used and (dtype != "float32" or top_k is not None):
        raise ConfigError(
            "cache",
            "the teacher's outputs are not cached in this run (method.teacher_outputs=live or method.teachers=false): leave cache.dtype=float32 and cache.top_k=null",
        )
    return Storage(str(dtype), None if top_k is None else int(top_k))


def encode(outputs: torch.Tensor, storage: Storage) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata that store `outputs` [N, ...] (float32) as `storage` says."""
    import torch

    dtype = getattr(torch, storage.dtype)
    width = outputs.shape[-1] if outputs.dim() == 2 else 0
    if storage.top_k is None or outputs.dim() != 2 or storage.top_k >= width:
        return {"outputs": outputs.to(dtype).contiguous()}, {"format": "full", "dtype": storage.dtype}
    logits = outputs.float()
    values, indices = logits.topk(storage.top_k, dim=-1)
    index_dtype = torch.int16 if width <= torch.iinfo(torch.int16).max else torch.int32
    tensors = {
        "values": values.to(dtype).contiguous(),
        "indices": indices.to(index_dtype).contiguous(),
        "logsumexp": torch.logsumexp(logits, dim=-1).contiguous(),
    }
    return tensors, {"format": "top_k", "dtype": storage.dtype, "top_k": str(storage.top_k), "width": str(width)}


def decode(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> torch.Tensor:
    """float32 full-width rows from what `encode` stored (top-k logits: the tail mass spread evenly, module doc)."""
    import torch

    if metadata.get("format", "full") == "full":
        return tensors["outputs"].float()
    values, indices, lse = tensors["values"].float(), tensors["indices"].long(), tensors["logsumexp"].float()
    width, k = int(metadata["width"]), values.shape[-1]
    top_mass = torch.exp(values - lse[:, None]).sum(dim=-1)
    tail = (1.0 - top_mass).clamp_min(torch.finfo(torch.float32).tiny)
    fill = lse + torch.log(tail) - math.log(width - k)
    full = fill[:, None].expand(len(values), width).clone()
    return full.scatter_(1, indices, values)
