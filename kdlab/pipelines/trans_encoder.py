"""Trans-Encoder pipeline (Liu et al., ICLR 2022): bi-encoder ↔ cross-encoder self-distillation in cycles.

    start: B₀ = the configured bi-encoder(s) (optionally after a SimCSE warm-up), evaluated
    cycle c = 1..C:
      1. bi_labels     ŷ = mean over bi-encoders of clip(cos(B(a), B(b)), 0, 1)  (method.cross.label_rule: clipped;
                       raw: the cosines as they are, as the reference code)
      2. cross_train   each cross-encoder (fresh from its base each cycle by default) on both orders, loss bce
      3. cross_labels  ỹ = mean over cross-encoders of ½(σ(C(a, b)) + σ(C(b, a)))  (method.bi.label_orders: both;
                       one: σ(C(a, b)), as the reference code)
      4. bi_train      each bi-encoder (re-initialised from B₀ each cycle by default) on ỹ, loss mse
    end: per encoder type, the (cycle, model) with the best dev Spearman is copied to best/ and reported.
Each stage cuts its texts to method.<stage>.max_length tokens (the bi-encoder's also when it labels and when it is
exported) and keeps its best checkpoint by dev Spearman, checked once per epoch or, with method.<stage>.val_check_steps,
also every that many batches. conf/method/trans_encoder_reference.yaml sets all of these as amzn/trans-encoder does
(docs/reference_presets.md).

With N bi- and N cross-encoders (`model.bi_encoders`, `model.cross_encoders`) this is the mutual
variant. Run folder: trans_encoder.json (pair source, losses, cycle settings), start/bi*/ (B₀),
cycle<c>/pseudo_labels_{bi,cross}.tsv, cycle<c>/{bi,cross}*/ (checkpoints, model, metrics.json),
best/{bi,cross}/, and progress.json: the finished steps. Started again on the same folder
(`hydra.run.dir=<run> resume=auto`) with the same config, a run skips every finished step and reloads its
outputs, so it continues from the first unfinished step.

On several processes (`hardware=ddp_cpu|multi_gpu|…`) every rank runs this pipeline: the training and
evaluation stages are DDP stages; pseudo-labels are computed in shares (rank r scores pairs[r::N]) and
gathered, so every rank trains on the same labels; rank 0 writes the run's files (start/, the label TSVs,
progress.json, best/) and the others wait at a barrier before reading them.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from kdlab.data.pairs import PairData
from kdlab.errors import ConfigError, DataError
from kdlab.losses.pseudo_labels import cosine_labels
from kdlab.methods.trans_encoder import BiEncoderStage, CrossEncoderStage, SimCSEStage
from kdlab.methods.trans_encoder_checks import check_from_bi_start
from kdlab.models.backbone import build_model
from kdlab.models.bi_encoder import pair_cosines
from kdlab.models.cross_encoder import check_pair_tokenizer, cross_scores
from kdlab.models.hf import load_pretrained
from kdlab.models.sentence_encoder import SentenceEncoder, copy_encoder, load_sentence_encoder, spec_tokenizer
from kdlab.pipelines.common import container, prefixed, resolve_tokenizer, seed
from kdlab.pipelines.teachers import processes_started
from kdlab.resume import config_hash
from kdlab.runner import evaluate, fit_stage
from kdlab.utils.atomic import save_atomically
from kdlab.utils.distributed import computed_in_shares, is_global_zero, wait_for_all
from kdlab.utils.run_folder import write_json, write_text

log = logging.getLogger(__name__)
STEPS = ("bi_labels", "cross_train", "cross_labels", "bi_train")


class Progress:
    """progress.json: the config hash and the finished steps with their results; written atomically after each step."""

    def __init__(self, run_dir: Path, config_hash: str):
        self.path = run_dir / "progress.json"
        self.state: dict[str, Any] = {"config_hash": config_hash, "done": [], "results": {}}
        if self.path.exists():
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if state.get("config_hash") != config_hash:
                raise ConfigError(
                    "hydra.run.dir",
                    f"{run_dir} holds a Trans-Encoder run with a different config; resume it with the same "
                    "overrides, or start a new run folder",
                )
            self.state = state
            if state["done"]:
                log.info("resuming %s: finished steps %s", run_dir, ", ".join(state["done"]))

    def done(self, step: str) -> bool:
        return step in self.state["done"]

    @property
    def results(self) -> dict[str, float]:
        return self.state["results"]

    def finish(self, step: str, results: dict[str, float] | None = None) -> None:
        """Record a finished step; rank 0 writes the file, and every rank waits until it (and the step's files) exist."""
        self.state["results"].update(results or {})
        self.state["done"].append(step)
        if is_global_zero():
            write_json(self.path, self.state)
        wait_for_all()


def _names(kind: str, count: int) -> list[str]:
    return [kind] if count == 1 else [f"{kind}{i}" for i in range(count)]


def _clean(text: str) -> str:
    """A sentence on one TSV field: runs of whitespace (tabs, newlines) become one space."""
    return " ".join(text.split())


def write_labels(
    path: Path, pairs: list[tuple[str, str]], labels: torch.Tensor, per_model: list[torch.Tensor], names: list[str]
) -> None:
    """Pseudo-labels as a TSV a person can read: sentence1, sentence2, label (the mean), one column per model."""
    lines = ["\t".join(["sentence1", "sentence2", "label", *names])]
    for row, (a, b) in enumerate(pairs):
        lines.append(
            "\t".join([_clean(a), _clean(b), repr(float(labels[row])), *(repr(float(m[row])) for m in per_model)])
        )
    write_text(path, "\n".join(lines) + "\n")


def read_labels(path: Path, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """The `label` column of a pseudo-label TSV written by `write_labels` for these pairs."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    if len(rows) != len(pairs) or any((r[0], r[1]) != (_clean(a), _clean(b)) for r, (a, b) in zip(rows, pairs)):
        raise DataError(path, "pseudo-labels do not match this run's pairs; start a new run folder")
    return torch.tensor([float(r[2]) for r in rows])


class TransEncoderRun:
    """One Trans-Encoder run: its data, models, progress and the stage helpers the cycle calls."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        self.method = cfg.method
        self.data = PairData(cfg.data)
        self.pairs = self.data.pairs()
        self.max_length = int(cfg.method.bi.max_length)  # the bi-encoder's (and SimCSE's): training, labels, export
        self.cross_max_length = int(cfg.method.cross.max_length)
        self.label_batch = int(cfg.data.eval_batch_size)
        self.bi_specs = [container(s) for s in cfg.model.bi_encoders]
        self.cross_specs = [container(s) for s in cfg.model.cross_encoders]
        self.bi_names = _names("bi", len(self.bi_specs))
        self.cross_names = _names("cross", len(self.cross_specs))
        self.progress = Progress(run_dir, config_hash(cfg))
        self.starts: list[tuple[SentenceEncoder, Any]] = []
        self.cross_tokenizers: list[Any] = []

    def set_starts(self, starts: list[tuple[SentenceEncoder, Any]]) -> None:
        """The starting bi-encoders B₀ (and, through them, the tokenizers of cross-encoders built `from_bi_start`)."""
        self.starts = starts
        self.cross_tokenizers = []
        for index, spec in enumerate(self.cross_specs):
            origin = spec.get("from_bi_start")
            check_from_bi_start(origin, len(starts), f"model.cross_encoders[{index}].from_bi_start")
            tokenizer = (
                starts[int(origin)][1]
                if origin is not None
                else resolve_tokenizer(self.cfg, spec, f"model.cross_encoders[{index}]", self.data.sentences)
            )
            check_pair_tokenizer(tokenizer, f"model.cross_encoders[{index}].tokenizer")
            self.cross_tokenizers.append(tokenizer)

    # --- models -----------------------------------------------------------------------------------
    def raw_bi_encoder(self, index: int) -> tuple[SentenceEncoder, Any]:
        spec, key = self.bi_specs[index], f"model.bi_encoders[{index}]"
        seed(self.cfg, index)
        if spec.get("name_or_path"):  # a pretrained encoder, then its folder's tokenizer
            return build_model(spec, None, [], None, key=key, method="trans_encoder"), spec_tokenizer(spec)
        tokenizer = resolve_tokenizer(self.cfg, spec, key, self.data.sentences)
        return build_model(spec, None, [], tokenizer, key=key, method="trans_encoder"), tokenizer

    def fresh_cross_encoder(self, index: int) -> torch.nn.Module:
        """A cross-encoder as at the start: from its spec, or from the starting bi-encoder's weights (`from_bi_start`,
        under that bi-encoder's trust_remote_code: `_cross_trust`)."""
        seed(self.cfg, index)
        spec, key = self.cross_specs[index], f"model.cross_encoders[{index}]"
        origin = None
        if spec.get("from_bi_start") is not None:
            origin = self.starts[int(spec["from_bi_start"])][0]
            spec = {**spec, "trust_remote_code": self._cross_trust(index)}
        return build_model(spec, "regression", [], self.cross_tokenizers[index], origin, key, method="trans_encoder")

    def _cross_trust(self, index: int) -> bool:
        """A cross-encoder runs its model's own code if the spec it comes from allows it (its bi-encoder's for `from_bi_start`)."""
        spec = self.cross_specs[index]
        origin = spec.get("from_bi_start")
        return bool((self.bi_specs[int(origin)] if origin is not None else spec).get("trust_remote_code", False))

    def load_bi(self, index: int, folder: Path) -> tuple[SentenceEncoder, Any]:
        """A bi-encoder this run exported, under its spec's trust_remote_code."""
        trusted = bool(self.bi_specs[index].get("trust_remote_code", False))
        return load_sentence_encoder({"name_or_path": str(folder), "trust_remote_code": trusted}, str(folder))

    def load_cross(self, index: int, folder: Path) -> torch.nn.Module:
        """A cross-encoder this run exported, under its spec's trust_remote_code (`_cross_trust`)."""
        from transformers import AutoModelForSequenceClassification

        spec = {"name_or_path": str(folder), "trust_remote_code": self._cross_trust(index)}
        return load_pretrained(AutoModelForSequenceClassification, spec, str(folder))

    # --- stages -----------------------------------------------------------------------------------
    def _optimizer(self, stage: DictConfig) -> dict[str, Any]:
        return container(stage.optimizer)

    def _stage_settings(self, name: str) -> dict[str, Any]:
        """A stage module's settings from method.<name>: its optimizer, loss (and the loss's key), validation steps."""
        stage = self.method[name]
        steps = stage.get("val_check_steps")
        return {
            "optimizer": self._optimizer(stage),
            "loss": str(stage.loss),
            "loss_key": f"method.{name}.loss",
            "val_check_steps": None if steps is None else int(steps),
        }

    def bi_module(self, model: SentenceEncoder, tokenizer: Any) -> BiEncoderStage:
        return BiEncoderStage(model, tokenizer, **self._stage_settings("bi"), max_length=self.max_length)

    def train_bi(self, stage: str, model: SentenceEncoder, tokenizer: Any, labels: torch.Tensor) -> dict[str, float]:
        datamodule = self.data.stage("bi", tokenizer, int(self.method.bi.batch_size), labels, self.max_length)
        return fit_stage(self.cfg, stage, self.bi_module(model, tokenizer), datamodule, self.method.bi, self.run_dir)

    def train_cross(self, stage: str, model: torch.nn.Module, tokenizer: Any, labels: torch.Tensor) -> dict[str, float]:
        module = CrossEncoderStage(model, tokenizer, **self._stage_settings("cross"))
        batch = int(self.method.cross.batch_size)
        datamodule = self.data.stage("cross", tokenizer, batch, labels, self.cross_max_length)
        return fit_stage(self.cfg, stage, module, datamodule, self.method.cross, self.run_dir)

    def simcse(self, stage: str, model: SentenceEncoder, tokenizer: Any) -> dict[str, float]:
        spec = self.method.simcse
        module = SimCSEStage(model, tokenizer, self._optimizer(spec), float(spec.temperature), self.max_length)
        datamodule = self.data.stage("simcse", tokenizer, int(spec.batch_size), None, self.max_length)
        return fit_stage(self.cfg, stage, module, datamodule, spec, self.run_dir)

    def evaluate_bi(self, stage: str, model: SentenceEncoder, tokenizer: Any) -> dict[str, float]:
        datamodule = self.data.stage("bi", tokenizer, 1, None, self.max_length)
        return evaluate(self.cfg, self.bi_module(model, tokenizer), datamodule, self.run_dir / stage)

    def train_models(
        self,
        step: str,
        names: list[str],
        load: Callable[[int, Path], Any],
        train: Callable[[int, str], tuple[Any, dict[str, float]]],
    ) -> list[Any]:
        """Train each model of a step (`train(index, stage)` → model, metrics), or, when the step is finished,
        `load(index, folder)` what each exported; the step's metrics go to progress.json as `<name>_<cycle>/…`."""
        tag = step.split("/", 1)[0]
        models, results = [], {}
        for index, name in enumerate(names):
            stage = f"{tag}/{name}"
            if self.progress.done(step):
                models.append(load(index, self.run_dir / stage / "model"))
                continue
            model, metrics = train(index, stage)
            models.append(model)
            results.update(prefixed(f"{name}_{tag}", metrics))
        if not self.progress.done(step):
            self.progress.finish(step, results)
        return models

    # --- labelling --------------------------------------------------------------------------------
    def label(
        self,
        step: str,
        path: Path,
        names: list[str],
        score: Callable[[int, list[tuple[str, str]]], torch.Tensor],
        combine: Callable[[list[torch.Tensor]], torch.Tensor],
    ) -> torch.Tensor:
        """`combine` of the models' scores `score(model index, pairs)` per pair, the pairs shared out across processes;
        written to `path` with each model's scores (or read back when `step` is finished)."""
        if self.progress.done(step):
            return read_labels(path, self.pairs)
        # a run resumed after `start` labels before any Trainer has started the other processes: start them, so
        # each labels its share (otherwise every process would label every pair)
        processes_started(self.cfg)
        per_model = [computed_in_shares(lambda pairs, i=i: score(i, pairs), self.pairs) for i in range(len(names))]
        labels = combine(per_model)
        if is_global_zero():
            write_labels(path, self.pairs, labels, per_model, names)
        log.info(
            "%s: %d pseudo-labels, mean %.3f, std %.3f -> %s", step, len(labels), labels.mean(), labels.std(), path
        )
        self.progress.finish(step)
        return labels


def run_trans_encoder(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Start bi-encoder(s) → C cycles of bi→cross and cross→bi distillation → the best encoders of each type."""
    run = TransEncoderRun(cfg, run_dir)
    method, progress = cfg.method, run.progress
    info = {
        "pairs": run.data.info,
        "losses": {"bi_to_cross": str(method.cross.loss), "cross_to_bi": str(method.bi.loss)},
        "labels": {"bi_to_cross": str(method.cross.label_rule), "cross_to_bi_orders": str(method.bi.label_orders)},
        "max_length": {"bi": run.max_length, "cross": run.cross_max_length},
        "val_check_steps": {"cross": method.cross.val_check_steps, "bi": method.bi.val_check_steps},
        "reinit": {"cross": bool(method.cross.reinit), "bi": bool(method.bi.reinit)},
        "cycles": int(method.cycles),
        "bi_encoders": run.bi_names,
        "cross_encoders": run.cross_names,
        "simcse_warmup": bool(method.simcse.enabled),
    }
    if is_global_zero():
        write_json(run_dir / "trans_encoder.json", info)
    log.info(
        "trans_encoder: %d pairs (%s), losses bi->cross %s, cross->bi %s",
        len(run.pairs),
        run.data.info["pair_source"],
        method.cross.loss,
        method.bi.loss,
    )

    # start: B₀ per bi-encoder, kept as a sentence-transformers folder so every cycle (and a resumed run) starts from it
    if not progress.done("start"):
        results: dict[str, float] = {}
        for index, name in enumerate(run.bi_names):
            model, tokenizer = run.raw_bi_encoder(index)
            if method.simcse.enabled:
                run.simcse(f"simcse/{name}", model, tokenizer)
            if is_global_zero():
                model.save_sentence_transformers(run_dir / "start" / name, tokenizer, run.max_length)
            results.update(prefixed(f"{name}_start", run.evaluate_bi(f"start/{name}_eval", model, tokenizer)))
        progress.finish("start", results)
    starts = [run.load_bi(index, run_dir / "start" / name) for index, name in enumerate(run.bi_names)]
    run.set_starts(starts)
    if is_global_zero():  # the pooling each starting bi-encoder has (a spec's null: its folder's own)
        write_json(run_dir / "trans_encoder.json", {**info, "bi_pooling": [model.pooling for model, _ in starts]})
    bis = [(copy_encoder(model, None), tokenizer) for model, tokenizer in starts]
    crosses: list[Any] = [None] * len(run.cross_names)

    for cycle in range(1, int(method.cycles) + 1):
        folder = run_dir / f"cycle{cycle}"
        folder.mkdir(parents=True, exist_ok=True)
        tag = f"cycle{cycle}"

        def bi_score(i: int, pairs: list[tuple[str, str]], bis=bis) -> torch.Tensor:
            return pair_cosines(bis[i][0], bis[i][1], pairs, run.max_length, run.label_batch)

        def bi_combine(per_model: list[torch.Tensor]) -> torch.Tensor:
            return cosine_labels(per_model, str(method.cross.label_rule), "method.cross.label_rule")

        bi_labels = run.label(f"{tag}/bi_labels", folder / "pseudo_labels_bi.tsv", run.bi_names, bi_score, bi_combine)

        def train_cross(
            i: int, stage: str, labels: torch.Tensor = bi_labels
        ) -> tuple[torch.nn.Module, dict[str, float]]:
            model = run.fresh_cross_encoder(i) if method.cross.reinit or crosses[i] is None else crosses[i]
            return model, run.train_cross(stage, model, run.cross_tokenizers[i], labels)

        crosses = run.train_models(f"{tag}/cross_train", run.cross_names, run.load_cross, train_cross)

        def cross_score(i: int, pairs: list[tuple[str, str]]) -> torch.Tensor:
            both = str(method.bi.label_orders) == "both"
            tokenizer = run.cross_tokenizers[i]
            return cross_scores(crosses[i], tokenizer, pairs, run.cross_max_length, run.label_batch, both_orders=both)

        def cross_combine(per_model: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(per_model).mean(dim=0)

        cross_labels = run.label(
            f"{tag}/cross_labels", folder / "pseudo_labels_cross.tsv", run.cross_names, cross_score, cross_combine
        )

        def train_bi(
            i: int, stage: str, labels: torch.Tensor = cross_labels
        ) -> tuple[tuple[SentenceEncoder, Any], dict[str, float]]:
            model = copy_encoder(starts[i][0], None) if method.bi.reinit else bis[i][0]
            return (model, bis[i][1]), run.train_bi(stage, model, bis[i][1], labels)

        bis = run.train_models(f"{tag}/bi_train", run.bi_names, run.load_bi, train_bi)

    results = dict(progress.results)
    results.update(select_best(run_dir, results, "bi", run.bi_names, int(method.cycles)))
    results.update(select_best(run_dir, results, "cross", run.cross_names, int(method.cycles)))
    return results


def select_best(run_dir: Path, results: dict[str, float], kind: str, names: list[str], cycles: int) -> dict[str, float]:
    """Copy the (cycle, model) of this encoder type with the best dev Spearman to best/<kind>; its metrics as `<kind>/…`."""
    candidates = [
        (results[f"{name}_cycle{c}/val/spearman"], c, name)
        for c in range(1, cycles + 1)
        for name in names
        if f"{name}_cycle{c}/val/spearman" in results
    ]
    if not candidates:
        return {}
    score, cycle, name = max(candidates, key=lambda item: (item[0] == item[0], item[0]))  # NaN (collapsed) ranks last
    source = run_dir / f"cycle{cycle}" / name / "model"
    if is_global_zero():
        save_atomically(run_dir / "best" / kind, lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True))
    log.info("best %s: %s of cycle %d (dev Spearman %.2f) -> %s", kind, name, cycle, score, run_dir / "best" / kind)
    prefix = f"{name}_cycle{cycle}/"
    best = {f"{kind}/{k[len(prefix) :]}": v for k, v in results.items() if k.startswith(prefix)}
    best[f"{kind}/best_cycle"] = float(cycle)
    return best
