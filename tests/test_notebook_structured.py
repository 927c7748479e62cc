"""experiments/structured_tickets.ipynb runs top to bottom in short mode: dependency groups,
structured prune, compaction with the same outputs, timing, training of the compact net.

Executed the way ``tests/test_notebooks.py`` executes every notebook (its ``_execute``:
nbclient, the ``python3`` kernel, ``JAXTICKET_NOTEBOOK_SHORT=1``, temp dirs under pytest's).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from test_notebooks import _execute

NOTEBOOK = Path(__file__).resolve().parent.parent / "experiments" / "structured_tickets.ipynb"


def test_structured_notebook_short_mode(tmp_path: Path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs"
    _execute(nb, NOTEBOOK.parent, tmp_path)
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(
        out.get("text", "") + str(out.get("data", {}).get("text/markdown", "")) for out in outputs
    )
    assert "short mode" in text
    assert "same outputs: True" in text
    assert "| conv1/kernel | 16 | True |" in text
    assert "speedup" in text and "| compact ticket (rewound, retrained) |" in text
