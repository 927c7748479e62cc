"""The one tiny lottery run that tests/test_lottery.py, test_cli.py and test_resume.py share.

The first caller of a session trains it (in a folder every pytest-xdist worker shares,
behind a file lock); later callers resume the finished run, which only loads it. The
modules also share a persistent XLA cache, so new processes reuse compiled programs.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache


def shared_folder(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session shares (their temp dirs are
    siblings in the session's), holding the tiny run and a persistent XLA cache."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "lottery-shared"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def locked(folder: Path):
    """Holds ``folder``'s lock: one process at a time computes or copies the tiny run."""
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def shared_tiny_run(tmp_path_factory, dest: Path, run):
    """Runs ``run(out_dir)`` (the tiny config) in the shared folder and copies the run
    directory to ``dest``. The first caller of the session trains; later callers (other
    modules, other workers) resume the finished run, which only loads it.

    Returns:
      (the copy's run directory, what ``run`` returned).
    """
    folder = shared_folder(tmp_path_factory)
    with locked(folder):
        result = run(folder / "runs")
        (run_dir,) = (folder / "runs").iterdir()
        shutil.copytree(run_dir, dest / run_dir.name)
    return dest / run_dir.name, result


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """The shared persistent XLA cache while this module runs (speed only): new
    ``Experiment`` objects and subprocesses load the programs compiled before."""
    names = {
        "jax_compilation_cache_dir": str(shared_folder(tmp_path_factory) / "jax-cache"),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    old = {name: getattr(jax.config, name) for name in names}
    for name, value in names.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield
    for name, value in old.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``jaxticket.cli.main(argv)`` in this process: (exit code, stdout, stderr)."""
    from jaxticket import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()
