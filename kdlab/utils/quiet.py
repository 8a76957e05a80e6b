"""What kdlab prints is kdlab's news: the libraries' routine notices are off unless `verbose=true`.

Silenced (each is information about the libraries, not about the run): Lightning's "Seed set", GPU/TPU
availability, litlogger tips, `val_check_interval` and `fit stopped` notices and the PossibleUserWarning about
few batches; transformers' "Loading weights" / "Writing model shards" progress bars and info logs; the
`_pytree LeafSpec` deprecation warning Lightning triggers once per step on torch 2.13; torchmetrics' note that
Pearson/Spearman keep a split's predictions in memory; transformers' LOAD REPORT when its only news is the new task
head kdlab asked for (`routine_load`); and the logger version (`v_num`) in the progress bar. Every other warning and
error of every library still shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# loggers whose INFO records are routine notices (WARNING and above still show)
NOISY_LOGGERS = ("lightning_fabric", "lightning", "pytorch_lightning", "lightning.pytorch")
NOISY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The number of training batches \(\d+\) is smaller than the logging interval.*",
    r".*does not have many workers which may be a bottleneck.*",
    # torchmetrics' note that Pearson/Spearman keep every prediction of the split (kdlab scores whole splits)
    r"Metric `\w+` will save all targets and predictions in the buffer.*",
)


# what the last quiet_libraries() call chose; a process that never called it (a test, a notebook import) is quiet
_VERBOSE = {"on": False}
# the logger transformers' from_pretrained writes its LOAD REPORT to
LOAD_REPORT_LOGGER = "transformers.modeling_utils"


def quiet_libraries(verbose: bool) -> None:
    """Turn the libraries' routine output off (verbose=False) or back on (True: as the libraries set it), also when
    several runs share one process (kdlab.api, notebooks)."""
    _VERBOSE["on"] = verbose
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    warnings.filters[:] = [f for f in warnings.filters if getattr(f[1], "pattern", None) not in NOISY_WARNINGS]
    if not verbose:
        for pattern in NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_warning()
        (hf_logging.enable_progress_bar if verbose else hf_logging.disable_progress_bar)()
    except ImportError:  # transformers is a dependency; kept optional here so this module stays importable alone
        pass


def without_version(metrics: dict[str, Any]) -> dict[str, Any]:
    """A progress bar's metrics without the logger version (`v_num`), which names no quantity of the run."""
    return {name: value for name, value in metrics.items() if name != "v_num"}


class NotesUntilValid:
    """Hold back a logger's records while a config is checked: logged in order once every check passed, dropped when
    one fails, so a config error is the one line a user sees (not a note about the data above it)."""

    def __init__(self, name: str):
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def __enter__(self) -> NotesUntilValid:
        self.propagate, self.logger.propagate = self.logger.propagate, False
        self.handlers, self.logger.handlers = self.logger.handlers, [_Keep(self.records)]
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        self.logger.handlers, self.logger.propagate = self.handlers, self.propagate
        if kind is None:
            for record in self.records:
                self.logger.handle(record)


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def load_report_held() -> Iterator[list[logging.LogRecord]]:
    """Hold back transformers' LOAD REPORT of the `from_pretrained` calls inside: the caller passes the records to
    `release` unless the report is routine. A call that raises releases them first (its error points at the report)."""
    logger, held = logging.getLogger(LOAD_REPORT_LOGGER), _Held()
    logger.addFilter(held)
    try:
        yield held.records
    except BaseException:
        logger.removeFilter(held)
        release(held.records)
        raise
    finally:
        logger.removeFilter(held)


def release(records: list[logging.LogRecord]) -> None:
    """Log held records as they would have been."""
    for record in records:
        logging.getLogger(record.name).handle(record)


def routine_load(model: Any, info: dict[str, Any]) -> bool:
    """Is a load report routine news? Only when `verbose` is off and every weight the checkpoint lacked belongs to the
    task head put on top of its base model (a new classifier), with no unused or mismatched checkpoint weights."""
    prefix = getattr(model, "base_model_prefix", "")
    has_head = bool(prefix) and hasattr(model, prefix)  # a base model itself has no new head: all it lacks is news
    return (
        not _VERBOSE["on"]
        and has_head
        and not info.get("unexpected_keys")
        and not info.get("mismatched_keys")
        and not any(key.startswith(f"{prefix}.") for key in info.get("missing_keys", ()))
    )


class _Held(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.records.append(record)
            return False
        return True
