"""Which guarantee holds where (docs/math.md, "Which guarantee holds where"), through the Engine.

- Continuous descent: along `/dynamics` the full two-layer energy never increases when both
  Lagrangians are convex: every configuration the Engine accepts. Property-tested over
  random small banks, states, hidden states and inputs.
- The refused configurations (Models A and C with F = xⁿ, n odd ≥ 3: L_h = Σ hⁿ has
  Hessian n(n−1)hⁿ⁻² < 0 for h < 0) answer `nonconvex_lagrangian`.
- Discrete descent where the dynamics are refused: Model A's asynchronous update lowers
  E for any F (odd powers included); Model C's step has no such guarantee for odd powers,
  and a counterexample is exhibited.

Tolerance of the continuous test: rise ≤ 1e-9·(1 + |E|) between consecutive records
(`record_every=1`, dt = 0.01, τ_f = 1, τ_h = 0.1). The exact flow has dE/dt ≤ 0. One Euler
step changes E by dt·∇E·ẋ (≤ 0: the dissipation) plus O(dt²); with dt ≤ τ_h/10 the
dissipation dominates wherever the state moves, and where it has stopped both vanish and
only float64 rounding of E's terms (≈ 1e-16 of their size) is left. Over these banks the
largest rise measured was 2e-15 relative, while a non-convex L_h rises by 1e-2 to 1
(0.4 for A with n = 3): the bound is 10⁶ above rounding and 10⁷ below a violation.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine import BankConfig, Engine, InvalidInputError

# (model, model_params) of every configuration /dynamics accepts: L_v ∈ {Σ|v|, ½‖v‖², ‖v‖}
# is convex for every model; L_h = Σ F(h) is convex for F = xⁿ with n even or n = 1,
# max(x, 0)ⁿ (n ≥ 1) and eˣ; Model B's L_h = β⁻¹ log Σ e^{βh} is convex.
ACCEPTED: list[tuple[str, dict]] = [("B", {})]
for _model in ("A", "C"):
    ACCEPTED += [(_model, {"F": "power", "power": n}) for n in (1, 2, 4, 6)]
    ACCEPTED += [(_model, {"F": "rectified_power", "power": n}) for n in (1, 2, 3, 4, 5)]
    ACCEPTED.append((_model, {"F": "exp"}))
REFUSED = [(m, {"F": "power", "power": n}) for m in ("A", "C") for n in (3, 5, 7)]

TOL = 1e-9


def _label(cfg: tuple[str, dict]) -> str:
    model, params = cfg
    return model + "".join(f"-{v}" for v in params.values())


@settings(max_examples=60, deadline=None)
@given(
    cfg=st.sampled_from(ACCEPTED),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 8),
    d=st.integers(2, 6),
    beta=st.floats(0.25, 8.0),
    with_input=st.booleans(),
    off_rest=st.booleans(),
)
def test_energy_never_increases_along_dynamics(cfg, seed, n, d, beta, with_input, off_rest):
    # d ≥ 2: for Model C in d = 1, ‖v‖ = |v| and g = sign(v) jumps at 0, where the
    # Lyapunov argument needs the Hessian (tests/unit/test_dynamics.py found a rise there).
    model, params = cfg
    rng = np.random.default_rng(seed)
    xi = rng.uniform(-0.5, 0.5, size=(n, d))
    kw: dict = {}
    if off_rest:
        kw["hidden"] = rng.normal(size=n).tolist()
    if with_input:
        kw["input"] = (0.5 * rng.normal(size=d)).tolist()
    with Engine.open(None) as engine:
        engine.create_bank("g", BankConfig(dim=d, model=model, beta=beta, model_params=params))
        engine.upsert("g", xi.astype(np.float32))
        res = engine.dynamics(
            "g", rng.normal(size=d).tolist(), dt=0.01, t_max=1.0, record_every=1, tol=0.0, **kw
        )
    energy = np.asarray(res.energy)
    assert energy.shape == (len(res.times),) and np.isfinite(energy).all()
    rise = energy[1:] - energy[:-1]
    assert (rise <= TOL * (1 + np.abs(energy[:-1]))).all(), (_label(cfg), float(rise.max()))


def test_a_step_across_two_jumps_does_not_raise_energy():
    """Hypothesis's find: Model A, F = max(x, 0), one memory, an input. One plain Euler step
    flipped a sign of v and of h at once and raised E by 0.39; the guarded step halves it
    until the crossings are apart (dynamics.py), and E then only falls."""
    rng = np.random.default_rng(1421336126)
    xi = rng.uniform(-0.5, 0.5, size=(1, 4))
    current = (0.5 * rng.normal(size=4)).tolist()
    params = {"F": "rectified_power", "power": 1}
    with Engine.open(None) as engine:
        engine.create_bank("g", BankConfig(dim=4, model="A", beta=1.0, model_params=params))
        engine.upsert("g", xi.astype(np.float32))
        res = engine.dynamics(
            "g", rng.normal(size=4).tolist(), dt=0.01, t_max=1.0, record_every=1, tol=0.0,
            input=current,
        )  # fmt: skip
    energy = np.asarray(res.energy)
    assert energy[-1] < energy[0] - 1.0  # it does cross: E falls by jumps
    assert (np.diff(energy) <= TOL * (1 + np.abs(energy[:-1]))).all()


@pytest.mark.parametrize("cfg", REFUSED, ids=_label)
def test_nonconvex_configurations_are_refused(cfg):
    model, params = cfg
    with Engine.open(None) as engine:
        engine.create_bank("r", BankConfig(dim=4, model=model, model_params=params))
        engine.upsert("r", np.eye(4, dtype=np.float32))
        with pytest.raises(InvalidInputError) as info:
            engine.dynamics("r", [0.5, -0.2, 0.1, 0.3], dt=0.01, t_max=0.1)
    assert info.value.code == "nonconvex_lagrangian"
    assert info.value.status == 422


@pytest.mark.parametrize("power", [3, 5])
def test_model_a_discrete_update_descends_for_odd_powers(power):
    # Each asynchronous flip takes the lower of two energies: any F, so queries on a bank
    # whose /dynamics is refused keep their guarantee.
    rng = np.random.default_rng(power)
    with Engine.open(None) as engine:
        engine.create_bank(
            "a", BankConfig(dim=24, model="A", model_params={"F": "power", "power": power})
        )
        engine.upsert("a", rng.choice([-1.0, 1.0], size=(40, 24)).astype(np.float32))
        cues = rng.choice([-1.0, 1.0], size=(64, 24))
        before = engine.energy("a", cues).energies
        out = engine.query("a", cues, steps=3, top_k=0, with_payload=False)
    after = np.array([r.energy for r in out.results])
    assert (after <= before + 1e-9 * (1 + np.abs(before))).all()
    assert (after < before).any()  # it did move


def test_model_c_discrete_step_can_raise_energy_for_odd_powers():
    # The descent proof of Model C's step (docs/math.md §5) uses F convex; with F = x³ a
    # step from a random state can raise E = −Σ_μ F(ξ_μ·g): no guarantee holds there.
    rng = np.random.default_rng(0)
    rises = []
    with Engine.open(None) as engine:
        for k in range(24):
            n, d = 1 + k % 6, 2 + k % 4
            engine.create_bank(
                f"c{k}", BankConfig(dim=d, model="C", model_params={"F": "power", "power": 3})
            )
            engine.upsert(f"c{k}", rng.normal(size=(n, d)).astype(np.float32))
            v = rng.normal(size=(4, d))
            before = engine.energy(f"c{k}", v).energies
            out = engine.query(f"c{k}", v, steps=1, top_k=0, with_payload=False)
            rises += [r.energy - b for r, b in zip(out.results, before, strict=True)]
    assert max(rises) > 0.1
