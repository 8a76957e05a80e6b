"""The notebooks run from top to bottom on their small default settings and draw their figures; they are stored
without outputs. Executed with nbclient, outputs and caches in a temporary folder.

The notebooks share one kernel, started in notebooks/ as Jupyter starts one: before each notebook its namespace
is emptied (%reset -f) and the kernel goes back to notebooks/, so a notebook sees only what it defines; only the
modules stay imported, which saves the ~9 s import of Lightning and transformers per notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import kdlab_folders
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# figures each notebook must show (image/png outputs); hinton_kd before sweeps: the sweep reuses its teacher
EXPECTED_FIGURES = {"hinton_kd": 2, "sweeps": 2, "multilingual": 2, "trans_encoder": 2, "bam": 2}


def test_every_notebook_is_listed_and_stored_without_outputs():
    found = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(EXPECTED_FIGURES)
    for name in found:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}.ipynb is stored with outputs"


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Outputs and caches of every notebook under one temporary folder (shared: later notebooks reuse teachers)."""
    root = tmp_path_factory.mktemp("notebooks")
    with kdlab_folders(root, HF_HUB_OFFLINE="1", WANDB_MODE="disabled") as patch:
        patch.delenv("KDLAB_DATA_DIR", raising=False)  # the small default settings, never the real-data experiments
        yield root


@pytest.fixture(scope="module")
def kernel(notebook_env):
    """One python3 kernel (this interpreter's) started in notebooks/ with the environment above."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(NOTEBOOKS))
    yield manager
    manager.shutdown_kernel(now=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(EXPECTED_FIGURES))
def test_notebook_runs_and_draws(name, notebook_env, kernel):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    fresh = new_code_cell(f"%reset -f\nimport os as _os\n_os.chdir({str(NOTEBOOKS)!r})\ndel _os")
    nb.cells.insert(0, fresh)  # as in a new kernel: empty namespace, started in notebooks/
    client = NotebookClient(nb, km=kernel, timeout=240)
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) == EXPECTED_FIGURES[name], f"{name}: {len(figures)} figures shown"
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream" and out.name == "stdout")
    assert "embedded toy data" in text

    # it trained through kdlab.api into KDLAB_OUTPUT_DIR: a finished run (or sweep job) folder of its method
    kind = "sweeps" if name == "sweeps" else "runs"
    finished = [
        p.parent for p in (notebook_env / "outputs" / kind).rglob("metrics.json") if (p.parent / "config.yaml").exists()
    ]
    methods = {OmegaConf.load(folder / "config.yaml").method.name for folder in finished}
    assert {"hinton_kd": "hinton", "sweeps": "hinton"}.get(name, name) in methods
