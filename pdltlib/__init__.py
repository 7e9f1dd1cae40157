"""pdltlib: the shared library of the executable companion to *The Principles of Deep Learning
Theory* (Roberts, Yaida & Hanin, arXiv:2106.10165).

Modules, in the order of the book: ``gaussian`` (Gaussian expectations), ``wick``, ``cumulants``,
``action`` (nearly-Gaussian distributions), ``activations``, ``network`` (MLPs), ``sampling``
(ensembles), ``exact`` (exact finite-width results), ``kernels`` (metrics, four-point vertices,
the 1/n flow), ``criticality`` (critical points, universality classes), ``bayes`` (Bayesian
inference), ``ntk`` (the neural tangent kernel), ``ntk_fluctuations`` (NTK-preactivation
cross-correlations and NTK variance), ``ntk_criticality`` (NTK criticality, learning-rate
equivalence), ``prediction`` (kernel learning at infinite width), ``models`` (a network's linear
and quadratic Taylor models), ``training`` (ensemble training), ``dntk`` (the dNTK),
``dntk_fluctuations`` (dNTK-preactivation cross-correlations P, Q; ddNTK means R, S, T, U),
``ddntk`` (the ddNTKs), ``end_of_training`` (the finite-width solution of training and its mean at
order 1/n), ``trained_covariance`` (its covariance at order 1/n), ``ntk_controls`` (exact
zero-mean control variates for means of functions of the NTK), ``six_point`` (the six-point
vertex at order 1/n^2), ``complexity`` (counting data-dependent couplings), ``macroscopic``
(finite-width effects of trained ensembles), ``stats`` (estimators and the honest check),
``plotting``; ``validation`` checks input, ``ensemble`` runs per-network computations in vmapped
chunks and ``progress`` draws progress bars.

Importing pdltlib turns on JAX's float64 mode: theory values are computed in double precision.
"""

import jax

jax.config.update("jax_enable_x64", True)

from pdltlib import (  # noqa: E402
    action,
    activations,
    bayes,
    complexity,
    criticality,
    cumulants,
    ddntk,
    dntk,
    dntk_fluctuations,
    end_of_training,
    exact,
    gaussian,
    kernels,
    macroscopic,
    models,
    network,
    ntk,
    ntk_controls,
    ntk_criticality,
    ntk_fluctuations,
    plotting,
    prediction,
    sampling,
    six_point,
    stats,
    trained_covariance,
    training,
    wick,
)
from pdltlib.activations import (  # noqa: E402
    Activation,
    available_activations,
    get_activation,
    scale_invariant,
)
from pdltlib.criticality import critical_point, universality_table  # noqa: E402
from pdltlib.gaussian import activation_expectation, gaussian_expectation  # noqa: E402
from pdltlib.kernels import (  # noqa: E402
    PreactivationFlow,
    chi_parallel,
    chi_perp,
    four_point_flow,
    kernel_flow,
    kernel_nlo_flow,
    preactivation_flow,
)
from pdltlib.network import MLPConfig, mlp  # noqa: E402
from pdltlib.sampling import sample_preactivations  # noqa: E402
from pdltlib.stats import Estimate, assert_checks, honest_check  # noqa: E402
from pdltlib.training import train_ensemble  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "action",
    "activations",
    "bayes",
    "complexity",
    "criticality",
    "cumulants",
    "ddntk",
    "dntk",
    "dntk_fluctuations",
    "end_of_training",
    "exact",
    "gaussian",
    "kernels",
    "macroscopic",
    "models",
    "network",
    "ntk",
    "ntk_controls",
    "ntk_criticality",
    "ntk_fluctuations",
    "plotting",
    "prediction",
    "sampling",
    "six_point",
    "stats",
    "trained_covariance",
    "training",
    "wick",
    "Activation",
    "available_activations",
    "get_activation",
    "scale_invariant",
    "critical_point",
    "universality_table",
    "activation_expectation",
    "gaussian_expectation",
    "PreactivationFlow",
    "chi_parallel",
    "chi_perp",
    "four_point_flow",
    "kernel_flow",
    "kernel_nlo_flow",
    "preactivation_flow",
    "MLPConfig",
    "mlp",
    "sample_preactivations",
    "Estimate",
    "assert_checks",
    "honest_check",
    "train_ensemble",
]
