"""experiments/grokking_tickets.ipynb runs top to bottom in short mode (p = 11), prints the
steps-to-95 % table with every variant it trained, and draws both accuracy figures.

Executed the way ``tests/test_notebooks.py`` executes every notebook (its ``_execute``:
nbclient, the ``python3`` kernel, ``JAXTICKET_NOTEBOOK_SHORT=1``, temp dirs under pytest's).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from test_notebooks import _execute

NOTEBOOK = Path(__file__).resolve().parent.parent / "experiments" / "grokking_tickets.ipynb"


def test_grokking_notebook_short_mode(tmp_path: Path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs"
    _execute(nb, NOTEBOOK.parent, tmp_path)
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(
        out.get("text", "") + str(out.get("data", {}).get("text/markdown", "")) for out in outputs
    )
    assert "short mode" in text
    for variant in ("dense", "grokking_ticket", "memorization_ticket", "random", "dense_l2"):
        assert f"| {variant} |" in text, variant
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2
