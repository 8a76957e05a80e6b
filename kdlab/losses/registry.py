"""The KD loss terms of `hinton`, by name: one table, torch-free, and the rules on their config.

hinton's loss is a weighted sum, in torchdistill's layering (plain torch losses → KD terms → a sum set in YAML):

    L = α · soft(z_S, z_T) + (1 − α) · hard(z_S, y)      the logit term `loss.soft` names; α = loss.alpha
      + Σ_extra  loss.<name>.weight · term(S, T)         every extra term whose weight is > 0 (default: off)

Each entry names its nn.Module as a "module:Class" string, imported only when a run builds it, so the config
check (`kdlab-train --cfg job`, `--help`) imports no torch:

    role "soft"   a logit term: Class(task=..., **{p: loss.<p> for p in params}) → KDLossOutput(total, soft, hard);
                  logged as train/loss_soft and train/loss_hard. Exactly one, chosen by conf/loss/<name>.yaml
                  (`loss=<name>`), whose loss.<p> keys outside `params` are null.
    role "extra"  a layer-wise matching term: Class.from_models(layer_map, weight, student_config, teacher_config),
                  called with the student's and the live teacher's `reads` outputs (one tensor per layer) and the
                  attention mask; returns its weighted value, logged as train/loss_<name>. Its YAML block is
                  loss.<name>: {weight, layer_map}; layer indices start at `first_layer`.

Adding a term: its module in kdlab/losses/ (the docstring states the formula) and one `register_term(...)` line
below; a soft term gets conf/loss/<name>.yaml, an extra term a `<name>: {weight: 0.0, layer_map: null}` block in
conf/loss/soft_target.yaml. Error messages that list the choices read this table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kdlab import registry
from kdlab.errors import ConfigError

ROLES = ("soft", "extra")
# Trans-Encoder's pseudo-label losses (kdlab.losses.pseudo_labels), for method.cross.loss / method.bi.loss
PAIR_LOSSES = ("bce", "mse")
# ... and how their labels are made: method.cross.label_rule (the bi-encoders' cosines clipped to [0, 1], or raw) and
# method.bi.label_orders (the cross-encoders' σ on both orders of a pair, averaged, or on the pair as given)
LABEL_RULES = ("clipped", "raw")
LABEL_ORDERS = ("both", "one")


@dataclass(frozen=True)
class LossTerm:
    """What the config check and the hinton module need to know about one loss term."""

    name: str
    role: str  # soft | extra
    target: str  # "module:Class"
    title: str  # its name in messages
    params: tuple[str, ...] = ()  # soft: the loss.<param> keys its constructor reads
    reads: str | None = None  # extra: the model output it compares (hidden_states | attentions)
    first_layer: int = 0  # extra: the lowest layer index of its layer_map

    def load(self) -> Any:
        """The class the target names (imported now, through kdlab.registry.resolve)."""
        return registry.resolve(self.target)


TERMS: dict[str, LossTerm] = {}


def register_term(entry: LossTerm) -> LossTerm:
    """Add a term to the table (its name must be new)."""
    if entry.name in TERMS or entry.role not in ROLES:
        raise ValueError(f"loss term {entry.name!r}: registered twice or role {entry.role!r} not in {ROLES}")
    TERMS[entry.name] = entry
    registry.allow(entry.target)
    return entry


def names(role: str) -> list[str]:
    """The registered terms of one role, in table order."""
    return [name for name, entry in TERMS.items() if entry.role == role]


def soft_params() -> list[str]:
    """Every loss.<param> key some soft term reads (alpha, temperature)."""
    return list(dict.fromkeys(param for name in names("soft") for param in TERMS[name].params))


register_term(
    LossTerm(
        "soft_target",
        "soft",
        "kdlab.losses.soft_target:SoftTargetKDLoss",
        "the τ²-scaled KL soft target",
        params=("alpha", "temperature"),
    )
)
register_term(LossTerm("logit_mse", "soft", "kdlab.losses.logit_mse:LogitMSEKDLoss", "logit MSE", params=("alpha",)))
register_term(
    LossTerm(
        "hidden",
        "extra",
        "kdlab.losses.hidden_states:HiddenStateMSE",
        "hidden-state matching",
        reads="hidden_states",
        first_layer=0,
    )
)
register_term(
    LossTerm(
        "attention",
        "extra",
        "kdlab.losses.attention:AttentionMSE",
        "attention transfer",
        reads="attentions",
        first_layer=1,
    )
)


# --- the rules: one function each, called by the config checks (kdlab.methods.hinton_checks, trans_encoder_checks)
# and at run time -----------------------------------------------------------------------------------------------------


def term(name: Any, role: str, key: str) -> LossTerm:
    """The registered term of `role` called `name`; ConfigError naming `key` and the choices otherwise."""
    choices = names(role)
    if name not in choices:
        raise ConfigError(key, f"must be one of {choices}, got {name!r}")
    return TERMS[name]


def check_loss_keys(keys: Sequence[str], prefix: str = "loss") -> None:
    """Every key under `loss` is `soft`, a soft term's parameter or an extra term's block."""
    known = ["soft", *soft_params(), *names("extra")]
    for key in keys:
        if key not in known:
            raise ConfigError(
                f"{prefix}.{key}",
                f"is not a loss setting; extra terms are {names('extra')}, soft terms {names('soft')}",
            )


def check_soft_params(entry: LossTerm, values: Mapping[str, Any], prefix: str = "loss") -> None:
    """The parameters of other soft terms are null: a value there would be ignored (its own are checked by range)."""
    for param in soft_params():
        if param not in entry.params and values.get(param) is not None:
            raise ConfigError(
                f"{prefix}.{param}",
                f"is not used by {prefix}.soft={entry.name} ({entry.title}); "
                f"select the term with loss={entry.name}, which leaves it null",
            )


def check_weight(key: str, weight: float) -> float:
    """An extra term's weight: >= 0 (0 = off)."""
    if not weight >= 0:
        raise ConfigError(key, f"must be >= 0, got {weight:g}")
    return weight


def check_live_teacher(key: str, entry: LossTerm, teacher_outputs: Any) -> None:
    """An extra term compares the teacher's inner outputs, which only the live teacher gives."""
    if teacher_outputs != "live":
        raise ConfigError(key, f"{entry.title} needs method.teacher_outputs=live (the cache holds logits only)")


def check_layer_map(
    key: str, pairs: Any, entry: LossTerm, student_depth: int | None, teacher_depth: int | None
) -> list[tuple[int, int]]:
    """A list of [student, teacher] integer pairs, each within first_layer..depth where the depth is known."""
    if (
        not isinstance(pairs, (list, tuple))
        or not pairs
        or any(
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
            for pair in pairs
        )
    ):
        raise ConfigError(key, f"must be a list of [student, teacher] integer index pairs, got {pairs}")
    low = entry.first_layer
    for s_index, t_index in pairs:
        if (student_depth is not None and not low <= s_index <= student_depth) or (
            teacher_depth is not None and not low <= t_index <= teacher_depth
        ):
            raise ConfigError(
                key,
                f"pair {[s_index, t_index]} is outside student {low}..{student_depth} / teacher {low}..{teacher_depth}",
            )
    return [(int(s), int(t)) for s, t in pairs]


def default_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Student layer i ↔ teacher layer i·L_T/L_S (i = 1..L_S): the last layers always meet."""
    return [(i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


def check_pair_loss(name: Any, key: str) -> str:
    """A Trans-Encoder stage's pseudo-label loss (`method.<stage>.loss`): one of PAIR_LOSSES."""
    return check_label_choice(name, PAIR_LOSSES, key)


def check_label_choice(value: Any, choices: Sequence[str], key: str) -> str:
    """A Trans-Encoder pseudo-label choice at `key`: the loss (PAIR_LOSSES), `method.cross.label_rule` (LABEL_RULES),
    `method.bi.label_orders` (LABEL_ORDERS); one of `choices`."""
    if value not in choices:
        raise ConfigError(key, f"must be one of {list(choices)}, got {value!r}")
    return str(value)
