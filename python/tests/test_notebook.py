"""examples/quickstart.ipynb runs top to bottom against `polaroid standalone`."""

import os
import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs(standalone, data_root, monkeypatch):
    monkeypatch.setenv("POLAROID_ADDRESS", standalone.address)
    monkeypatch.setenv("POLAROID_DATA_ROOT", str(data_root))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(data_root)}},
    )
    client.execute(env=dict(os.environ))
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
    assert (data_root / "quickstart-revenue.parquet").is_file()
