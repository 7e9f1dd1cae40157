"""The activation zoo of the book's section 2.2, with derivatives and a registry.

Every activation is an :class:`Activation`: an elementwise JAX function ``sigma(z)`` together
with the list of points where it (or one of its derivatives) is not smooth. The quadrature in
:mod:`pdltlib.gaussian` splits its integration ranges at those points, which is what makes
Gaussian expectations of kinked activations (ReLU, the perceptron) as accurate as smooth ones.

Book equations: perceptron (2.9), sigmoid (2.10), tanh (2.11), sin (2.12), the scale-invariant
family (2.13)-(2.14) (linear, ReLU, leaky ReLU), softplus (2.15), SWISH (2.16), GELU (2.17).
``erf`` is the odd, bounded cousin of tanh used widely in the infinite-width literature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

__all__ = ["Activation", "get_activation", "available_activations", "scale_invariant"]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation function sigma(z).

    Attributes:
        name: identifier, e.g. ``"tanh"``.
        fn: the elementwise function, written with ``jax.numpy`` so it can be differentiated.
        kinks: points z where sigma or a derivative of it is discontinuous (``(0.0,)`` for ReLU
            and the perceptron, empty for smooth activations).
        params: the parameters the activation was built with (e.g. ``a_minus`` of leaky ReLU).

    Book: the activation functions of section 5.1 (and 2.2); ``kinks`` locate the points where
    sigma' jumps (ReLU-like, section 5.2).
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    kinks: tuple[float, ...] = ()
    params: dict = field(default_factory=dict, compare=False)

    def __call__(self, z):
        return self.fn(jnp.asarray(z))

    def derivative(self, order: int = 1) -> Callable[[jax.Array], jax.Array]:
        """The ``order``-th derivative sigma^(order)(z), elementwise, by automatic differentiation.

        At a kink the one-sided value that JAX's rule picks is returned; distributional parts
        (the delta function in the perceptron's derivative) are not represented.
        """
        if not isinstance(order, int) or order < 0:
            raise ValueError(f"order must be a non-negative integer, got {order!r}")
        scalar = lambda z: self.fn(z)  # noqa: E731
        for _ in range(order):
            scalar = jax.grad(scalar)
        vectorized = jnp.vectorize(scalar)
        return lambda z: vectorized(jnp.asarray(z, dtype=float))

    @property
    def is_smooth(self) -> bool:
        """True when the activation has no kinks (all derivatives continuous)."""
        return not self.kinks


def scale_invariant(
    a_plus: float = 1.0, a_minus: float = 0.0, name: str | None = None
) -> Activation:
    """The scale-invariant family (2.14): sigma(z) = a_plus z for z >= 0, a_minus z for z < 0.

    ReLU is (1, 0), linear is (1, 1), leaky ReLU is (1, a) with small a.
    """
    a_plus, a_minus = float(a_plus), float(a_minus)
    kinks = () if a_plus == a_minus else (0.0,)
    return Activation(
        name=name or "scale_invariant",
        fn=lambda z: jnp.where(z >= 0, a_plus * z, a_minus * z),
        kinks=kinks,
        params={"a_plus": a_plus, "a_minus": a_minus},
    )


def _linear() -> Activation:
    return Activation("linear", lambda z: z)


def _relu() -> Activation:
    return scale_invariant(1.0, 0.0, name="relu")


def _leaky_relu(a_minus: float = 0.1) -> Activation:
    if not 0.0 <= a_minus < 1.0:
        raise ValueError(f"a_minus must be in [0, 1) for leaky ReLU, got {a_minus}")
    return scale_invariant(1.0, a_minus, name="leaky_relu")


def _perceptron() -> Activation:
    return Activation("perceptron", lambda z: jnp.where(z >= 0, 1.0, 0.0), kinks=(0.0,))


_REGISTRY: dict[str, Callable[..., Activation]] = {
    "linear": _linear,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "scale_invariant": scale_invariant,
    "tanh": lambda: Activation("tanh", jnp.tanh),
    "sin": lambda: Activation("sin", jnp.sin),
    "sigmoid": lambda: Activation("sigmoid", jax.nn.sigmoid),
    "softplus": lambda: Activation("softplus", jax.nn.softplus),
    "swish": lambda: Activation("swish", lambda z: z * jax.nn.sigmoid(z)),
    "gelu": lambda: Activation("gelu", lambda z: 0.5 * z * (1.0 + jsp.erf(z / jnp.sqrt(2.0)))),
    "erf": lambda: Activation("erf", jsp.erf),
    "perceptron": _perceptron,
}
_ALIASES = {"step": "perceptron", "identity": "linear", "silu": "swish"}
_CACHE: dict[tuple, Activation] = {}


def available_activations() -> list[str]:
    """Names accepted by :func:`get_activation` (aliases: step, identity, silu).

    Book: the activations of sections 2.2 and 5.2.
    """
    return sorted(_REGISTRY)


def get_activation(
    activation: str | Activation | Callable, *, kinks: tuple[float, ...] = (), **params
) -> Activation:
    """Look up an activation by name, or wrap a user-supplied JAX function.

    Args:
        activation: a registered name (see :func:`available_activations`), an
            :class:`Activation` (returned unchanged), or any elementwise, JAX-differentiable
            callable.
        kinks: for a callable, the points where it is not smooth (so quadrature splits there).
        **params: parameters of a named activation, e.g. ``a_minus`` for ``"leaky_relu"``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or bad parameters.

    Book: the activation zoo of sections 2.2 and 5.2.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = _ALIASES.get(activation.lower(), activation.lower())
        if key not in _REGISTRY:
            raise ValueError(
                f"unknown activation {activation!r}; known activations: "
                + ", ".join(available_activations())
            )
        cache_key = (key, tuple(sorted(params.items())))
        if cache_key not in _CACHE:  # one object per activation, so jit caches are reused
            try:
                _CACHE[cache_key] = _REGISTRY[key](**params)
            except TypeError as err:
                raise ValueError(f"bad parameters {params} for activation {key!r}: {err}") from None
        return _CACHE[cache_key]
    if callable(activation):
        name = getattr(activation, "__name__", "custom")
        return Activation(name, activation, kinks=tuple(float(k) for k in kinks))
    raise ValueError(
        f"activation must be a name, an Activation or a callable, got {type(activation).__name__}"
    )
