"""`kdlab-train` (also `python -m kdlab.train`): compose the config, check it, run the method.

kdlab-train                              # embedded default: teacher, then KD student
kdlab-train --cfg job                    # print the composed config
kdlab-train experiment=hinton_sst2       # a recorded experiment
kdlab-train -m loss.temperature=1,2,4    # a Hydra multirun sweep
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from kdlab.app import guarded, refuse_bad_overrides, refuse_finished_run_dir
from kdlab.resolvers import conf_dir, register_resolvers

register_resolvers()


def train(cfg: DictConfig) -> float | None:
    """Check the config, then run the method; returns `optimized_metric` for sweepers."""
    from kdlab.config import validate

    validate(cfg)
    from kdlab.pipelines import run  # heavy imports (torch, Lightning, transformers) start here

    return run(cfg)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return guarded(train, cfg)


def main() -> float | None:
    """`kdlab-train`: refuse a finished run folder before Hydra writes into it, and overrides that do not compose
    (one line instead of Hydra's report), then compose and run."""
    from kdlab.help import print_help_first, train_help

    print_help_first(sys.argv[1:], train_help())
    refuse_finished_run_dir(sys.argv[1:])
    refuse_bad_overrides(sys.argv[1:])
    return _hydra_main()


if __name__ == "__main__":
    main()
