"""Schedules of jaxticket.sparse against the papers' formulas, computed in numpy / Python."""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket import sparse


def zhu_gupta_reference(s_i, s_f, t0, dt, n, t):
    """Zhu & Gupta 2017: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 on [t0, t0 + n dt]."""
    t = np.clip(t, t0, t0 + n * dt)
    return s_f + (s_i - s_f) * (1.0 - (t - t0) / (n * dt)) ** 3


@settings(max_examples=40, deadline=None)
@given(
    s_i=st.sampled_from([0.0, 0.1, 0.5]),
    extra=st.floats(0.0, 0.45),
    t0=st.integers(0, 300),
    dt=st.integers(1, 50),
    n=st.integers(1, 12),
    slack=st.integers(0, 49),
)
def test_zhu_gupta_matches_formula_at_every_update(s_i, extra, t0, dt, n, slack):
    s_f = s_i + extra
    end = t0 + n * dt + min(slack, dt - 1)  # n = (end - t0) // dt whatever the slack
    schedule = sparse.zhu_gupta_schedule(s_i, s_f, t0, end, dt)
    method = sparse.GMP(s_f, start=t0, end=end, every=dt, initial_sparsity=s_i)
    updates = [t0 + j * dt for j in range(n + 1)]
    assert method.steps == tuple(updates)
    for t in updates:
        want = zhu_gupta_reference(s_i, s_f, t0, dt, n, t)
        assert float(schedule(t)) == pytest.approx(want, abs=2e-6)
        assert float(method.target(t)) == pytest.approx(want, abs=2e-6)
    assert float(schedule(t0)) == pytest.approx(s_i, abs=1e-7)
    assert float(schedule(t0 + n * dt)) == pytest.approx(s_f, abs=1e-7)
    # before t0 the schedule holds s_i, after the last update s_f
    assert float(schedule(max(t0 - 1, 0))) == pytest.approx(s_i, abs=1e-7)
    assert float(schedule(end + 5)) == pytest.approx(s_f, abs=1e-7)


def test_zhu_gupta_hand_worked():
    # s_i=0, s_f=0.8, t0=100, dt=100, n=4: 0.8(1 - (1 - j/4)^3) = 0, 0.4625, 0.7, 0.7875, 0.8
    schedule = sparse.zhu_gupta_schedule(0.0, 0.8, 100, 500, 100)
    got = [float(schedule(t)) for t in (100, 200, 300, 400, 500)]
    np.testing.assert_allclose(got, [0.0, 0.4625, 0.7, 0.7875, 0.8], atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(zeta=st.floats(0.01, 0.99), t_end=st.floats(1.0, 5000.0), frac=st.floats(0.0, 1.5))
def test_cosine_drop_fraction_matches_formula(zeta, t_end, frac):
    t = frac * t_end
    want = zeta / 2 * (1 + math.cos(math.pi * min(t, t_end) / t_end))
    got = float(sparse.cosine_drop_fraction(zeta, t_end)(t))
    assert got == pytest.approx(want, abs=1e-6)


def test_update_steps_lists():
    assert sparse.update_steps(10, 0, 35) == (0, 10, 20, 30)
    assert sparse.update_steps(10, 5, 5) == (5,)
    assert sparse.update_steps(7, 3, 17) == (3, 10, 17)


@pytest.mark.parametrize("steps,start_step,every", [(1000, 0, 100), (250, 40, 30), (101, 0, 100)])
def test_rigl_update_steps_stop_before_three_quarters(steps, start_step, every):
    method = sparse.RigL(0.9, every=every)
    t_end = 0.75 * steps
    want = []
    t = start_step + every
    while t - start_step < t_end:
        want.append(t)
        t += every
    if not want:
        with pytest.raises(ValueError, match="no update fits"):
            method.mask_update(steps, start_step)
        return
    update = method.mask_update(steps, start_step)
    assert update.steps == tuple(want)
    assert update.needs_grad


def test_rigl_zeta_at_its_updates():
    method = sparse.RigL(0.9, every=100, zeta=0.3)
    steps, start_step = 1000, 200
    update = method.mask_update(steps, start_step)
    schedule = method.drop_fraction(0.75 * steps)
    for t in update.steps:
        want = 0.15 * (1 + math.cos(math.pi * (t - start_step) / 750))
        assert float(schedule(t - start_step)) == pytest.approx(want, abs=1e-6)


def test_set_update_steps():
    assert sparse.SET(0.5, every=10).mask_update(45).steps == (10, 20, 30, 40)
    assert sparse.SET(0.5, every=10).mask_update(40).steps == (10, 20, 30)
    assert sparse.SET(0.5, every=10, end=25).mask_update(40, 0).steps == (10, 20)
    assert sparse.SET(0.5, every=10).mask_update(30, 100).steps == (110, 120)
    assert not sparse.SET(0.5, every=10).mask_update(30, 100).needs_grad


def test_gmp_one_shot_and_constant_steps():
    one = sparse.GMP(0.9, start=30, schedule="one_shot")
    assert one.steps == (30,)
    assert float(one.target(30)) == pytest.approx(0.9)
    const = sparse.GMP(0.9, start=30, end=60, every=15, schedule="constant")
    assert const.steps == (30, 45, 60)
    assert all(float(const.target(t)) == pytest.approx(0.9) for t in const.steps)


def test_granet_steps_and_zeta():
    method = sparse.GraNet(0.9, initial_sparsity=0.5, start=20, end=80, every=20, zeta=0.5)
    update = method.mask_update(100)
    assert update.steps == (20, 40, 60, 80) and update.needs_grad
    for t in update.steps:
        want = 0.25 * (1 + math.cos(math.pi * t / 100))
        assert float(method.drop_fraction(100)(t)) == pytest.approx(want, abs=1e-6)
        want_s = zhu_gupta_reference(0.5, 0.9, 20, 20, 3, t)
        assert float(method.target(t)) == pytest.approx(want_s, abs=2e-6)


@pytest.mark.parametrize("decay", ["constant", "cosine"])
def test_set_drop_fraction_at_its_updates(monkeypatch, decay):
    # SET's ζ: fixed (Mocanu et al.) or RigL's cosine over the span its updates may take
    # (how Evci et al. ran SET beside RigL). The fraction drop_and_grow receives is read
    # off at every update and compared with the formula.
    from jaxticket.sparse import dynamic

    seen = []
    monkeypatch.setattr(
        dynamic, "drop_and_grow", lambda mask, drop, grow, fraction: seen.append(fraction) or mask
    )
    method = sparse.SET(0.5, every=10, zeta=0.3, end=59, decay=decay)
    update = method.mask_update(100, start_step=20)
    assert update.steps == (30, 40, 50)
    mask = {"w": np.ones((4, 4), bool)}
    for t in update.steps:
        key = jax.random.key(0)
        inputs = dynamic.UpdateInputs(t, 0, {"w": np.ones((4, 4))}, None, None, mask, key, None)
        update.fn(inputs)
    horizon = 59 - 20 + 1
    want = [
        0.3 if decay == "constant" else 0.15 * (1 + math.cos(math.pi * (t - 20) / horizon))
        for t in update.steps
    ]
    np.testing.assert_allclose(np.asarray(seen, np.float64), want, rtol=1e-6)


def test_set_decay_must_be_known():
    with pytest.raises(ValueError, match="decay"):
        sparse.SET(0.5, decay="linear")
