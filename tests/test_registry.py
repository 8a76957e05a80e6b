"""The method registry (kdlab.registry): one table the config check, the runner, the plots, the report and the
error messages read."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import kdlab_folders

from kdlab import registry
from kdlab.errors import ConfigError


def test_every_registered_method_names_real_functions_and_a_composable_example():
    from kdlab.api import compose

    assert list(registry.METHODS) == ["finetune", "hinton", "multilingual", "trans_encoder", "bam"]
    for entry in registry.METHODS.values():
        for ref in (entry.check, entry.pipeline, entry.figures):
            assert callable(registry.resolve(ref)), ref
        cfg = compose(*entry.example.split(), f"method={entry.name}")
        registry.check_data_fits(entry, cfg)  # the example composes data this method can use


def test_an_unknown_method_lists_the_choices_from_the_table():
    with pytest.raises(ConfigError) as err:
        registry.method("distil", key="method.name")
    assert str(err.value) == f"method.name: must be one of {list(registry.METHODS)}, got 'distil'"


@pytest.mark.parametrize(
    "name, key, example",
    [
        ("bam", "data.tasks", "experiment=bam_toy"),
        ("multilingual", "data.sources", "experiment=multilingual_toy"),
        ("trans_encoder", "data.pair_source", "experiment=trans_encoder_toy"),
    ],
)
def test_a_method_alone_points_at_the_experiment_that_gives_it_data(name, key, example):
    from kdlab.api import compose
    from kdlab.config import validate

    with pytest.raises(ConfigError) as err:
        validate(compose(f"method={name}"))
    assert str(err.value) == (
        f"{key}: is required: data=reviews is not data for method={name} "
        f"(start from {example}, or choose a data config that sets {key})"
    )


def check_echo(cfg) -> None:
    if cfg.loss.temperature > 100:
        raise ConfigError("loss.temperature", "echo refuses it")


def run_echo(cfg, run_dir) -> dict[str, float]:
    return {"student/val/acc": float(cfg.loss.temperature)}


def test_a_method_added_by_one_registration_line_is_checked_and_run_through_the_table(tmp_path):
    from kdlab.api import compose, train
    from kdlab.config import validate

    module = __name__ if __name__ in sys.modules else "test_registry"
    entry = registry.register_method(
        registry.Method(
            "echo",
            "a test method",
            check=f"{module}:check_echo",
            pipeline=f"{module}:run_echo",
            figures="kdlab.plots:supervised_figures",
            keys=("loss.temperature",),
            example="method=hinton",
            data_key="data.task",
        )
    )
    try:
        with pytest.raises(ConfigError, match="loss.temperature: echo refuses it"):
            validate(compose("method.name=echo", "loss.temperature=101"))
        with kdlab_folders(tmp_path):
            run = train("method.name=echo", "loss.temperature=3", "method.optimized_role=student")
        assert json.loads((run.path / "metrics.json").read_text()) == {"student/val/acc": 3.0}
        assert run.metrics["student/val/acc"] == 3.0
    finally:
        del registry.METHODS[entry.name]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_method(registry.METHODS["hinton"])
