"""Tests of pdltlib.dntk_fluctuations: P, Q (book 11.2) and R, S, T, U (book ∞.1, ∞.3)."""

from functools import partial

import jax
import numpy as np
import pytest

from pdltlib import stats
from pdltlib.activations import get_activation
from pdltlib.ddntk import sample_ddntk
from pdltlib.dntk import sample_dntk
from pdltlib.dntk_fluctuations import dntk_fluctuation_flow
from pdltlib.gaussian import activation_expectation, gaussian_expectation
from pdltlib.kernels import chi_perp
from pdltlib.network import mlp
from pdltlib.ntk_fluctuations import ntk_fluctuation_flow

X2 = np.array([[1.0, 0.0], [0.6, 0.8]])
QUADS = ((0, 0, 0, 0), (0, 1, 1, 0), (1, 0, 1, 1), (0, 0, 1, 1), (1, 1, 0, 1), (0, 1, 0, 1))


def test_first_layer_vanishes_and_symmetries():
    flow = dntk_fluctuation_flow("gelu", 0.1, 1.3, 0.2, 0.9, X2, 3, widths=[8, 16], ddntk=True)
    for name in "PQRSTU":
        np.testing.assert_array_equal(getattr(flow, name)[0], 0.0)
    p, r, s = flow.P, flow.R, flow.S
    np.testing.assert_allclose(p, p.transpose(0, 1, 3, 2, 4), atol=1e-12)  # footnote 3: d1 <-> d2
    np.testing.assert_allclose(r, r.transpose(0, 1, 2, 4, 3), atol=1e-12)  # (i2 d2) <-> (i3 d3)
    np.testing.assert_allclose(s, s.transpose(0, 2, 1, 4, 3), atol=1e-12)  # joint swap of ddIIH


def test_second_layer_is_the_books_11_31_11_32_and_the_ddntk_sources():
    """Layer 2 against (11.31)-(11.32) and the first lines of (∞.172)-(∞.176), with the
    sigma'' brackets taken directly (tanh is smooth) rather than integrated by parts."""
    act, cw, lw = "tanh", 1.5, 1.1
    flow = dntk_fluctuation_flow(act, 0.1, [1.2, cw], 0.3, [0.8, lw], X2, 2, ddntk=True)
    k1, th = flow.K[0], flow.Theta[0]

    def e(idx, der):
        return activation_expectation(act, k1, idx, derivatives=der)

    for a, b, c, d in QUADS:
        i = (a, b, c, d)
        p = cw**2 * th[a, b] * th[a, c] * e(i, (2, 1, 1, 0))
        q = p + lw * cw * th[a, c] * e(i, (1, 0, 1, 0))
        r = lw * cw * th[a, c] * th[a, d] * e(i, (2, 0, 1, 1))
        r += cw**2 * th[a, b] * th[a, c] * th[a, d] * e(i, (3, 1, 1, 1))
        qqpp = cw**2 * th[a, b] * th[a, c] * th[b, d] * e(i, (2, 2, 1, 1))
        s = lw * cw * th[a, c] * th[b, d] * e(i, (1, 1, 1, 1)) + qqpp
        t = lw**2 * th[a, b] * e(i, (1, 1, 0, 0)) + qqpp
        t += (
            lw
            * cw
            * (th[a, b] * th[a, c] * e(i, (2, 1, 1, 0)) + th[a, b] * th[b, d] * e(i, (1, 2, 0, 1)))
        )
        got = (flow.P, flow.Q, flow.R, flow.S, flow.T, flow.U)
        want = (p, q, r, s, t, qqpp)
        where = (i, i, i, i, (a, c, d, b), (a, d, b, c))  # T_{1342}, U_{1423}
        for name, g, w, j in zip("PQRSTU", got, want, where, strict=True):
            assert g[(1, *j)] == pytest.approx(w, rel=1e-8, abs=1e-12), (name, i)


def test_one_input_is_the_diagonal_block_of_two():
    kw = dict(C_b=0.1, C_W=[1.0, 1.6, 1.2], lambda_b=0.2, lambda_W=[1.0, 0.5, 2.0], widths=[10, 20])
    two = dntk_fluctuation_flow("erf", x=X2, depth=3, ddntk=True, **kw)
    for k in range(2):
        one = dntk_fluctuation_flow("erf", x=X2[k], depth=3, ddntk=True, **kw)
        for name in "PQRSTU":
            np.testing.assert_allclose(
                getattr(two, name)[:, k, k, k, k], getattr(one, name), rtol=1e-9
            )


def test_widths_enter_through_ratios():
    kw = dict(C_b=0.0, C_W=1.0, lambda_b=0.1, lambda_W=1.0, x=X2[0], depth=4, ddntk=True)
    equal = dntk_fluctuation_flow("tanh", **kw)
    scaled = dntk_fluctuation_flow("tanh", **kw, widths=[7, 7, 7])
    wide = dntk_fluctuation_flow("tanh", **kw, widths=[10, 20, 40])
    for name in "PQRSTU":
        np.testing.assert_allclose(getattr(equal, name), getattr(scaled, name), rtol=1e-12)
        assert abs(getattr(wide, name)[3]) > abs(getattr(equal, name)[3])  # r = 2 accumulates more


def test_single_input_matches_the_books_11_55_11_56_and_infinity_14_17():
    """The general (tensor) recursion against the book's single-input forms, iterated here
    with chi_perp, chi_par, h and scalar Gaussian expectations."""
    act, cb, cw, lb, lw, depth = "gelu", 0.05, 1.7, 0.3, 0.8, 5
    x = np.array([0.9, -0.4, 0.7])
    flow = dntk_fluctuation_flow(act, cb, cw, lb, lw, x, depth, ddntk=True)
    ntk = ntk_fluctuation_flow(act, cb, cw, lb, lw, x, depth)
    p = q = r = s = t = u = 0.0
    for step in range(depth - 1):
        k, th, b = ntk.K[step], ntk.Theta[step], ntk.B[step]
        f, f_next = ntk.F[step], ntk.F[step + 1]
        e = partial(_moment, act, k)  # e(*der) = <prod sigma^(der)>
        ez = partial(_z_moment, act, k)  # ez(*der) = <z prod sigma^(der)>
        chi = float(chi_perp(act, k, cw))
        chi_par, h = cw / k * ez(1, 0), cw / (2 * k) * ez(2, 1)
        qs, pp, qq, tp = e(2, 0), e(1, 1), e(2, 2), e(3, 1)
        source = cw**2 * e(2, 1, 1, 0) * th**2
        ratio = lw * ez(1, 0) + cw * th * ez(2, 1)
        p, q, r, s, t, u = (
            source + cw * chi * qs * b + (cw * chi * qs + chi**2) * p,
            source + lw / cw * f_next + 2 * h * chi_par * th * f + (cw * chi * qs + chi**2) * q,
            chi**2 * r + lw * source / cw + cw**2 * e(3, 1, 1, 1) * th**3
            + chi * (lw * qs + cw * th * tp) * (b + p) + chi * (lw * pp + cw * th * qq) * p,
            chi**2 * s + cw * lw * e(1, 1, 1, 1) * th**2 + cw**2 * e(2, 2, 1, 1) * th**3
            + chi * (lw * pp + cw * th * qq) * b,
            chi**2 * t + 2 * lw * source / cw + cw**2 * e(2, 2, 1, 1) * th**3
            + lw**2 * e(1, 1, 0, 0) * th + ratio**2 * f / k**2
            + 2 * chi * (lw * (qs + pp) + cw * th * (tp + qq)) * q,
            chi**2 * u + cw**2 * e(2, 2, 1, 1) * th**3,
        )  # fmt: skip
        for name, value in zip("PQRSTU", (p, q, r, s, t, u), strict=True):
            assert getattr(flow, name)[step + 1] == pytest.approx(value, rel=1e-8), (name, step)


def _moment(act, k: float, *der) -> float:
    return activation_expectation(act, k, (0,) * len(der), derivatives=der)


def _z_moment(act, k: float, *der) -> float:
    act = get_activation(act)
    fns = [act.fn if n == 0 else act.derivative(n) for n in der]

    def integrand(z):
        out = z
        for fn in fns:
            out = out * np.asarray(fn(z))
        return out

    return gaussian_expectation(integrand, k, kinks=act.kinks)


def test_relu_second_layer_keeps_the_delta_function_exactly():
    """ReLU, two inputs: sigma'' = delta(z) gives <delta(z_0) relu(z_1)> =
    sqrt(K11 - K01^2/K00) / (2 pi sqrt(K00)); with s'_0 too, the chain rule halves it."""
    cw, lw = 2.0, 0.7
    flow = dntk_fluctuation_flow("relu", 0.2, cw, 0.1, lw, X2, 2)
    k, th = flow.K[0], flow.Theta[0]
    delta_relu = np.sqrt(k[1, 1] - k[0, 1] ** 2 / k[0, 0]) / (2 * np.pi * np.sqrt(k[0, 0]))
    assert flow.P[1, 0, 1, 1, 1] == pytest.approx(cw**2 * th[0, 1] ** 2 * delta_relu, rel=1e-9)
    assert flow.P[1, 0, 0, 1, 1] == pytest.approx(
        cw**2 * th[0, 0] * th[0, 1] * delta_relu / 2, rel=1e-9
    )
    np.testing.assert_allclose([flow.P[1, 0, 1, 1, 0], flow.P[1, 0, 0, 0, 0]], 0.0, atol=1e-12)
    cross = activation_expectation("relu", k, (0, 1, 1, 1), derivatives=(1, 0, 1, 0))
    assert flow.Q[1, 0, 1, 1, 1] == pytest.approx(
        flow.P[1, 0, 1, 1, 1] + lw * cw * th[0, 1] * cross, rel=1e-9
    )


def test_relu_is_the_limit_of_smooth_softplus():
    """softplus(beta z)/beta -> ReLU: P and Q converge like 1/beta (Richardson removes it)."""
    kw = dict(C_b=0.1, C_W=[1.0, 2.0, 1.8], lambda_b=0.2, lambda_W=[1.0, 0.5, 1.5], x=X2, depth=3)
    relu = dntk_fluctuation_flow("relu", **kw)
    smooth = {
        beta: dntk_fluctuation_flow(
            get_activation(lambda z, b=beta: jax.nn.softplus(b * z) / b), **kw
        )
        for beta in (40, 80)
    }
    for name in "PQ":
        target = getattr(relu, name)
        err40, err80 = (np.abs(getattr(smooth[b], name) - target).max() for b in (40, 80))
        richardson = 2 * getattr(smooth[80], name) - getattr(smooth[40], name)
        assert 0.4 < err80 / err40 < 0.6  # first order in 1/beta
        assert np.abs(richardson - target).max() < 0.15 * err80


def test_scale_invariant_closed_forms_11_74_11_79():
    """ReLU at criticality with lambda = lambda_hat / L: P = 0 and Q of (11.79), one input."""
    depth, lb_hat, lw_hat = 6, 0.5, 1.5
    x = np.array([1.0, 2.0])
    flow = dntk_fluctuation_flow("relu", 0.0, 2.0, lb_hat / depth, lw_hat / depth, x, depth)
    k_star, a2, a4 = 2.0 * 2.5, 0.5, 0.5
    ell = np.arange(1, depth + 1)
    q = (
        ell
        * (ell**2 - 1)
        / (6 * depth**2)
        * a4
        / a2
        * (lb_hat + lw_hat * a2 * k_star)
        * lw_hat
        * k_star
    )
    np.testing.assert_allclose(flow.P, 0.0, atol=1e-12)
    np.testing.assert_allclose(flow.Q, q, rtol=1e-10)


def test_deep_linear_closed_forms_infinity_46_48():
    depth, lb_hat, lw_hat = 6, 0.4, 1.3
    x = np.array([1.0, 0.5])
    flow = dntk_fluctuation_flow(
        "linear", 0.0, 1.0, lb_hat / depth, lw_hat / depth, x, depth, ddntk=True
    )
    k = 0.625
    ell = np.arange(1, depth + 1)
    common = ell**2 * (ell**2 - 1) / (12 * depth**3) * (lb_hat + lw_hat * k)
    np.testing.assert_allclose(flow.R, 0.0, atol=1e-12)
    np.testing.assert_allclose(flow.U, 0.0, atol=1e-12)
    np.testing.assert_allclose(flow.S, common * (lb_hat + lw_hat * k) * lw_hat, rtol=1e-10)
    np.testing.assert_allclose(flow.T, common * lw_hat**2 * k, rtol=1e-10)


def test_tanh_k_star_zero_asymptotics_11_100_11_102_infinity_34_37():
    """tanh at criticality with lambda_b = 1/l, lambda_W = 1 (9.95): P/Theta^2 -> -l/12 (11.100),
    Q/Theta^2 -> -(l/16) lambda_b/(lambda_b + lambda_W/2) (11.102), and R, S, T K/Theta^3 -> l
    times -(1/48) 5/1.5, (1/12)(1/3), (1/32)(2/3)^2, U K/Theta^3 -> 1/(2l) (∞.34)-(∞.37). The
    asymptotic forms hold up to O(log l / l) corrections: 1-3% at l = 400 (checked by hand to
    shrink further towards l = 3000)."""
    depth = 400
    ell = np.arange(1, depth + 1)
    flow = dntk_fluctuation_flow(
        "tanh", 0.0, 1.0, 1.0 / ell, 1.0, np.array([1.0]), depth, ddntk=True
    )
    theta, ratio = flow.Theta[-1], flow.K[-1] / flow.Theta[-1] ** 3
    assert flow.P[-1] / theta**2 / depth == pytest.approx(-1 / 12, rel=0.02)
    assert flow.Q[-1] / theta**2 / depth == pytest.approx(-1 / 24, rel=0.03)
    assert flow.R[-1] * ratio / depth == pytest.approx(-5 / 72, rel=0.02)
    assert flow.S[-1] * ratio / depth == pytest.approx(1 / 36, rel=0.02)
    assert flow.T[-1] * ratio / depth == pytest.approx(1 / 72, rel=0.04)
    assert flow.U[-1] * ratio * depth == pytest.approx(1 / 2, rel=0.03)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="perceptron"), "activation"),
        (dict(activation="relu", ddntk=True), "activation"),
        (dict(ddntk="yes"), "ddntk"),
        (dict(x=np.ones((3, 2))), "x"),
        (dict(x=np.array([[1.0, 0.0], [1.0, 0.0]])), "x"),
        (dict(depth=0), "depth"),
        (dict(widths=[4]), "widths"),
        (dict(C_W=-1.0), "C_W"),
        (dict(lambda_W=[1.0, 2.0]), "lambda_W"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(activation="tanh", C_b=0.0, C_W=1.0, lambda_b=0.0, lambda_W=1.0, x=X2, depth=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dntk_fluctuation_flow(**args)


def test_second_layer_against_sampled_networks():
    """Layer 2 is exact at any width: n_1 E[dH z] and n_1 E[ddNTK] of 1500 tanh networks with
    n_1 = 6 (neuron pairs i != j) agree with P, Q, R, S, T, U within 4.5 standard errors."""
    n, m = 6, 3
    cfg = mlp((2, n, n), "tanh", C_b=0.1, C_W=1.4, lambda_b=0.3, lambda_W=1.2)
    flow = dntk_fluctuation_flow("tanh", 0.1, 1.4, 0.3, 1.2, X2, 2, ddntk=True)
    off = ~np.eye(m, dtype=bool)
    d = sample_dntk(jax.random.PRNGKey(3), cfg, X2, 1500, layer=2, neurons=m, progress=False)
    dd = sample_ddntk(jax.random.PRNGKey(4), cfg, X2, 1500, layer=2, neurons=2, progress=False)
    off2 = ~np.eye(2, dtype=bool)
    z = d.z[:, :, :m]
    measured = {
        "P": np.einsum("sijjabc,sdi->sijabcd", d.dntk, z)[:, off],
        "Q": np.einsum("siijabc,sdj->sijabcd", d.dntk, z)[:, off],
        "R": np.einsum("siijjabcd->sijabcd", dd.ddih)[:, off2],
        "S": np.einsum("siijjabcd->sijabcd", dd.ddiih)[:, off2],
        "T": np.einsum("sijijabcd->sijabcd", dd.ddiih)[:, off2],
        "U": np.einsum("sijjiabcd->sijabcd", dd.ddiih)[:, off2],
    }
    layout = {"T": "acdb", "U": "adbc"}  # n E[ddIIH_ijij] = T_{1342}, n E[ddIIH_ijji] = U_{1423}
    for name, samples in measured.items():
        est = stats.mean_estimate(n * samples.mean(1))
        theory = np.einsum(f"{layout.get(name, 'abcd')}->abcd", getattr(flow, name)[1])
        for idx in ((0, 0, 0, 0), (0, 1, 1, 0), (1, 0, 1, 1)):
            check = stats.honest_check(name, est[idx], theory[idx])
            assert check.passed, (name, idx, est[idx], theory[idx])
