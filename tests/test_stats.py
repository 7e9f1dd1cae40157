import numpy as np
import pytest

from pdltlib import stats


def test_mean_estimate_standard_error():
    rng = np.random.default_rng(200)
    x = rng.normal(1.0, 2.0, size=40_000)
    est = stats.mean_estimate(x)
    assert abs(est.stderr - 2.0 / np.sqrt(x.size)) < 0.02 * est.stderr
    assert abs(est.value - 1.0) < 4.5 * est.stderr


def test_jackknife_of_a_mean_is_the_mean():
    rng = np.random.default_rng(201)
    x = rng.normal(size=(500, 3))
    jk = stats.jackknife(lambda m: m, x, n_blocks=500)
    plain = stats.mean_estimate(x)
    np.testing.assert_allclose(jk.value, plain.value, rtol=1e-12)
    np.testing.assert_allclose(jk.stderr, plain.stderr, rtol=1e-10)


def test_jackknife_removes_the_bias_of_a_square():
    rng = np.random.default_rng(202)
    # E[(mean x)^2] = mu^2 + sigma^2/N: the plug-in estimate is biased, the jackknife is not
    values = [stats.jackknife(lambda m: m**2, rng.normal(0.0, 1.0, 20)).value for _ in range(4000)]
    assert abs(np.mean(values)) < 4.5 * np.std(values) / np.sqrt(len(values))


def test_four_point_estimators_vanish_for_gaussian_neurons():
    rng = np.random.default_rng(203)
    z = rng.normal(size=(4000, 2, 16))
    pairs = stats.connected_four_point_pairs(z)
    same = stats.connected_four_point_same_neuron(z)
    assert np.all(np.abs(pairs.value) < 4.5 * pairs.stderr)
    assert np.all(np.abs(same.value) < 4.5 * same.stderr)


def test_four_point_estimators_on_a_random_variance_model():
    """z_i = sqrt(g) xi_i with g random per network: connected pair correlator = Var(g),
    same-neuron connected correlator = 3 Var(g) (exactly)."""
    rng = np.random.default_rng(204)
    g = rng.choice([0.5, 1.5], size=(20_000, 1, 1))
    z = np.sqrt(g) * rng.normal(size=(20_000, 1, 8))
    pairs = stats.connected_four_point_pairs(z)[0, 0, 0, 0]
    same = stats.connected_four_point_same_neuron(z)[0, 0, 0, 0]
    assert abs(pairs.value - 0.25) < 4.5 * pairs.stderr
    assert abs(same.value - 0.75) < 4.5 * same.stderr
    assert 0.25 > 10 * pairs.stderr  # resolvable


def test_two_point():
    rng = np.random.default_rng(205)
    z = rng.normal(size=(3000, 2, 5)) * np.array([1.0, 2.0])[None, :, None]
    tp = stats.two_point(z)
    np.testing.assert_array_less(np.abs(tp.value - np.diag([1.0, 4.0])), 4.5 * tp.stderr)


def test_honest_check_logic_and_table():
    est = stats.Estimate(1.02, 0.01, 100)
    good = stats.honest_check("K", est, 1.0, infinite_width=0.9)
    assert good.passed and good.resolvable and good.ok and abs(good.z - 2.0) < 1e-12
    weak = stats.honest_check("K", est, 1.0, infinite_width=0.99)
    assert weak.passed and not weak.resolvable and not weak.ok
    bad = stats.honest_check("K", est, 0.9)
    assert not bad.passed
    with_tau = stats.honest_check("K", est, 0.9, truncation=0.1)
    assert with_tau.passed
    # the truncation eats into the power: 0.1 away from infinite width, 0.07 of it truncation
    covered = stats.honest_check("K", est, 1.0, truncation=0.07, infinite_width=0.9)
    assert covered.passed and not covered.resolvable and abs(covered.power - 3.0) < 1e-9
    swamped = stats.honest_check("K", est, 1.0, truncation=0.2, infinite_width=0.9)
    assert swamped.power == 0.0 and not swamped.ok
    table = stats.assert_checks([good, with_tau])
    assert "K" in str(table) and "<table>" in table._repr_html_()
    with pytest.raises(AssertionError, match="no power"):
        stats.assert_checks([good, weak])
    with pytest.raises(AssertionError, match="FAIL"):
        stats.assert_checks([bad])


def test_fits_recover_exact_coefficients():
    n = np.array([8.0, 16.0, 32.0, 64.0])
    y = 2.0 + 3.0 / n - 5.0 / n**2
    coef = stats.fit_inverse_width(n, y, np.full(4, 1e-3), powers=(0, 1, 2))
    np.testing.assert_allclose([coef[p].value for p in (0, 1, 2)], [2.0, 3.0, -5.0], atol=1e-9)
    slope, amp = stats.fit_power_law(n, 7.0 * n**-2.0, 1e-3 * n**-2.0)
    assert abs(slope.value + 2.0) < 1e-9 and abs(amp.value - 7.0) < 1e-8
    assert slope.stderr > 0


def test_residual_slope_states_next_order_tilt():
    n = np.array([8.0, 16.0, 32.0, 64.0])
    r = 4.0 / n**2 + 6.0 / n**3  # what a theory exact through 1/n leaves, with a 1/n^3 term
    fit = stats.residual_slope(n, -r, 1e-4 * r)
    np.testing.assert_allclose([fit.coefficients[2].value, fit.coefficients[3].value], [-4.0, -6.0])
    # noise-free data: the stated truncation is exactly the tilt of the fitted slope
    assert abs(abs(fit.slope.value + 2.0) - fit.truncation) < 1e-9
    local = 6.0 / (4.0 * n + 6.0)  # |d log r / d log n + 2| at each width
    assert local.min() < fit.truncation < local.max()
    assert abs(float(fit.amplitude.value) * 8.0 ** float(fit.slope.value) - r[0]) < 0.05 * r[0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: stats.mean_estimate([1.0]), "at least 2"),
        (lambda: stats.mean_estimate([1.0, np.nan]), "non-finite"),
        (lambda: stats.two_point(np.ones((3, 4))), "shape"),
        (lambda: stats.connected_four_point_pairs(np.ones((3, 1, 1))), "2 neurons"),
        (lambda: stats.jackknife(lambda m: m, np.ones(5), n_blocks=9), "n_blocks"),
        (lambda: stats.honest_check("q", stats.Estimate(1.0, 0.1, 3), np.nan), "not finite"),
        (lambda: stats.honest_check("q", stats.Estimate(1.0, 0.1, 3), 1.0, k=0), "k must"),
        (lambda: stats.fit_power_law([1.0, 2.0], [1.0, -1.0], [0.1, 0.1]), "y > 0"),
        (lambda: stats.fit_inverse_width([1.0, 2.0], [1.0, 1.0], [0.0, 0.1]), "yerr"),
        (lambda: stats.residual_slope([8, 16, 32], [1.0, -1.0, 1.0], [0.1] * 3), "one sign"),
        (lambda: stats.residual_slope([8, 16], [1.0, 1.0], [0.1] * 2), ">= 3 widths"),
        (lambda: stats.residual_slope([8, 16, 32], [1.0] * 3, [0.1] * 3, order=0), "order"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_excess_kurtosis():
    rng = np.random.default_rng(206)
    gaussian = stats.excess_kurtosis(rng.normal(size=(4000, 2, 8)))
    assert np.all(np.abs(gaussian.value) < 4.5 * gaussian.stderr)
    # random-variance model: E[z^4]/E[z^2]^2 - 3 = 3 Var(g)/E[g]^2 = 3 * 0.25 / 1
    g = rng.choice([0.5, 1.5], size=(20_000, 1, 1))
    est = stats.excess_kurtosis(np.sqrt(g) * rng.normal(size=(20_000, 1, 8)))[0]
    assert abs(est.value - 0.75) < 4.5 * est.stderr


def test_normalized_six_point_triples():
    rng = np.random.default_rng(207)
    gaussian = stats.normalized_six_point_triples(rng.normal(size=(4000, 1, 6)))
    assert abs(gaussian.value) < 4.5 * gaussian.stderr
    # random-variance model z = sqrt(g) xi: the normalized six-point is kappa_3(g) / E[g]^3
    g = rng.choice([0.25, 1.75], p=[0.75, 0.25], size=(40_000, 1, 1))  # skewed, mean 0.625
    est = stats.normalized_six_point_triples(np.sqrt(g) * rng.normal(size=(40_000, 1, 6)))
    mean = 0.625
    third = 0.75 * (0.25 - mean) ** 3 + 0.25 * (1.75 - mean) ** 3
    assert abs(est.value - third / mean**3) < 4.5 * est.stderr
    assert abs(third / mean**3) > 10 * est.stderr
