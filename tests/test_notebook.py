"""notebooks/quickstart.ipynb runs top to bottom (2 epochs) in this interpreter."""

import json
import os
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def venv_kernel(tmp_path, name="python3"):
    """A KernelManager whose kernel runs `sys.executable` (the project's venv):
    a private kernel spec, so a python3 spec installed globally or per-user
    (possibly another Python without tfrec_dyn) is never picked up."""
    spec_dir = tmp_path / "kernels" / name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python 3 ({sys.prefix})", "language": "python"}))
    return KernelManager(kernel_name=name,
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))


def cell_text(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def code_cell(notebook, snippet):
    cells = [c for c in notebook.cells if c.cell_type == "code" and snippet in c.source]
    assert len(cells) == 1, f"expected one code cell containing {snippet!r}"
    return cells[0]


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    from tfrec_dyn.data import item_titles

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata.kernelspec.name == "python3"
    # The committed notebook carries no outputs.
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")

    env = dict(os.environ, QUICKSTART_EPOCHS="2", TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               TFREC_DYN_CACHE=str(tmp_path / "cache"))
    env.pop("MPLBACKEND", None)  # the notebook's own `%matplotlib inline` must produce the image
    client = NotebookClient(notebook, km=venv_kernel(tmp_path), timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": REPO}})
    client.execute(env=env)  # raises CellExecutionError on the first failing cell

    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]

    assert "Interactions(users=943, interactions=100000" in cell_text(code_cell(notebook, "load_dataset("))
    assert "trained 2 epochs" in cell_text(code_cell(notebook, "train(config"))
    metrics = cell_text(code_cell(notebook, "result.metrics"))
    assert "full: HR@10" in metrics and "sampled: HR@10" in metrics and "NDCG@10" in metrics

    # Ten recommendations, each printed as "score  title" with a real MovieLens title.
    recommended = cell_text(code_cell(notebook, "model.recommend")).split("recommended:\n", 1)[1].splitlines()
    titles = set(item_titles("ml-100k").values())
    assert len(recommended) == 10
    assert all(line.strip().split(None, 1)[1] in titles for line in recommended), recommended

    plot = code_cell(notebook, "plt.plot")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)
