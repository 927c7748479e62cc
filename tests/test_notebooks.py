"""The notebooks in experiments/: each one runs top to bottom, and none is committed with outputs.

Every ``experiments/*.ipynb`` is picked up by the glob. Each is executed with nbclient in a
``python3`` kernel, in short mode (``JAXTICKET_NOTEBOOK_SHORT=1`` in the kernel's
environment; a notebook reads it in one cell and shrinks its run), from its own folder and
with its temp directory inside pytest's. ``python3`` is ipykernel's bundled kernel spec, which
jupyter_client starts with this interpreter (``sys.executable``), so the kernel sees the same
environment as the tests: no ``ipykernel install`` needed (one kernel test checks it).

Strip a notebook's outputs before committing (in place)::

    python tests/test_notebooks.py experiments/*.ipynb
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "experiments").glob("*.ipynb"))
KERNEL = "python3"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
CELL_TIMEOUT_S = 300  # one cell, short mode; the whole short run takes well under a minute


def _kernel_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["JAXTICKET_NOTEBOOK_SHORT"] = "1"
    # Run directories under tempfile.gettempdir() land in pytest's tmp_path.
    for name in ("TMPDIR", "TEMP", "TMP"):
        env[name] = str(tmp_path)
    env["MPLBACKEND"] = "Agg"
    # Compiling dominates a short run: skip XLA's backend optimizations (about a third of
    # the compile time; the short runs' numbers are not compared with anything recorded).
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    return env


def _execute(nb, cwd: Path, tmp_path: Path):
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute(env=_kernel_env(tmp_path))


def _check_grokking(text: str, images: int) -> None:
    # The steps-to-95 % table lists every variant it trained; both accuracy figures drawn.
    for variant in ("dense", "grokking_ticket", "memorization_ticket", "random", "dense_l2"):
        assert f"| {variant} |" in text, variant
    assert images == 2


def _check_structured(text: str, images: int) -> None:
    # Groups, a structured prune, compaction with the same outputs, timing, retraining.
    assert "same outputs: True" in text
    assert "| conv1/kernel | 16 | True |" in text
    assert "speedup" in text and "| compact ticket (rewound, retrained) |" in text


# What a notebook's short run must print, beyond running: (its printed text, its images).
OUTPUT_CHECKS = {
    "grokking_tickets.ipynb": _check_grokking,
    "structured_tickets.ipynb": _check_structured,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    error = None
    try:
        _execute(nb, path.parent, tmp_path)
    except nbclient.exceptions.CellExecutionError as e:
        # The message holds the failing cell's source and its traceback (colours removed).
        failed = [
            i
            for i, cell in enumerate(nb.cells)
            if any(out.get("output_type") == "error" for out in cell.get("outputs", ()))
        ]
        where = f"cell {failed[0]} (0-based, markdown included)" if failed else "a cell"
        error = f"{where} failed\n{_ANSI.sub('', str(e))}"
    except nbclient.exceptions.CellTimeoutError as e:
        error = f"a cell ran past {CELL_TIMEOUT_S} s\n{e}"
    if error is not None:  # outside the except: no chained, coloured traceback
        pytest.fail(f"{path.relative_to(ROOT)}: {error}", pytrace=False)
    if path.name in OUTPUT_CHECKS:
        outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
        text = "".join(
            out.get("text", "") + str(out.get("data", {}).get("text/markdown", ""))
            for out in outputs
        )
        assert "short mode" in text
        images = sum("image/png" in out.get("data", {}) for out in outputs)
        OUTPUT_CHECKS[path.name](text, images)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebook found under experiments/"


def _all_notebooks() -> list[Path]:
    skip = {".git", ".venv", "build", "runs", "node_modules", ".ipynb_checkpoints"}
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".ipynb")]
    return sorted(found)


def stripped(nb):
    """``nb`` without outputs, execution counts and timings (in place; returned)."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # nbclient's per-cell timings
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return nb


@pytest.mark.parametrize(
    "path", _all_notebooks(), ids=[str(p.relative_to(ROOT)) for p in _all_notebooks()]
)
def test_notebook_outputs_stripped(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.relative_to(ROOT)}: code cells {dirty} hold outputs or execution counts; "
        f"strip them: python tests/test_notebooks.py {path.relative_to(ROOT)}"
    )


def test_kernel_uses_this_interpreter(tmp_path: Path):
    # The notebooks must see the package and the packages installed with it.
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable); print(sys.prefix)")]
    )
    _execute(nb, tmp_path, tmp_path)
    text = "".join(out.get("text", "") for out in nb.cells[0].outputs)
    executable, prefix = text.split()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), text
    assert Path(executable).resolve() == Path(sys.executable).resolve(), text


if __name__ == "__main__":
    # python tests/test_notebooks.py NOTEBOOK...: strips outputs in place.
    for name in sys.argv[1:]:
        nbformat.write(stripped(nbformat.read(name, as_version=4)), name)
