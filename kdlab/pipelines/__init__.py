"""The runs `kdlab-train` starts, one pipeline per method; `run` writes metrics.json and prints the table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.deploy import benchmark_run
from kdlab.pipelines.common import print_table
from kdlab.presets import record_deviations
from kdlab.registry import method, resolve
from kdlab.resume import is_finished, resume_folder, start_folder
from kdlab.utils.distributed import is_global_zero, ranks_end_with_the_run
from kdlab.utils.quiet import quiet_libraries
from kdlab.utils.run_folder import to_log_files, write_json, write_run_info

log = logging.getLogger(__name__)


def prepare_process(cfg: DictConfig) -> None:
    """Process-wide settings of a run: torch's thread count (`threads`), the libraries' routine output (`verbose`)."""
    import torch

    threads = cfg.get("threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
    quiet_libraries(bool(cfg.get("verbose", False)))


def run(cfg: DictConfig) -> float | None:
    """Run the configured method (or continue it: `resume`, kdlab/resume.py), write metrics.json, print the
    results table, return the optimised metric."""
    prepare_process(cfg)
    run_dir = Path(cfg.paths.output_dir)
    folder = resume_folder(cfg, run_dir)  # a ConfigError here changes nothing on disk
    if folder is not None and folder != run_dir:
        log.info("resume: continuing %s (this attempt's log stays in %s)", folder, run_dir)
        with open_dict(cfg):
            cfg.paths.output_dir = str(folder)
        run_dir = folder
    if folder is not None and is_finished(folder):
        log.info("resume: %s finished earlier; its results are returned, nothing is run again", folder)
        results = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    else:
        if is_global_zero():
            if folder is None:
                write_run_info(run_dir, OmegaConf.to_yaml(cfg, resolve=True))
                start_folder(cfg, run_dir)
                record_deviations(cfg, run_dir)  # a reference preset's points this run changed (kdlab/presets.py)
            else:
                log.info("resume: continuing %s", run_dir)
        with ranks_end_with_the_run():
            results = resolve(method(cfg.method.name).pipeline)(cfg, run_dir)
        if is_global_zero():  # every rank has the same results (kdlab/utils/distributed.py); rank 0 writes them
            results.update(benchmark_run(cfg, run_dir))  # each export's size and speed (method.deploy_benchmark)
            write_json(run_dir / "metrics.json", results)
    if is_global_zero():
        to_log_files(log, logging.INFO, "results:\n" + print_table(results, list(cfg.method.report_metrics)).rstrip())
        log.info("run folder: %s", run_dir)
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None
