"""The runs `kdlab-train` starts, one pipeline per method; `run` writes metrics.json and prints the table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdlab.pipelines.common import print_table
from kdlab.utils.distributed import is_global_zero
from kdlab.utils.run_folder import write_json, write_run_info

log = logging.getLogger(__name__)


def _pipeline(name: str) -> Callable[[DictConfig, Path], dict[str, float]]:
    if name == "trans_encoder":
        from kdlab.pipelines.trans_encoder import run_trans_encoder

        return run_trans_encoder
    if name == "bam":
        from kdlab.pipelines.bam import run_bam

        return run_bam
    if name == "multilingual":
        from kdlab.pipelines.multilingual import run_multilingual

        return run_multilingual
    from kdlab.pipelines.supervised import run_finetune, run_hinton

    return {"finetune": run_finetune, "hinton": run_hinton}[name]


def run(cfg: DictConfig) -> float | None:
    """Run the configured method, write metrics.json, print the results table, return the optimised metric."""
    run_dir = Path(cfg.paths.output_dir)
    if is_global_zero():
        write_run_info(run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    results = _pipeline(cfg.method.name)(cfg, run_dir)
    if is_global_zero():  # every rank has the same results (kdlab/utils/distributed.py); rank 0 writes them
        write_json(run_dir / "metrics.json", results)
        print_table(results, list(cfg.method.report_metrics))
        log.info("run folder: %s", run_dir)
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None
