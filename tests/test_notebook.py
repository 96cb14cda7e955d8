"""notebooks/quickstart.ipynb runs top to bottom (2 epochs)."""

import os
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    notebook = nbformat.read(os.path.join(REPO, "notebooks", "quickstart.ipynb"), as_version=4)
    # A kernel spec pointing at this interpreter, so the notebook runs in the
    # project's virtualenv whatever kernels are (not) installed globally.
    spec_dir = tmp_path / "kernels" / "tfrec_dyn"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], '
        '"display_name": "tfrec_dyn", "language": "python"}' % sys.executable)
    kernel = KernelManager(kernel_name="tfrec_dyn",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    env = dict(os.environ, QUICKSTART_EPOCHS="2", TF_USE_LEGACY_KERAS="1")
    client = NotebookClient(notebook, km=kernel, timeout=600, resources={"metadata": {"path": REPO}})
    client.execute(env=env)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "recommended:" in text and "(19" in text  # MovieLens titles carry a year
    assert "HR@10" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
