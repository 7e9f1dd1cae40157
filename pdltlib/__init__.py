"""pdltlib: the shared library of the executable companion to *The Principles of Deep Learning
Theory* (Roberts, Yaida & Hanin, arXiv:2106.10165).

Importing pdltlib turns on JAX's float64 mode: theory values are computed in double precision.
"""

import jax

jax.config.update("jax_enable_x64", True)

from pdltlib.activations import (  # noqa: E402
    Activation,
    available_activations,
    get_activation,
    scale_invariant,
)

__version__ = "0.1.0"
