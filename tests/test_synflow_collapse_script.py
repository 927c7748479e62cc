"""Smoke test: experiments/synflow_collapse/run.py runs end to end in its --quick mode."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "experiments" / "synflow_collapse" / "run.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("synflow_collapse_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_a_table_for_every_method(tmp_path):
    script = _load_script()
    out = tmp_path / "results.md"
    by_init = script.main(["--quick", "--out", str(out)])
    assert len(by_init) == 2  # default biases and zeroed biases
    text = out.read_text()
    for method in script.METHODS:
        assert text.count(f"| {method} |") == 2
    for results in by_init.values():
        assert set(results) == set(script.METHODS)
        for record in (r for records in results.values() for r in records):
            assert 1.0 <= record["max_compression"]
            if record["first_collapse"] is not None:
                assert record["first_collapse"] > record["max_compression"]
                assert record["first_collapsed_layers"]
