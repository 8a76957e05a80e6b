"""`kdlab-eval`: evaluate a trained model (HF folder or kdlab .ckpt) on the configured data splits.

    kdlab-eval model_path=outputs/runs/<run>/student/model data=reviews
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdlab.app import conf_dir, guarded, register_resolvers

register_resolvers()


def evaluate_model(cfg: DictConfig) -> dict[str, float]:
    """val/test metrics of `cfg.model_path` on `cfg.data`, printed and written to <run>/metrics.json."""
    from kdlab.config import validate_data

    validate_data(cfg)
    bad = [split for split in cfg.splits if split not in ("validation", "test")]
    if bad:
        from kdlab.errors import ConfigError

        raise ConfigError("splits", f"must be a list of validation and/or test, got {list(cfg.splits)}")
    from pathlib import Path

    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from kdlab.data.text import TextDataModule
    from kdlab.methods.finetune import Finetune
    from kdlab.models.backbone import load_trained
    from kdlab.utils.run_folder import write_json

    model, tokenizer = load_trained(cfg.model_path, key="model_path")
    datamodule = TextDataModule(cfg.data, tokenizer=tokenizer)
    if int(model.config.num_labels) != datamodule.num_labels:
        from kdlab.errors import ConfigError

        raise ConfigError("model_path", f"the model has {model.config.num_labels} labels but data.labels gives {datamodule.num_labels}")
    module = Finetune(model, tokenizer, datamodule.task, datamodule.num_labels, {"lr": 0.0}, list(cfg.data.metrics))
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True))
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = {"validation": trainer.validate, "test": trainer.test}[split]
        for results in run(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in results.items()})
    write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    for name, value in sorted(metrics.items()):
        print(f"{name}\t{value:.4f}")
    return metrics


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return guarded(evaluate_model, cfg)


if __name__ == "__main__":
    main()
