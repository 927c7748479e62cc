"""Probes for compilation in tests: count XLA compiles, or fail on any attempt to build a
train program (bad input must be refused before anything compiles)."""

from __future__ import annotations

import contextlib

import jax
import pytest

from jaxticket.train import runner


@contextlib.contextmanager
def count_compiles():
    """Counts XLA backend compiles inside the block (``counter[0]``)."""
    counter = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            counter[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def no_compiling(monkeypatch):
    """Makes any attempt to build or compile a train function fail the test."""

    def fail(*args, **kwargs):
        raise AssertionError("compiled although the input is invalid")

    monkeypatch.setattr(runner, "compiled_train_fn", fail)
    monkeypatch.setattr(runner, "init_seeds", fail)
