"""The covariance of the fully trained ensemble at order 1/n (pdltlib.trained_covariance).

The algebra is checked against the exact Gaussian average (tensor-product Gauss-Hermite) of the
per-network universal solution over a synthetic ensemble that realizes the order-1/n statistics
exactly; chapter ∞ checks the covariance on trained networks.
"""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from pdltlib import end_of_training as eot
from pdltlib import prediction
from pdltlib.trained_covariance import CovariancePrediction, covariance_prediction


def _synthetic(rng, n_in=2):
    """Statistics with the book's index symmetries that a simple ensemble realizes exactly."""
    m = rng.normal(size=(n_in, n_in))
    theta = m @ m.T + n_in * np.eye(n_in)
    k = np.cov(rng.normal(size=(n_in, 3 * n_in)))
    sym = lambda s: s + s.T  # noqa: E731
    mats = [sym(rng.normal(size=(n_in, n_in))) / 2 for _ in range(2)]
    d = rng.normal(size=(n_in,) * 4)
    d = d + d.transpose(1, 0, 2, 3)
    d = d + d.transpose(0, 1, 3, 2)  # D_{a1a2a3a4}: symmetric in (a1 a2) and in (a3 a4)
    f = rng.normal(size=(n_in,) * 4)
    f = f + f.transpose(2, 3, 0, 1)  # F_{a1a3a2a4} = F_{a2a4a1a3}
    p = rng.normal(size=(n_in,) * 4)
    stats = {
        "K": k,
        "Theta": theta,
        "H1": sym(rng.normal(size=(n_in, n_in))),
        "G1": sym(rng.normal(size=(n_in, n_in))) / 4,
        "A": sum(np.einsum("ab,cd->abcd", x, x) for x in mats),  # E[dH dH] = sum M M
        "B": np.zeros((n_in,) * 4),
        "D": d,
        "F": f,
        "P": p + p.transpose(0, 2, 1, 3),  # P_{0123} = P_{0213}
        **{name: rng.normal(size=(n_in,) * 4) for name in "QRSTU"},
    }
    flow = SimpleNamespace(**{k_: np.stack([v] * 2) for k_, v in stats.items()})
    return flow, mats


def _gauss_hermite_ensemble(flow, mats, width, nodes=10):
    """One output: z ~ N(0, K + G1/n) and, with s = 1/n,
    H = Theta + s H1 + sqrt(s) sum_k xi_k M_k + s c.(z z - E[z z]),  c = K^-1 Y K^-1 / 2,
    dH = s X K^-1 z, ddNTKs = s x their means; every network with its weight."""
    s = 1 / width
    kz = flow.K[-1] + s * flow.G1[-1]
    y4 = eot._ntk_preactivation(flow.D[-1], flow.F[-1], 1)
    inv_k = np.linalg.inv(flow.K[-1])
    c = np.einsum("pqvw,va,wb->pqab", y4, inv_k, inv_k) / 2
    x4 = eot._dntk_preactivation(flow.P[-1], flow.Q[-1], 1)
    mean_i, mean_ii = eot._ddntk_means(*(getattr(flow, n)[-1] for n in "RSTU"), 1)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    grid = np.array(list(itertools.product(x, repeat=4)))
    weights = np.prod(np.array(list(itertools.product(w, repeat=4))), axis=1)
    z = grid[:, :2] @ np.linalg.cholesky(kz).T
    xi = grid[:, 2:]
    zz = np.einsum("sa,sb->sab", z, z) - kz
    ntk = (flow.Theta[-1] + s * flow.H1[-1] + np.sqrt(s) * np.einsum("sk,kab->sab", xi, mats)
           + s * np.einsum("pqab,sab->spq", c, zz))  # fmt: skip
    dntk = s * np.einsum("pqrw,wv,sv->spqr", x4, inv_k, z)
    n = len(z)
    return (
        z[:, :, None],
        ntk[:, None, None],
        dntk[:, None, None, None],
        np.broadcast_to(s * mean_i, (n, 1, 1, 1, 1, 2, 2, 2, 2)),
        np.broadcast_to(s * mean_ii, (n, 1, 1, 1, 1, 2, 2, 2, 2)),
        weights,
    )


def _weighted_cov(values, weights):
    centered = values - weights @ values
    return np.einsum("s,sd,se->de", weights, centered, centered)


@pytest.mark.parametrize("eta_fraction", [0.0, 0.6])
def test_covariance_is_the_exact_average_of_the_universal_solution(eta_fraction):
    rng = np.random.default_rng(11)
    flow, mats = _synthetic(rng)
    y = np.array([[0.8]])
    eta = eta_fraction / flow.Theta[-1][0, 0]
    width = 1e6  # the remainder is O(1/n^2): about 8 / width^2 here, measured at 1e4 and 1e5
    *ensemble, weights = _gauss_hermite_ensemble(flow, mats, width)
    sol = eot.trained_output(*ensemble, y, eta=eta)
    theory = covariance_prediction(flow, y, eta=eta)
    free = _weighted_cov(sol.free[:, :, 0], weights)
    total = _weighted_cov(sol.total[:, :, 0], weights)
    # the trained outputs interpolate the training input: nothing fluctuates there
    scale = np.abs(theory.correction).max()
    assert np.abs(total[0]).max() < 1e-12 and np.abs(theory.correction[0]).max() < 1e-12 * scale
    np.testing.assert_allclose(width * (free - theory.kernel[:, 0, :, 0]),
                               theory.linear_model[:, 0, :, 0], atol=5e-5)  # fmt: skip
    np.testing.assert_allclose(width * (total - free), theory.interaction[:, 0, :, 0], atol=5e-5)
    # each part matters: dropping it would fail the check above
    for part in ("metric", "ntk_mean", "ntk_fluctuation", "dntk", "ddntk_1", "ddntk_2"):
        assert np.abs(getattr(theory, part)[1, 0, 1, 0]) > 5e-4, part


def test_single_part_flows_isolate_their_terms():
    """With only G1 (all other 1/n statistics zero) the correction is L G1 L^T; with only H1 it
    is the derivative of the kernel covariance (10.41) along Theta -> Theta + H1 / n."""
    rng = np.random.default_rng(12)
    flow, _ = _synthetic(rng)
    for name in ("A", "D", "F", "P", "Q", "R", "S", "T", "U"):
        setattr(flow, name, np.zeros_like(getattr(flow, name)))
    y = np.array([[0.5]])
    cov = covariance_prediction(flow, y, eta=0.0)
    width = 1e6
    shifted = prediction.prediction_covariance(flow.Theta[-1] + flow.H1[-1] / width,
                                               flow.K[-1] + flow.G1[-1] / width, 1)  # fmt: skip
    np.testing.assert_allclose(cov.kernel[:, 0, :, 0],
                               prediction.prediction_covariance(flow.Theta[-1], flow.K[-1], 1),
                               atol=1e-14)  # fmt: skip
    expected = (cov.metric + cov.ntk_mean)[:, 0, :, 0]
    np.testing.assert_allclose(width * (shifted - cov.kernel[:, 0, :, 0]), expected, rtol=1e-4,
                               atol=1e-9)  # fmt: skip
    assert np.abs(cov.interaction).max() == 0 and np.abs(cov.ntk_fluctuation).max() == 0


def test_two_outputs_wire_through_the_labels():
    """Different output components are independent at infinite width; at order 1/n they are
    correlated only through terms with two labels y_i1 y_i2 (the book's wiring, (∞.162)): with
    y = (y1, 0) the cross-covariance vanishes, with y = (y1, y2) it does not."""
    rng = np.random.default_rng(13)
    flow, _ = _synthetic(rng)
    one = covariance_prediction(flow, np.array([[0.7, 0.0]]), eta=0.1)
    two = covariance_prediction(flow, np.array([[0.7, -0.4]]), eta=0.1)
    assert np.abs(one.kernel[1, 0, 1, 1]) == 0 and np.abs(two.kernel[1, 0, 1, 1]) == 0
    assert np.abs(one.correction[1, 0, 1, 1]) < 1e-12
    assert np.abs(two.correction[1, 0, 1, 1]) > 1e-3
    np.testing.assert_allclose(two.correction, np.einsum("aibj->bjai", two.correction),
                               atol=1e-12)  # fmt: skip


def test_ntk_flow_gives_the_linear_model_part_only():
    rng = np.random.default_rng(14)
    flow, _ = _synthetic(rng)
    del flow.P
    cov = covariance_prediction(flow, np.array([[0.3]]), eta=0.0)
    assert isinstance(cov, CovariancePrediction) and cov.dntk is None
    with pytest.raises(ValueError, match="linear-model"):
        cov.interaction  # noqa: B018


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f, y: (object(), y), "stats"),
        (lambda f, y: (f, np.ones((3, 1))), "y_train"),
        (lambda f, y: (f, np.array([[np.nan]])), "y_train"),
        (lambda f, y: (SimpleNamespace(**{**vars(f), "G1": f.G1[:, :1]}), y), "G1"),
    ],
)
def test_bad_input_names_the_parameter(change, match):
    flow, _ = _synthetic(np.random.default_rng(15))
    stats, y = change(flow, np.array([[0.3]]))
    with pytest.raises(ValueError, match=match):
        covariance_prediction(stats, y, eta=0.0)
    with pytest.raises(ValueError, match="width"):
        covariance_prediction(flow, np.array([[0.3]]), eta=0.0).at(0)


def test_ntk_preactivation_tensor_matches_sampled_networks_at_layer_two():
    """The flat E[Delta H z z] that the covariance contracts (D, F with the preactivations'
    samples first) against sampled two-layer networks, where (8.37)-(8.39) hold at any width;
    the transposed convention (NTK samples first) differs by many standard errors."""
    import jax

    from pdltlib.network import mlp
    from pdltlib.ntk import sample_ntk
    from pdltlib.ntk_fluctuations import ntk_fluctuation_flow

    x = np.array([[1.5, 0.6, -0.9], [-0.6, 0.9, 1.2]])
    width, n_out = 6, 2
    config = mlp((3, width, n_out), "tanh", C_b=0.0, C_W=1.0, lambda_b=1.0, lambda_W=1.0)
    sample = sample_ntk(jax.random.PRNGKey(21), config, x, 100_000, progress=False)
    z = sample.z[2].reshape(len(sample.z[2]), -1)  # flat index: input major
    h = eot.flatten(sample.ntk[2])[0]
    products = np.einsum("spq,sw,sv->spqwv", h - h.mean(0), z, z) * width
    mc, se = products.mean(0), products.std(0) / np.sqrt(len(z))
    flow = ntk_fluctuation_flow("tanh", 0.0, 1.0, 1.0, 1.0, x, 2)
    theory = eot._ntk_preactivation(flow.D[-1], flow.F[-1], n_out)
    assert np.all(np.abs(mc - theory) <= 5 * se + 1e-12)
    transposed = eot._delta_sum(
        (("ij,kl", "abcd"), ("ik,jl", "acbd"), ("il,jk", "adbc")), (flow.D[-1], flow.F[-1],
                                                                     flow.F[-1]), n_out
    )  # fmt: skip
    assert np.max(np.abs(mc - transposed) / (se + 1e-12)) > 20


def test_wiring_of_two_outputs_in_the_linear_model_on_sampled_networks():
    """The book's wiring of output components in the covariance ((∞.162) and the text around it),
    on sampled networks: two outputs trained on y = (1, 1) with each network's own NTK (which
    mixes the components) have a cross-covariance at the test input that is zero at infinite
    width and c/n with c the ntk_fluctuation part's off-diagonal element. Estimator: the sample
    covariance of the trained linear models minus u0_1 u0_2, u0 = z_- - M z_+ with the
    infinite-width M, whose mean is exactly zero, averaged over the four sign flips of the two
    outputs' last layers (each maps z_i to -z_i and H_ij to -H_ij for j != i and is a symmetry
    of the initialization distribution, so every flipped network is an equally likely sample)."""
    import jax

    from pdltlib import stats
    from pdltlib.network import mlp
    from pdltlib.ntk import sample_ntk
    from pdltlib.ntk_fluctuations import ntk_fluctuation_flow

    depth, x = 3, np.array([[1.5, 0.6, -0.9], [-0.6, 0.9, 1.2]])
    hyper = dict(C_b=0.0, C_W=1.0, lambda_b=3.0 / np.arange(1, depth + 1), lambda_W=np.ones(3))
    y = np.ones((1, 2))
    flow = ntk_fluctuation_flow("tanh", *hyper.values(), x, depth)
    theory = covariance_prediction(flow, y, eta=0.0)
    target = float(theory.linear_model[1, 0, 1, 1])
    assert theory.kernel[1, 0, 1, 1] == 0 and abs(target) > 0.05
    m0 = flow.Theta[-1][1, 0] / flow.Theta[-1][0, 0]
    widths = np.array([16, 32, 64])
    values, errors = [], []
    for i, width in enumerate(widths):
        config = mlp((3, int(width), int(width), 2), "tanh", **hyper)
        sample = sample_ntk(jax.random.PRNGKey(40 + i), config, x, 20_000, progress=False)
        z, h = sample.z[depth], sample.ntk[depth]
        means = np.zeros((3, len(z)))  # over the four output flips of each network
        for signs in itertools.product((1, -1), repeat=2):
            s = np.array(signs)
            free = eot.trained_output(z * s, h * np.einsum("i,j->ij", s, s)[:, :, None, None],
                                      None, None, None, y, eta=0.0).free[:, 1]  # fmt: skip
            u0 = (z * s)[:, 1] - m0 * (z * s)[:, 0]
            means += np.stack([free[:, 0] * free[:, 1] - u0[:, 0] * u0[:, 1], *free.T]) / 4
        est = stats.jackknife(lambda c, a, b: c - a * b, *means)
        values.append(float(est.value))
        errors.append(float(est.stderr))
    values, errors = np.array(values), np.array(errors)
    c12 = stats.fit_inverse_width(widths, values, errors, powers=(1, 2))
    c123 = stats.fit_inverse_width(widths, values, errors, powers=(1, 2, 3))
    shift = abs(float(c12[1].value) - float(c123[1].value))  # the truncation of the 1/n^2 fit
    check = stats.honest_check("cross-covariance of two trained linear-model outputs, 1/n coeff.",
                               c12[1], target, truncation=shift, infinite_width=0.0)  # fmt: skip
    stats.assert_checks([check])
