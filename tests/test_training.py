"""Tests of pdltlib.training (ensemble training) and pdltlib.models (linear/quadratic models)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdltlib import prediction
from pdltlib.models import linear_model, model_ntk, quadratic_model
from pdltlib.network import forward, init_params, mlp
from pdltlib.ntk import empirical_ntk, gradient_step, sample_ntk
from pdltlib.training import _train_chunk, train_ensemble

X = np.array([[0.8, -0.3, 0.5], [0.1, 0.9, -0.4], [-0.6, 0.2, 0.7]])
X_TEST = np.array([[0.3, 0.3, 0.2]])
Y = np.array([[0.5, -0.2], [-0.4, 0.3], [0.2, 0.6]])
CONFIG = mlp(
    (3, 8, 6, 2), "tanh", C_b=0.1, C_W=1.4, lambda_b=(0.5, 1.0, 0.8), lambda_W=(1.0, 0.7, 1.2)
)
KEY = jax.random.PRNGKey(3)
BOUND = prediction.stability_bound(prediction.frozen_ntk(CONFIG, X).Theta[-1])
ETA = 0.3 * BOUND


def _train(**kw):
    kw.setdefault("eta", ETA)
    kw.setdefault("progress", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # runs that stop at max_steps on purpose
        return train_ensemble(KEY, CONFIG, X, Y, 5, x_test=X_TEST, **kw)


def _loop(s: int, steps: int, n_networks: int = 5):
    """The reference: network s of the ensemble, trained by gradient_step in a Python loop."""
    params = init_params(jax.random.split(KEY, n_networks)[s], CONFIG)
    for _ in range(steps):
        params = gradient_step(params, X, Y, CONFIG, ETA)
    return params


def test_ensemble_equals_a_per_network_loop():
    # A fixed number of steps (fixed-steps mode). The vmapped program and the
    # per-network jitted step run the same operations, but XLA sums batched matrix products in
    # another order than single ones, so they agree to rounding (1e-16 per step), not bit for bit.
    result = _train(models=("network",), steps=40, keep_ntk=True)
    x_all = np.vstack([X, X_TEST])
    for s in (0, 3):
        params = _loop(s, 40)
        z = np.asarray(forward(params, x_all, CONFIG.activation)[-1])
        np.testing.assert_allclose(result.final["network"][s], z, rtol=0, atol=1e-13)
        np.testing.assert_allclose(
            result.ntk_final[s], empirical_ntk(params, x_all, CONFIG), rtol=0, atol=1e-12
        )
    assert np.all(result.steps["network"] == 40) and not result.converged["network"].any()


def test_stopping_step_matches_the_loop():
    result = _train(models=("network",), tolerance=1e-6, max_steps=5000)
    assert result.report.all_converged
    for s in range(5):
        params, steps = init_params(jax.random.split(KEY, 5)[s], CONFIG), 0
        while np.abs(np.asarray(forward(params, X, CONFIG.activation)[-1]) - Y).max() > 1e-6:
            params, steps = gradient_step(params, X, Y, CONFIG, ETA), steps + 1
        assert result.steps["network"][s] == steps


def test_chunk_size_does_not_change_the_numbers():
    kw = dict(models=("network", "linear"), max_steps=60, checkpoints=(0, 7, 30), keep_ntk=True)
    a, b = _train(chunk_size=2, **kw), _train(chunk_size=5, **kw)
    for m in ("network", "linear"):
        np.testing.assert_array_equal(a.final[m], b.final[m])
        np.testing.assert_array_equal(a.history[m], b.history[m])
        np.testing.assert_array_equal(a.steps[m], b.steps[m])
    np.testing.assert_array_equal(a.ntk_final, b.ntk_final)


def test_same_networks_as_sample_ntk():
    result = _train(models=("network",), steps=1, keep_ntk=True)
    sample = sample_ntk(KEY, CONFIG, np.vstack([X, X_TEST]), 5, progress=False)
    np.testing.assert_allclose(result.initial, sample.z[3], rtol=0, atol=1e-14)
    np.testing.assert_allclose(result.ntk_initial, sample.ntk[3], rtol=0, atol=1e-13)


def test_history_starts_at_the_initialization_and_loss_is_the_mse():
    result = _train(models=("network", "linear"), max_steps=30, checkpoints=(0, 12))
    for m in result.models:  # the same outputs, evaluated inside and outside the loop
        np.testing.assert_allclose(result.history[m][:, 0], result.initial, rtol=0, atol=1e-14)
    params = _loop(2, 12)
    z = np.asarray(forward(params, X, CONFIG.activation)[-1])
    np.testing.assert_allclose(result.loss["network"][2, 1], 0.5 * np.sum((z - Y) ** 2), rtol=1e-12)


def test_linear_model_is_kernel_learning_with_its_own_initial_ntk():
    # (10.39) with Theta -> the network's own H(theta_0), after exactly t steps (closed form)
    result = _train(models=("linear",), steps=37, keep_ntk=False)
    sample = sample_ntk(KEY, CONFIG, np.vstack([X, X_TEST]), 5, progress=False)
    for s in range(5):
        # at finite width H_{ij;ab} mixes the outputs: treat the (input, output) pairs (a, i) as
        # one index, rows d * n_L + i, so the N_A n_L training pairs come first
        flat = sample.ntk[3][s].transpose(2, 0, 3, 1).reshape(8, 8)
        z0 = result.initial[s].reshape(8, 1)
        expected = prediction.trained_outputs(flat, z0, Y.reshape(6, 1), eta=ETA, steps=37)
        np.testing.assert_allclose(result.final["linear"][s].reshape(8, 1), expected, atol=1e-12)


def test_quadratic_model_is_the_second_order_expansion():
    params0 = init_params(jax.random.PRNGKey(5), CONFIG)
    direction = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.PRNGKey(6), p.shape), params0
    )
    x_all = jnp.asarray(np.vstack([X, X_TEST]))
    net = lambda p: forward(p, x_all, CONFIG.activation)[-1]  # noqa: E731
    lin, quad = linear_model(params0, x_all, CONFIG), quadratic_model(params0, x_all, CONFIG)
    gaps = {"linear": [], "quadratic": []}
    for eps in (1e-2, 5e-3):
        moved = jax.tree_util.tree_map(lambda p, v, e=eps: p + e * v, params0, direction)
        gaps["linear"].append(np.abs(net(moved) - lin(moved)).max())
        gaps["quadratic"].append(np.abs(net(moved) - quad(moved)).max())
    assert np.log2(gaps["linear"][0] / gaps["linear"][1]) == pytest.approx(2, abs=0.05)
    assert np.log2(gaps["quadratic"][0] / gaps["quadratic"][1]) == pytest.approx(3, abs=0.05)
    np.testing.assert_array_equal(lin(params0), net(params0))


def test_one_step_agrees_with_the_network_to_the_models_order():
    # after one step all three models moved theta identically (same gradient at theta_0), so
    # the network differs from the linear model by O(eta^2) and from the quadratic by O(eta^3);
    # halving eta divides the gaps by 2^2 and 2^3 up to O(eta) (0.02 in the exponent here)
    def gap(eta):
        models = ("network", "linear", "quadratic")
        r = _train(eta=eta, models=models, steps=1)
        return [np.abs(r.final["network"] - r.final[m]).max() for m in ("linear", "quadratic")]

    big, small = gap(0.025 * BOUND), gap(0.0125 * BOUND)
    assert np.log2(big[0] / small[0]) == pytest.approx(2, abs=0.05)
    assert np.log2(big[1] / small[1]) == pytest.approx(3, abs=0.05)


def test_fixed_steps_take_exactly_that_many_steps_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: no network diverged
        result = train_ensemble(
            KEY, CONFIG, X, Y, 5, eta=ETA, models=("network", "linear"), steps=3, progress=False
        )
    assert result.fixed_steps and result.tolerance is None and result.max_steps == 3
    for m in result.models:
        assert np.all(result.steps[m] == 3) and not result.converged[m].any()
    assert result.report.columns == ("model", "networks", "took all 3 steps", "diverged")
    assert result.report.rows() == [("network", "5", "5", "0"), ("linear", "5", "5", "0")]
    assert not result.report.all_converged and not result.report.any_diverged


def test_fixed_steps_equal_an_unreachable_tolerance_bit_for_bit():
    kw = dict(models=("network", "quadratic"), checkpoints=(0, 4), keep_ntk=True)
    fixed = _train(steps=9, **kw)
    stopped = _train(tolerance=1e-300, max_steps=9, **kw)
    for m in fixed.models:
        np.testing.assert_array_equal(fixed.final[m], stopped.final[m])
        np.testing.assert_array_equal(fixed.history[m], stopped.history[m])
        np.testing.assert_array_equal(fixed.steps[m], stopped.steps[m])
    np.testing.assert_array_equal(fixed.ntk_final, stopped.ntk_final)


def test_runs_differing_only_in_traced_settings_share_one_compiled_program():
    kw = dict(models=("network",), checkpoints=(2,), keep_ntk=True)
    _train(**kw, steps=5)
    compiled = _train_chunk._cache_size()
    _train(**kw, steps=11, eta=0.5 * ETA)  # another step count, step size and checkpoint value
    _train(**kw | dict(checkpoints=(7,)), tolerance=1e-4, max_steps=30, divergence=50.0)
    assert _train_chunk._cache_size() == compiled


def test_fixed_steps_report_divergences():
    narrow = mlp((3, 3, 1), "tanh", C_b=0.1, C_W=1.4)
    eta = 0.97 * prediction.stability_bound(prediction.frozen_ntk(narrow, X).Theta[-1])
    with pytest.warns(UserWarning, match="some networks diverged"):
        result = train_ensemble(
            KEY, narrow, X, Y[:, :1], 64, eta=eta, models=("linear",), steps=3000, progress=False
        )
    div = result.diverged["linear"]
    assert 0 < div.sum() < 64 and np.all(result.steps["linear"][~div] == 3000)
    assert np.all(result.steps["linear"][div] < 3000)
    assert result.report.rows() == [("linear", "64", str(64 - div.sum()), str(div.sum()))]


def test_eta_above_the_stability_bound_is_refused():
    with pytest.raises(ValueError, match=r"eta = .* exceeds .* 2/lambda_max\(Theta\) = "):
        train_ensemble(KEY, CONFIG, X, Y, 2, eta=1.01 * BOUND, progress=False)


def test_divergence_is_counted_and_reported():
    # Width-3 networks: their NTKs fluctuate strongly. A linear model diverges exactly when
    # eta lambda_max(H_AA) > 2 (its training modes evolve as (1 - eta lambda_k)^t).
    narrow = mlp((3, 3, 1), "tanh", C_b=0.1, C_W=1.4)
    y = Y[:, :1]
    eta = 0.97 * prediction.stability_bound(prediction.frozen_ntk(narrow, X).Theta[-1])
    with pytest.warns(UserWarning, match="not every network reached the stopping criterion"):
        result = train_ensemble(
            KEY, narrow, X, y, 64, eta=eta, max_steps=20000, tolerance=1e-8, progress=False
        )
    h = sample_ntk(KEY, narrow, X, 64, progress=False).ntk[2][:, 0, 0]
    unstable = eta * np.linalg.eigvalsh(h)[:, -1] > 2
    assert unstable.sum() >= 3
    np.testing.assert_array_equal(result.diverged["linear"], unstable)
    np.testing.assert_array_equal(result.converged["linear"], ~unstable)
    assert result.final["linear"].shape[0] == 64  # kept, not dropped
    row = [r for r in result.report.rows() if r[0] == "linear"][0]
    assert row[3] == str(unstable.sum())


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(eta=0.0), "eta must be finite and > 0"),
        (dict(eta=np.nan), "eta must be finite and > 0"),
        (dict(tolerance=-1.0), "tolerance must be finite and > 0"),
        (dict(models=("network", "cubic")), "models must be distinct names"),
        (dict(models=()), "models must be distinct names"),
        (dict(max_steps=0), "max_steps must be a positive integer"),
        (dict(checkpoints=(5, 200), max_steps=100), "checkpoints must be integers in 0..max_steps"),
        (dict(divergence=0.5), "divergence must be finite and > 1"),
        (dict(keep_ntk=True, models=("linear",)), "keep_ntk needs the network"),
        (dict(n_networks=0), "n_networks must be a positive integer"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(steps=2.5), "steps must be a positive integer"),
        (dict(steps=5, tolerance=1e-6), "give either steps, or tolerance and max_steps"),
        (dict(steps=5, max_steps=5), "give either steps, or tolerance and max_steps"),
        (dict(steps=5, checkpoints=(6,)), r"checkpoints must be integers in 0..steps = 0..5"),
    ],
)
def test_bad_input_names_the_parameter(kw, match):
    args = dict(eta=ETA, progress=False, n_networks=2) | kw
    n = args.pop("n_networks")
    with pytest.raises(ValueError, match=match):
        train_ensemble(KEY, CONFIG, X, Y, n, **args)


def test_bad_shapes_name_the_parameter():
    with pytest.raises(ValueError, match="y_train must be finite with shape"):
        train_ensemble(KEY, CONFIG, X, Y[:2], 2, eta=ETA, progress=False)
    with pytest.raises(ValueError, match="x must have shape"):
        train_ensemble(KEY, CONFIG, X[:, :2], Y, 2, eta=ETA, progress=False)
    with pytest.raises(ValueError, match="x must have shape"):
        train_ensemble(KEY, CONFIG, X, Y, 2, eta=ETA, x_test=np.ones((2, 4)), progress=False)
    with pytest.raises(ValueError, match="params must hold L"):
        linear_model(init_params(KEY, CONFIG)[:2], X, CONFIG)


def test_model_ntk_of_the_linear_model_is_the_initial_ntk():
    net = mlp((2, 6, 5, 2), "tanh", C_b=0.1, C_W=1.3, lambda_b=0.4, lambda_W=1.2)
    x = np.array([[1.0, 0.2], [-0.3, 0.8], [0.5, -1.0]])
    params = init_params(jax.random.PRNGKey(3), net)
    moved = jax.tree_util.tree_map(lambda p: p + 0.1, params)
    h0 = np.asarray(empirical_ntk(params, x, net))
    np.testing.assert_allclose(model_ntk(linear_model(params, x, net), moved, net), h0, atol=1e-12)
    assert not np.allclose(np.asarray(empirical_ntk(moved, x, net)), h0, atol=1e-3)
