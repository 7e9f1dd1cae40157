"""Tests of pdltlib.end_of_training: the finite-width solution of gradient descent (section ∞.2)."""

from types import SimpleNamespace

import jax
import numpy as np
import pytest

from pdltlib import end_of_training as eot
from pdltlib import prediction
from pdltlib.ddntk import empirical_ddntk
from pdltlib.dntk import empirical_dntk
from pdltlib.network import forward, init_params, mlp
from pdltlib.ntk import empirical_ntk, gradient_step

X = np.array([[0.8, -0.3, 0.5], [0.1, 0.9, -0.4], [-0.5, 0.2, 0.6]])  # 2 training, 1 test
Y = np.array([[0.3, -0.4], [0.5, 0.1]])
CONFIG = mlp((3, 6, 5, 2), "tanh", C_b=0.1, C_W=1.3, lambda_b=0.5, lambda_W=1.0)
PARAMS = init_params(jax.random.PRNGKey(3), CONFIG)
Z = np.asarray(forward(PARAMS, X, CONFIG.activation)[-1])
H = np.asarray(empirical_ntk(PARAMS, X, CONFIG))
DH = np.asarray(empirical_dntk(PARAMS, X, CONFIG))
DDIH, DDIIH = (np.asarray(t) for t in empirical_ddntk(PARAMS, X, CONFIG))
NET = (Z, H, DH, DDIH, DDIIH, Y)
H_TRAIN = eot.flatten(H)[0][:4, :4]  # the flat training block: (input, neuron) pairs
ETA = 0.6 / np.linalg.eigvalsh(H_TRAIN)[-1]


def _scaled(g: float):
    """The network with its NTK differentials scaled by g (perturbation theory's parameter)."""
    return Z, H, g * DH, g * DDIH, g * DDIIH, Y


def test_flat_index_is_input_major_with_the_training_inputs_first():
    flat = eot.flatten(H, DH)
    assert flat[0][2 * 2 + 1, 0 * 2 + 1] == H[1, 1, 2, 0]  # (input 2, neuron 1), (input 0, ...)
    assert flat[1][3, 0, 5] == DH[1, 0, 1, 1, 0, 2]
    assert flat[2] is None and flat[3] is None


def test_zero_differentials_is_the_frozen_ntk_solution_with_wiring():
    for steps in (0, 1, 7, None):
        sol = eot.perturbative_dynamics(Z, H, None, None, None, Y, ETA, steps)
        assert np.all(sol.interaction == 0)
        t = 1000 if steps is None else steps
        direct = eot.taylor_dynamics(Z, H, None, None, None, Y, ETA, t)
        np.testing.assert_allclose(sol.total, direct, rtol=0, atol=1e-12)
    # one output component and no wiring: the chapter-10 kernel solution (10.39)
    z1, h1 = Z[:, :1], H[:1, :1]
    sol = eot.perturbative_dynamics(z1, h1, None, None, None, Y[:, :1], ETA, 5)
    np.testing.assert_allclose(
        sol.free, prediction.trained_outputs(h1[0, 0], z1, Y[:, :1], eta=ETA, steps=5), atol=1e-13
    )


def test_step_zero_is_the_initial_output():
    sol = eot.perturbative_dynamics(*NET, ETA, 0)
    np.testing.assert_array_equal(sol.total, Z)
    np.testing.assert_array_equal(eot.taylor_dynamics(*NET, ETA, 0), Z)


def test_one_step_is_exactly_first_order():
    """After one step the update (∞.4) is linear in the differentials: no second order."""
    sol = eot.perturbative_dynamics(*NET, ETA, 1)
    np.testing.assert_allclose(sol.total, eot.taylor_dynamics(*NET, ETA, 1), rtol=0, atol=1e-14)


def test_long_training_reaches_the_end_of_training_and_the_books_projectors():
    limit = eot.perturbative_dynamics(*NET, ETA, None)
    late = eot.perturbative_dynamics(*NET, ETA, 2000)
    np.testing.assert_allclose(late.total, limit.total, rtol=0, atol=1e-12)
    np.testing.assert_allclose(limit.total[:2], Y, rtol=0, atol=1e-13)  # fully trained (∞.126)
    universal = eot.trained_output(*NET, eta=ETA)  # (∞.141) with the projectors (∞.142)-(∞.147)
    for part in ("free", "dntk", "ddntk_1", "ddntk_2"):
        np.testing.assert_allclose(getattr(universal, part), getattr(limit, part), atol=1e-13)


@pytest.mark.parametrize("steps", [3, 25, None])
def test_first_order_solution_matches_the_iterated_dynamics_to_second_order(steps):
    """|direct - (free + g z^I)| must fall like g^2 (first-order perturbation theory)."""
    sol = eot.perturbative_dynamics(*NET, ETA, steps)
    errors = []
    for g in (0.2, 0.1, 0.05):
        direct = eot.taylor_dynamics(*_scaled(g), ETA, 1000 if steps is None else steps)
        errors.append(np.abs(direct - sol.free - g * sol.interaction).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(np.abs(ratios - 4) < 0.4), ratios


def test_newton_two_steps_match_the_books_projectors_infinity_148():
    universal = eot.trained_output(*NET, algorithm="newton")
    errors = []
    for g in (0.04, 0.02, 0.01):
        direct = eot.taylor_dynamics(*_scaled(g), None, algorithm="newton")
        errors.append(np.abs(direct - universal.free - g * universal.interaction).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(np.abs(ratios - 4) < 0.4), ratios
    assert np.all(universal.ddntk_2 == 0)  # (∞.148): only Z_B and Z_IB


def test_single_input_projectors_are_the_books_infinity_163_164():
    theta = np.array([[1.7]])
    flow = eot.gradient_descent_projectors(theta, 0.0)  # gradient flow (∞.163)
    t = theta[0, 0]
    np.testing.assert_allclose(flow.Z_A.ravel(), 1 / (2 * t**2))
    np.testing.assert_allclose(flow.Z_B.ravel(), 1 / (2 * t**2))
    for name in ("Z_IA", "Z_IB", "Z_IIA"):
        np.testing.assert_allclose(getattr(flow, name).ravel(), -1 / (6 * t**3))
    np.testing.assert_allclose(flow.Z_IIB.ravel(), -1 / (2 * t**3))
    eta = 0.7
    gd = eot.gradient_descent_projectors(theta, eta)  # footnote 24: (∞.164)
    np.testing.assert_allclose(gd.Z_A.ravel(), (1 - eta * t) / (t**2 * (2 - eta * t)))
    np.testing.assert_allclose(gd.Z_B.ravel(), 1 / (2 * t**2))


def test_small_steps_approach_gradient_flow():
    flow, small = (eot.gradient_descent_projectors(H_TRAIN, e) for e in (0.0, 1e-7))
    for name in ("Z_A", "Z_B", "Z_IA", "Z_IB", "Z_IIA", "Z_IIB"):
        np.testing.assert_allclose(getattr(small, name), getattr(flow, name), rtol=1e-5, atol=1e-8)


def test_one_input_at_eta_theta_one_is_newton():
    """With one training input and eta = 1/Theta, one step fits it: GD is Newton's method."""
    theta = np.array([[1.3]])
    gd, newton = eot.gradient_descent_projectors(theta, 1 / 1.3), eot.newton_projectors(theta)
    for name in ("Z_A", "Z_B", "Z_IA", "Z_IB", "Z_IIA", "Z_IIB"):
        np.testing.assert_allclose(getattr(gd, name), getattr(newton, name), atol=1e-14)


def test_mean_ntk_projectors_differ_by_the_ntk_fluctuation():
    own = eot.trained_output(*NET, eta=ETA)
    theta = prediction.frozen_ntk(CONFIG, X).Theta[-1]
    book = eot.trained_output(*NET, eta=ETA, mean_ntk=theta)
    np.testing.assert_array_equal(own.free, book.free)  # the free part is exact in both
    assert np.abs(own.interaction - book.interaction).max() > 1e-6
    np.testing.assert_allclose(book.total[:2], Y, atol=1e-12)  # brackets vanish on A


# ---------------------------------------------------------------------------------------------
# the ensemble mean


def _flows(n_in: int, rng, depth: int = 2):
    """Synthetic output-layer statistics with the index symmetries of the book's tensors."""
    m = rng.normal(size=(n_in, n_in))
    theta = m @ m.T + n_in * np.eye(n_in)
    k = np.cov(rng.normal(size=(n_in, 3 * n_in)))
    sym = lambda t: (t + t.transpose(1, 0, 2, 3)) / 2  # noqa: E731
    stats = {
        "K": k,
        "Theta": theta,
        "H1": (lambda s: s + s.T)(rng.normal(size=(n_in, n_in))),
        "A": (lambda a: a + a.transpose(2, 3, 0, 1))(sym(rng.normal(size=(n_in,) * 4))),
        "B": rng.normal(size=(n_in,) * 4),
        "P": (lambda t: t + t.transpose(0, 2, 1, 3))(rng.normal(size=(n_in,) * 4)),  # P_0123=P_0213
        **{name: rng.normal(size=(n_in,) * 4) for name in "QRSTU"},
    }
    return SimpleNamespace(**{k_: np.stack([v] * depth) for k_, v in stats.items()})


def _book_single_input_mean(f, y, eta):
    """(∞.155)-(∞.160) as printed, for one training input (alpha = 0, any test input d), with
    the sign of m^{Delta NTK} flipped as the module corrects it; n_L outputs."""
    K, th = f.K[-1], f.Theta[-1]
    A, B, P, Q, R, S, T, U = (getattr(f, s)[-1] for s in "ABPQRSTU")
    proj = eot.gradient_descent_projectors(th[:1, :1], eta)
    za, zb, zia, zib, ziia, ziib = (
        float(getattr(proj, s).ravel()[0]) for s in ("Z_A", "Z_B", "Z_IA", "Z_IB", "Z_IIA", "Z_IIB")
    )
    n_out = y.shape[1]
    yy = y[0]
    cubic = yy * (yy @ yy + n_out * K[0, 0]) + 2 * yy * K[0, 0]
    t = th[0, 0]

    def raw(d):
        delta = (A[d, 0, 0, 0] + B[d, 0, 0, 0] + n_out * B[d, 0, 0, 0]) / t**2 * yy  # (∞.157)
        dntk = (
            -(
                2 * (P[d, 0, 0, 0] + Q[d, 0, 0, 0] + n_out * Q[d, 0, 0, 0]) * zb
                + (n_out * P[0, d, 0, 0] + Q[0, d, 0, 0] + Q[0, 0, d, 0]) * za
                + (P[0, d, 0, 0] + n_out * Q[0, d, 0, 0] + Q[0, 0, d, 0]) * za
            )
            * yy
        )  # (∞.158)
        dd1 = (
            -(3 * R[d, 0, 0, 0] * zib + (R[0, d, 0, 0] + R[0, 0, 0, d] + R[0, 0, d, 0]) * zia)
            * cubic
        )  # (∞.159)
        dd2 = (
            -(
                (S[d, 0, 0, 0] + T[d, 0, 0, 0] + U[d, 0, 0, 0]) * ziib
                + (S[0, 0, d, 0] + T[0, d, 0, 0] + U[0, 0, 0, d]) * ziia
            )
            * cubic
        )  # (∞.160)
        return np.array([-delta, dntk, dd1, dd2])  # corrected sign of m^{Delta NTK}

    return [raw(d) - th[d, 0] / t * raw(0) for d in range(th.shape[0])]


@pytest.mark.parametrize("n_out", [1, 2])
def test_mean_prediction_is_the_books_single_input_formulas(n_out):
    rng = np.random.default_rng(4)
    f = _flows(2, rng)
    y = rng.normal(size=(1, n_out))
    eta = 0.4 / f.Theta[-1][0, 0]
    mp = eot.mean_prediction(f, y, eta=eta)
    book = _book_single_input_mean(f, y, eta)
    for d in range(2):
        for k, part in enumerate(("ntk_fluctuation", "dntk", "ddntk_1", "ddntk_2")):
            np.testing.assert_allclose(getattr(mp, part)[d], book[d][k], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(mp.at(7.0)[0], y[0], atol=1e-13)  # the training input: m = y


def test_mean_free_part_is_the_average_of_the_exact_free_solution():
    """Gaussian NTK fluctuations dH = s sum_k xi_k M_k with E[dH dH] = s^2 sum_k M_k M_k = A/n
    (B = 0): the average of z - H_DA H_AA^{-1} (z_A - y) over xi (Gauss-Hermite, exact in xi up
    to O(s^4)) is the kernel prediction + ntk_fluctuation / n."""
    rng = np.random.default_rng(5)
    n_in, n_train = 3, 2
    f = _flows(n_in, rng)
    mats = [(lambda m: m + m.T)(rng.normal(size=(n_in, n_in))) for _ in range(2)]
    f.A[-1] = sum(np.einsum("ab,cd->abcd", m, m) for m in mats)
    f.B[-1] = 0.0
    f.H1[-1] = 0.0
    y = rng.normal(size=(n_train, 1))
    mp = eot.mean_prediction(f, y, eta=0.0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(12)
    weights = weights / weights.sum()
    width = 1e6  # s^2 = 1/n
    average = 0.0
    for x1, w1 in zip(nodes, weights, strict=True):
        for x2, w2 in zip(nodes, weights, strict=True):
            ntk = f.Theta[-1] + (x1 * mats[0] + x2 * mats[1]) / np.sqrt(width)
            average = average + w1 * w2 * prediction.kernel_prediction(ntk, y)
    shift = width * (average - mp.kernel)
    np.testing.assert_allclose(shift, mp.ntk_fluctuation, rtol=1e-4, atol=1e-8)


def test_mean_interaction_is_the_average_of_the_universal_form():
    """dNTKs linear in Gaussian outputs, dH_pqr = sum_s G_pqrs z_s, with constant ddNTKs: the
    exact Gaussian average of trained_output's interaction (mean-NTK projectors) equals
    mean_prediction's parts with P, Q, R, S, T, U read off from G and the ddNTKs."""
    rng = np.random.default_rng(6)
    n_in = 2
    f = _flows(n_in, rng)
    th = f.Theta[-1]
    k = f.K[-1]
    y = np.array([[0.7]])
    # one output: E[dH_{pqr} z_s] = P_pqrs + Q_pqrs + Q_prqs; realize it with Q = 0
    p = rng.normal(size=(n_in,) * 4)
    p = (p + p.transpose(0, 2, 1, 3)) / 2
    f.P[-1], f.Q[-1] = p, 0.0
    g = np.einsum("pqrt,ts->pqrs", p, np.linalg.inv(k))  # E[dH z] = G K = P
    r, s, t, u = (getattr(f, name)[-1] for name in "RSTU")
    ddih = r + np.einsum("prsq->pqrs", r) + np.einsum("psqr->pqrs", r)  # (∞.11), one output
    ddiih = s + np.einsum("prsq->pqrs", t) + np.einsum("psqr->pqrs", u)  # (∞.12)
    half = 200_000
    z = rng.multivariate_normal(np.zeros(n_in), k, size=half)
    z = np.concatenate([z, -z])  # antithetic pairs: odd moments vanish exactly
    eta = 0.3 / th[0, 0]
    sol = eot.trained_output(
        z[:, :, None], np.broadcast_to(th, (len(z), 1, 1, n_in, n_in)),
        np.einsum("pqrs,ks->kpqr", g, z)[:, None, None, None],
        np.broadcast_to(ddih, (len(z), 1, 1, 1, 1) + (n_in,) * 4),
        np.broadcast_to(ddiih, (len(z), 1, 1, 1, 1) + (n_in,) * 4), y, eta=eta, mean_ntk=th,
    )  # fmt: skip
    mp = eot.mean_prediction(f, y, eta=eta)
    for part in ("dntk", "ddntk_1", "ddntk_2"):
        pairs = (getattr(sol, part)[:half, 1, 0] + getattr(sol, part)[half:, 1, 0]) / 2
        error = pairs.std() / np.sqrt(half)
        assert abs(pairs.mean() - getattr(mp, part)[1, 0]) < 5 * error + 1e-12, part


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: eot.perturbative_dynamics(*NET, -0.1, 3), "eta"),
        (lambda: eot.perturbative_dynamics(*NET, 10.0, 3), "eta"),
        (lambda: eot.perturbative_dynamics(*NET, ETA, -1), "steps"),
        (lambda: eot.perturbative_dynamics(*NET, ETA, 2.5), "steps"),
        (lambda: eot.taylor_dynamics(*NET, ETA, None), "steps"),
        (lambda: eot.taylor_dynamics(*NET, ETA, 2, algorithm="adam"), "algorithm"),
        (lambda: eot.trained_output(*NET), "eta"),
        (lambda: eot.trained_output(*NET, eta=ETA, algorithm="sgd"), "algorithm"),
        (lambda: eot.trained_output(*NET, eta=ETA, mean_ntk=np.eye(2)), "mean_ntk"),
        (lambda: eot.trained_output(Z, H[:1], DH, DDIH, DDIIH, Y, eta=ETA), "ntk"),
        (lambda: eot.trained_output(Z, H, DH[..., :2], DDIH, DDIIH, Y, eta=ETA), "dntk"),
        (lambda: eot.trained_output(Z, H, DH, DDIH, DDIIH, Y[:, :1], eta=ETA), "y_train"),
        (lambda: eot.trained_output(Z, H * np.nan, DH, DDIH, DDIIH, Y, eta=ETA), "ntk"),
        (lambda: eot.gradient_descent_projectors(-np.eye(2), 0.1), "positive definite"),
        (lambda: eot.gradient_descent_projectors(np.eye(2), np.inf), "eta"),
        (lambda: eot.newton_projectors(np.ones(3)), "ntk_train"),
        (lambda: eot.mean_prediction(object(), Y), "stats"),
    ],
)
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mean_prediction_needs_the_ddntk_statistics_and_a_positive_width():
    f = _flows(2, np.random.default_rng(7))
    missing = SimpleNamespace(**{**vars(f), "R": None})
    with pytest.raises(ValueError, match="R"):
        eot.mean_prediction(missing, np.array([[1.0]]), eta=0.1)
    with pytest.raises(ValueError, match="width"):
        eot.mean_prediction(f, np.array([[1.0]]), eta=0.1).at(0)


def test_one_network_matches_real_training_to_the_next_order():
    """Trained tanh networks minus the perturbative solution at widths 16, 64, 256: with the
    network's own NTK in the projectors the error falls like n^-2 (second order in the
    differentials), with the mean NTK (the book's (∞.154)) like n^-3/2 (NTK fluctuation times
    differential)."""
    x = np.array([[1.0, 0.4, -0.6], [0.2, -0.9, 0.5]])
    y = np.array([[0.6]])
    widths, rms = np.array([16, 64, 256]), {"own": [], "mean": [], "free": []}
    for n in widths:
        config = mlp((3, int(n), int(n), 1), "tanh", C_b=0.0, C_W=1.0, lambda_b=(1.0, 0.5, 1 / 3),
                     lambda_W=1.0)  # fmt: skip
        theta = prediction.frozen_ntk(config, x).Theta[-1]
        eta = 0.4 * prediction.stability_bound(theta[:1, :1])
        errors = {k: [] for k in rms}
        for key in jax.random.split(jax.random.PRNGKey(12), 6):
            p = init_params(key, config)
            z = np.asarray(forward(p, x, config.activation)[-1])
            h = np.asarray(empirical_ntk(p, x, config))
            dh = np.asarray(empirical_dntk(p, x, config))
            net = (z, h, dh, *(np.asarray(t) for t in empirical_ddntk(p, x, config)), y)
            for _ in range(80):
                p = gradient_step(p, x[:1], y, config, eta)
            trained = np.asarray(forward(p, x, config.activation)[-1])[1, 0]
            own = eot.trained_output(*net, eta=eta)
            book = eot.trained_output(*net, eta=eta, mean_ntk=theta)
            errors["own"].append(trained - own.total[1, 0])
            errors["mean"].append(trained - book.total[1, 0])
            errors["free"].append(trained - own.free[1, 0])
        for k, v in errors.items():
            rms[k].append(np.sqrt(np.mean(np.square(v))))
    slope = {k: np.polyfit(np.log(widths), np.log(v), 1)[0] for k, v in rms.items()}
    # what the free part alone misses (the O(1/n) dNTK part) is far larger from n = 64 on
    assert np.all(np.array(rms["free"][1:]) > 10 * np.array(rms["own"][1:])), rms
    assert abs(slope["own"] + 2) < 0.3, slope
    assert abs(slope["mean"] + 1.5) < 0.3, slope
    assert slope["own"] < slope["mean"] - 0.25, slope
