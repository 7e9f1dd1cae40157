"""The mean of the fully trained ensemble (∞.155)-(∞.160) against networks sampled at
initialization: the average over tanh networks of each part of the per-network solution
(∞.154) (`trained_output`) has the 1/n coefficient that `mean_prediction` gives that part.

tests/test_end_of_training.py checks `trained_output` against the iterated dynamics and
`mean_prediction` against synthetic Gaussian ensembles; here the networks are real: chapter 12's
setup (tanh at criticality with the depth-scaled rates (9.95) lambda_b = 3/l, lambda_W = 1,
depth L = 3, one training input x_+ with y = 1, one test input x_-), widths 16, 32, 48, each
network's z, NTK, dNTK and ddNTKs on {x_+, x_-} from one compiled program.

Estimators. Flipping the sign of the last layer, (W^(L), b^(L)) -> -(W^(L), b^(L)), maps the
initialization distribution onto itself (zero-mean Gaussians), so E[f(theta)] = E[(f(theta) +
f(F theta)) / 2] for any f: averaging each network with its flipped twin is exactly unbiased.
z is linear in the last layer, so the twin has z -> -z and every k-th derivative of z flips
sign: NTK -> NTK, dNTK -> -dNTK, ddNTKs -> ddNTKs (even, odd and even numbers of factors of z;
the learning-rate tensor commutes with the flip). Hence the twin's trained output on y is minus
the network's on -y, and the twin average of a part is (part(y) - part(-y)) / 2, from the one
network's tensors. It removes every term odd in z exactly: for the free part
z - H_DA H_AA^{-1} (z_A - y) it leaves P y, P = H_DA H_AA^{-1} (so the zero-mean control variate
z_- - M0 z_+ with a fixed M0, being odd, is already removed), and its noise is the O(1/sqrt(n))
NTK fluctuation; the interaction parts keep O(1/n) noise per network.

Step size. eta = 0.2 b, b = 2 / Theta_++: the projectors differ from gradient flow's, and every
sampled network's own gradient descent converges (eta H_++ < 2 needs H_++ < 5 Theta_++; the NTK
of a width-16 network fluctuates by about 30%, and among 10^4 such networks some exceed
3.3 Theta_++, so at eta = 0.3 b trained_output rightly refuses them).
"""

import itertools

import jax
import numpy as np
import pytest

from pdltlib import end_of_training as eot
from pdltlib import prediction, stats
from pdltlib.ddntk import sample_ddntk
from pdltlib.dntk_fluctuations import dntk_fluctuation_flow
from pdltlib.network import mlp

L = 3
X = np.array([[1.5, 0.6, -0.9], [-0.6, 0.9, 1.2]])  # x_+ (training), x_- (test)
Y = np.array([[1.0]])
HYPER = dict(C_b=0.0, C_W=1.0, lambda_b=3.0 / np.arange(1, L + 1), lambda_W=np.ones(L))
WIDTHS = np.array([16, 32, 48])
N_NETWORKS = 4000
FRACTIONS = (0.0, 0.2)  # eta / (2 / Theta_++): gradient flow and one step size
PARTS = ("dntk", "ddntk_1", "ddntk_2")


@pytest.fixture(scope="module")
def flow():
    return dntk_fluctuation_flow("tanh", *HYPER.values(), X, L, ddntk=True)


@pytest.fixture(scope="module")
def networks():
    """{n: DDNTKSample with z, NTK, dNTK} for N_NETWORKS tanh networks at each width."""
    out = {}
    for i, n in enumerate(WIDTHS):
        config = mlp((3, int(n), int(n), 1), "tanh", **HYPER)
        key = jax.random.PRNGKey(1500 + i)
        out[int(n)] = sample_ddntk(key, config, X, N_NETWORKS, with_dntk=True, progress=False)
    return out


def _twin_average(net, eta: float, mean_ntk=None) -> dict[str, np.ndarray]:
    """Every part of trained_output at x_-, averaged over each network and its flipped twin."""
    plus, minus = (
        eot.trained_output(net.z, net.ntk, net.dntk, net.ddih, net.ddiih, sign * Y, eta=eta,
                           mean_ntk=mean_ntk)
        for sign in (1, -1)
    )  # fmt: skip
    return {p: (getattr(plus, p) - getattr(minus, p))[:, 1, 0] / 2 for p in ("free", *PARTS)}


def _coefficient(samples: list[np.ndarray]) -> tuple[stats.Estimate, float]:
    """c_1 of M(n) = c_1/n + c_2/n^2 fitted to the per-width means of ``samples`` (one array of
    per-network values per width, infinite-width value subtracted), and its truncation: the
    shift of c_1 when c_3/n^3 joins the fit (what the next order could move it by)."""
    means = [stats.mean_estimate(s) for s in samples]
    value = np.array([float(m.value) for m in means])
    error = np.array([float(m.stderr) for m in means])
    c12 = stats.fit_inverse_width(WIDTHS, value, error, powers=(1, 2))
    c123 = stats.fit_inverse_width(WIDTHS, value, error, powers=(1, 2, 3))
    return c12[1], abs(float(c12[1].value) - float(c123[1].value))


def _check(name: str, samples: list[np.ndarray], theory: float) -> stats.Check:
    coefficient, truncation = _coefficient(samples)
    return stats.honest_check(name, coefficient, theory, truncation=truncation, infinite_width=0.0)


def test_interaction_parts_average_to_the_mean_prediction(networks, flow):
    """The dNTK, first- and second-ddNTK parts of (∞.154), averaged over the sampled networks,
    against (∞.158)-(∞.160), for gradient flow and eta = 0.2 (2/Theta_++), with the projectors
    of each network's own NTK (the solution exact to first order in the differentials) and of
    the mean NTK (the book's form): the two differ at O(1/n^2) on average. The paired
    difference of the two step sizes (same networks) is the algorithm dependence of each part,
    zero at infinite width."""
    theta = flow.Theta[-1]
    bound = prediction.stability_bound(theta[:1, :1])
    means = {f: eot.mean_prediction(flow, Y, eta=f * bound) for f in FRACTIONS}
    checks = []
    for label, mean_ntk in (("own NTK", None), ("mean NTK", theta)):
        parts = {
            f: [_twin_average(networks[int(n)], f * bound, mean_ntk) for n in WIDTHS]
            for f in FRACTIONS
        }
        for f, p in itertools.product(FRACTIONS, PARTS):
            samples = [s[p] for s in parts[f]]
            checks.append(_check(f"{p}, eta = {f} b, {label}", samples, getattr(means[f], p)[1, 0]))
        low, high = FRACTIONS
        for p in ("ddntk_1", "ddntk_2"):  # the dNTK part's difference is too small to resolve
            paired = [b[p] - a[p] for a, b in zip(parts[low], parts[high], strict=True)]
            theory = getattr(means[high], p)[1, 0] - getattr(means[low], p)[1, 0]
            checks.append(
                _check(f"{p}, eta = {high} b minus gradient flow, {label}", paired, theory)
            )
    stats.assert_checks(checks)


def test_free_part_second_order_is_the_sign_corrected_ntk_variance(networks, flow):
    """The twin-averaged free part is P y = H_-+ H_++^{-1} y. Split exactly as the kernel
    prediction + its first order in H - Theta (kernel_prediction_derivative, linear in the
    NTK, mean H1/n: (9.3)) + the remainder, the remainder is second order in the NTK
    fluctuation and its mean's 1/n coefficient is mean_prediction's ntk_fluctuation, the
    NTK-variance term (∞.157) with the corrected sign; the book's sign is rejected. The
    remainder's noise is O(1/n) per network. The first-order piece's mean is linear in the NTK
    mean's correction H1 (chapter 9's check), its 1/n coefficient here is only 0.007, and its
    noise is the O(1/sqrt n) NTK fluctuation: checking the whole free part against
    linear_model with power would take about 10^5 networks per width."""
    theta = flow.Theta[-1]
    mean = eot.mean_prediction(flow, Y, eta=0.0)
    remainder = []
    for n in WIDTHS:
        net = networks[int(n)]
        free = _twin_average(net, 0.0)["free"]
        first = prediction.kernel_prediction_derivative(theta, net.ntk[:, 0, 0] - theta, Y)
        exact = prediction.kernel_prediction(net.ntk[:, 0, 0], Y)[:, 1, 0]
        np.testing.assert_allclose(free, exact, rtol=0, atol=1e-12)  # the twins leave P y
        remainder.append(free - mean.kernel[1, 0] - first[:, 1, 0])
    name = "free part beyond first order in H - Theta (NTK variance)"
    check = _check(name, remainder, mean.ntk_fluctuation[1, 0])
    stats.assert_checks([check])
    book = -mean.ntk_fluctuation[1, 0]  # (∞.155) as printed adds it with the opposite sign
    assert abs(check.mc.value - book) > 5 * float(check.mc.stderr) + check.truncation, check
