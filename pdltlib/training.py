"""Training ensembles of MLPs by full-batch gradient descent, together with each network's
linear and quadratic models trained from the same initialization (book chapters 10, 11, ∞).

Algorithm. Every model takes the steps of tensorial gradient descent (7.11) on the MSE
training loss (7.2)/(7.4),

    theta_mu(t+1) = theta_mu(t) - eta lambda_mu dL_A/dtheta_mu,
    L_A = (1/2) sum_{i, a in A} (z_{i;a}(theta) - y_{i;a})^2,

with the diagonal learning-rate tensor (8.6) (lambda_b^(l) for the biases of layer l,
lambda_W^(l) / n_{l-1} for its weights) and a global step eta, exactly as
:func:`pdltlib.ntk.gradient_step`. Three models can be trained from the same initialization
theta_0:

* ``"network"``: the MLP itself;
* ``"linear"``: its linear model (first-order Taylor expansion in theta around theta_0,
  :func:`pdltlib.models.linear_model`), i.e. kernel learning with this network's own, frozen,
  initial NTK H(theta_0): its trained outputs are (10.39) with Theta -> H(theta_0);
* ``"quadratic"``: its quadratic model (second-order expansion,
  :func:`pdltlib.models.quadratic_model`), whose NTK moves through the dNTK (11.8).

Stopping criterion. A model stops when its largest training residual
max_{i,a} |z_{i;a} - y_{i;a}| is at most ``tolerance`` (it is then *converged*; its parameters
stay fixed from that step on), when that residual is no longer finite or exceeds
``divergence`` times its initial value (*diverged*), or after ``max_steps`` steps. In
fixed-steps mode (``steps``) there is no tolerance: every model takes exactly ``steps`` steps
unless it diverges first. Gradient descent with the frozen NTK converges for
0 < eta < 2 / lambda_max(Theta_AA) (each training mode decays as (1 - eta lambda_k)^t,
:mod:`pdltlib.prediction`): a larger eta is refused.
Finite-width networks whose NTK exceeds Theta can still diverge below the bound: they are
counted and reported (:class:`ConvergenceReport`, and a warning), never dropped.

Ensembles. Network s is initialized with ``jax.random.split(key, n_networks)[s]``
(:func:`pdltlib.ensemble.map_networks`), the same networks as :func:`pdltlib.ntk.sample_ntk`
draws for the same key. A chunk of networks is vmapped, and all its steps are one compiled
program (``lax.while_loop`` segments between checkpoints inside ``jax.jit``); the ensemble
axis leads every result. The compiled program depends only on the architecture, the chunk
shape, the models, the number of checkpoints and ``keep_ntk``: eta, the tolerance, the steps,
the checkpoints' values and the divergence factor are traced, so runs that differ only in them
reuse it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pdltlib.ensemble import map_networks
from pdltlib.models import _linear, _quadratic
from pdltlib.network import MLPConfig, check_inputs, forward
from pdltlib.ntk import _descend, _layer_ntk, _split_config, _with_hyperparameters
from pdltlib.prediction import frozen_ntk, stability_bound
from pdltlib.stats import Table
from pdltlib.validation import integer_at_least

__all__ = ["MODELS", "TrainingResult", "ConvergenceReport", "train_ensemble"]

MODELS = ("network", "linear", "quadratic")
# Working set per chunk of networks: small enough to stay in the processor's cache, where the
# steps are fastest (measured with benchmarks/bench_training.py: a chunk several times larger
# than the cache runs 2-4 times slower per network-step on one CPU).
_CHUNK_BYTES = 4 * 2**20


class ConvergenceReport(Table):
    """How many networks of each model reached the stopping criterion, diverged, or ran out of
    steps; with the steps the converged ones took. In fixed-steps mode (no tolerance): how many
    took all the steps and how many diverged. Not in the book: a utility."""

    columns = ("model", "networks", "converged", "diverged", "out of steps", "steps (min–max)")

    def __init__(self, result: TrainingResult):
        self.result = result
        if result.fixed_steps:
            self.columns = ("model", "networks", f"took all {result.max_steps} steps", "diverged")

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for model in self.result.models:
            conv, div = self.result.converged[model], self.result.diverged[model]
            if self.result.fixed_steps:
                full = self.result.steps[model] == self.result.max_steps
                out.append((model, str(div.size), str(int(full.sum())), str(int(div.sum()))))
                continue
            steps = self.result.steps[model][conv]
            span = f"{steps.min()}–{steps.max()}" if steps.size else "—"
            out.append(
                (
                    model,
                    str(conv.size),
                    str(int(conv.sum())),
                    str(int(div.sum())),
                    str(int((~conv & ~div).sum())),
                    span,
                )
            )
        return out

    @property
    def all_converged(self) -> bool:
        """True when every network of every model reached the stopping criterion (never in
        fixed-steps mode, which has none)."""
        return all(bool(self.result.converged[m].all()) for m in self.result.models)

    @property
    def any_diverged(self) -> bool:
        """True when some network of some model diverged."""
        return any(bool(self.result.diverged[m].any()) for m in self.result.models)


@dataclass(frozen=True)
class TrainingResult:
    """An ensemble trained by :func:`train_ensemble` (gradient descent (7.11) on the MSE loss
    (7.2)); NumPy arrays, ensemble axis first.

    D lists the training inputs first, then the test inputs (N_D = N_A + N_B).

    Attributes:
        models: the trained models, a subset of :data:`MODELS`.
        initial: outputs at initialization on D, (N, N_D, n_L) (the same for every model).
        final: ``{model: (N, N_D, n_L)}`` outputs after training.
        history: ``{model: (N, C, N_D, n_L)}`` outputs at the ``checkpoints``.
        checkpoints: the C steps t at which ``history`` was recorded (a model that stopped
            earlier contributes its final outputs).
        steps: ``{model: (N,)}`` gradient steps each model took.
        converged, diverged: ``{model: (N,)}`` booleans (the stopping criterion of the module).
        ntk_initial, ntk_final: the network's output NTK H[i1, i2, d1, d2] on D before and after
            training, (N, n_L, n_L, N_D, N_D), when ``keep_ntk`` was set (else None).
        y_train: the labels (N_A, n_L); eta, tolerance, max_steps: the run's settings (tolerance
            None in fixed-steps mode, where max_steps is the fixed number of steps); bound: the
            infinite-width stability bound 2 / lambda_max(Theta_AA).
    """

    models: tuple[str, ...]
    initial: np.ndarray
    final: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    checkpoints: np.ndarray
    steps: dict[str, np.ndarray]
    converged: dict[str, np.ndarray]
    diverged: dict[str, np.ndarray]
    ntk_initial: np.ndarray | None
    ntk_final: np.ndarray | None
    y_train: np.ndarray
    eta: float
    tolerance: float | None
    max_steps: int
    bound: float

    @property
    def fixed_steps(self) -> bool:
        """True for a fixed-steps run (``train_ensemble(..., steps=...)``, no tolerance)."""
        return self.tolerance is None

    @property
    def n_train(self) -> int:
        """N_A, the number of training inputs (the first N_A rows of D)."""
        return self.y_train.shape[0]

    @property
    def loss(self) -> dict[str, np.ndarray]:
        """``{model: (N, C)}`` training loss (7.4) at the checkpoints."""
        a = self.n_train
        return {
            m: 0.5 * ((h[:, :, :a, :] - self.y_train) ** 2).sum(axis=(2, 3))
            for m, h in self.history.items()
        }

    @property
    def report(self) -> ConvergenceReport:
        """The :class:`ConvergenceReport` of the run."""
        return ConvergenceReport(self)


def _check_models(models: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(models)
    if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(MODELS):
        raise ValueError(f"models must be distinct names from {MODELS}, got {chosen!r}")
    return tuple(m for m in MODELS if m in chosen)


def _check_checkpoints(checkpoints: Iterable[int], last: int, name: str) -> tuple[int, ...]:
    points = tuple(checkpoints)
    for c in points:
        if isinstance(c, bool) or not isinstance(c, Integral) or not 0 <= c <= last:
            raise ValueError(
                f"checkpoints must be integers in 0..{name} = 0..{last}, got {points!r}"
            )
    return tuple(sorted({int(c) for c in points}))


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _model_functions(params0, x, config: MLPConfig, models: tuple[str, ...]) -> dict:
    act = config.activation
    build = {
        "network": lambda: lambda p: forward(p, x, act)[-1],
        "linear": lambda: _linear(params0, x, act),
        "quadratic": lambda: _quadratic(params0, x, act),
    }
    return {m: build[m]() for m in models}


def _train_one(params0, x_all, y, hyper, run, *, structure, settings):
    """Train every model of one network from its initial parameters ``params0``. One
    ``lax.while_loop`` runs the steps up to the next checkpoint; an outer ``lax.fori_loop`` over
    the checkpoints records the outputs. ``run`` holds the traced settings: eta, tolerance,
    divergence and ``ends`` (the checkpoints, then the last step)."""
    models, n_train, n_segments, keep_ntk = settings
    eta, tolerance, divergence, ends = run
    config = _with_hyperparameters(structure, hyper)
    train_fns = _model_functions(params0, x_all[:n_train], config, models)
    eval_fns = _model_functions(params0, x_all, config, models)

    limit = divergence * jnp.maximum(jnp.max(jnp.abs(train_fns[models[0]](params0) - y)), tolerance)

    def stopping(out):
        """(converged, diverged) for the training outputs ``out`` (the module's criterion)."""
        r = jnp.max(jnp.abs(out - y))
        done = r <= tolerance
        return done, ~done & (~jnp.isfinite(r) | (r > limit))

    def step(state):
        """One gradient step of every model still active (its stopping test comes first)."""
        t = state[0]
        thetas, steps, active, conv, div = (dict(v) for v in state[1:])
        for m in models:
            out, pullback = jax.vjp(train_fns[m], thetas[m])
            done, blown = stopping(out)
            move = active[m] & ~done & ~blown
            stepped = _descend(thetas[m], pullback(out - y)[0], config, eta)
            thetas[m] = jax.tree_util.tree_map(
                lambda a, b, move=move: jnp.where(move, a, b), stepped, thetas[m]
            )
            steps[m] = steps[m] + move.astype(jnp.int32)
            conv[m] = conv[m] | (active[m] & done)
            div[m] = div[m] | (active[m] & blown)
            active[m] = move
        return t + 1, thetas, steps, active, conv, div

    def segment(k, carry):
        state, history = carry

        def running(s):
            return (s[0] < ends[k]) & jnp.any(jnp.stack(list(s[3].values())))

        state = lax.while_loop(running, step, state)
        outputs = {m: eval_fns[m](state[1][m]) for m in models}
        return state, {m: history[m].at[k].set(outputs[m]) for m in models}

    false = jnp.zeros((), bool)
    state = (
        jnp.zeros((), jnp.int32),
        {m: params0 for m in models},
        {m: jnp.zeros((), jnp.int32) for m in models},
        {m: ~false for m in models},
        {m: false for m in models},
        {m: false for m in models},
    )
    shape = (n_segments, x_all.shape[0], y.shape[1])
    history = {m: jnp.zeros(shape, x_all.dtype) for m in models}
    state, history = lax.fori_loop(0, n_segments, segment, (state, history))
    _, thetas, steps, active, conv, div = state
    for m in models:  # the last state's own stopping test (no step follows it)
        done, blown = stopping(train_fns[m](thetas[m]))
        conv[m] = conv[m] | (active[m] & done)
        div[m] = div[m] | (active[m] & blown)
    out = {
        "initial": eval_fns[models[0]](params0),
        "final": {m: history[m][-1] for m in models},
        "history": {m: history[m][:-1] for m in models},
        "steps": steps,
        "converged": conv,
        "diverged": div,
    }
    if keep_ntk:
        for name, p in (("ntk_initial", params0), ("ntk_final", thetas["network"])):
            zs = forward(p, x_all, config.activation)
            out[name] = _layer_ntk(p, x_all, zs, config, config.depth, None)
    return out


@partial(jax.jit, static_argnames=("structure", "settings"))
def _train_chunk(params0, x_all, y, hyper, run, structure, settings):
    """A chunk of networks trained by :func:`_train_one`; compiled once per architecture, chunk
    shape, models, number of checkpoints and ``keep_ntk`` (everything in ``run`` is traced)."""
    one = partial(_train_one, structure=structure, settings=settings)
    return jax.vmap(lambda p: one(p, x_all, y, hyper, run))(params0)


def _chunk_size(config: MLPConfig, n_inputs: int, n_models: int, n_checkpoints: int, keep_ntk):
    params = sum(a * b + b for a, b in zip(config.widths[:-1], config.widths[1:], strict=True))
    n_out = config.widths[-1]
    per_network = params * (4 + 6 * n_models) + 8 * n_inputs * sum(config.widths)
    per_network += (n_checkpoints + 2) * n_inputs * n_out * n_models
    per_network += 2 * keep_ntk * (n_out * n_inputs) ** 2 + 3 * n_inputs * n_out * max(
        config.widths
    )
    return int(max(1, min(1024, _CHUNK_BYTES // (8 * per_network))))


def train_ensemble(
    key: jax.Array,
    config: MLPConfig,
    x_train,
    y_train,
    n_networks: int,
    *,
    eta: float,
    x_test=None,
    models: Sequence[str] = ("network", "linear"),
    tolerance: float | None = None,
    max_steps: int | None = None,
    steps: int | None = None,
    checkpoints: Iterable[int] = (),
    keep_ntk: bool = False,
    divergence: float = 1e4,
    theta_train=None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train ``n_networks`` MLPs (and their linear/quadratic models) by full-batch gradient
    descent on the MSE loss, vmapped and chunked over the ensemble (module docstring).

    Two modes: by default every model trains until its stopping criterion (``tolerance``, at
    most ``max_steps`` steps); with ``steps`` every model takes exactly that many steps (no
    tolerance, so none "converges"; only divergence stops a model early).

    Args:
        key: the ensemble's PRNG key; network s starts from ``jax.random.split(key, N)[s]``.
        config: the architecture, initialization and learning-rate hyperparameters (8.6).
        x_train: training inputs (N_A, n_0); y_train: labels (N_A, n_L) (or (N_A,) for n_L = 1).
        n_networks: ensemble size N (>= 1).
        eta: global learning rate, 0 < eta <= 2 / lambda_max(Theta_AA) (the infinite-width
            stability bound, from :func:`pdltlib.prediction.frozen_ntk` of the training inputs).
        x_test: test inputs (N_B, n_0) where outputs are also recorded (optional).
        models: any of "network", "linear", "quadratic" (trained from the same theta_0).
        tolerance: stop a model when max_{i,a} |z_{i;a} - y_{i;a}| <= tolerance (> 0; default
            1e-8). Not with ``steps``.
        max_steps: the most steps any model takes (>= 1; default 100000). Not with ``steps``.
        steps: fixed-steps mode: take exactly this many steps (>= 1).
        checkpoints: steps t in 0..max_steps (or 0..steps) at which every model's outputs on D
            are recorded.
        keep_ntk: also return the network's output NTK on D before and after training.
        divergence: a model diverged when its largest training residual exceeds this factor
            times the initial one, or is not finite (> 1).
        theta_train: the frozen NTK Theta^(L) of the training inputs, (N_A, N_A), if already
            computed (:func:`pdltlib.prediction.frozen_ntk`); by default it is computed here.
        chunk_size: networks per vmapped chunk (default: from a 4 MiB working set, which stays
            in the cache).
        progress: show a progress bar over chunks (after 3 seconds).

    Returns:
        A :class:`TrainingResult`; a warning shows its :class:`ConvergenceReport` if any network
        diverged or (without ``steps``) ran out of steps.
    """
    x_a = check_inputs(config, x_train)
    labels = np.asarray(y_train, dtype=np.float64)
    labels = labels[:, None] if labels.ndim == 1 else labels
    if labels.shape != (x_a.shape[0], config.widths[-1]) or not np.all(np.isfinite(labels)):
        raise ValueError(
            f"y_train must be finite with shape (N_A, n_L) = {(x_a.shape[0], config.widths[-1])},"
            f" got {np.shape(y_train)}"
        )
    x_all = x_a if x_test is None else jnp.concatenate([x_a, check_inputs(config, x_test)])
    models = _check_models(models)
    if keep_ntk and "network" not in models:
        raise ValueError(f"keep_ntk needs the network among the models, got {models!r}")
    eta = _positive(eta, "eta")
    if not np.isfinite(divergence) or divergence <= 1:
        raise ValueError(f"divergence must be finite and > 1, got {divergence!r}")
    if steps is None:
        tolerance = _positive(1e-8 if tolerance is None else tolerance, "tolerance")
        max_steps = integer_at_least(100_000 if max_steps is None else max_steps, "max_steps")
        checkpoints = _check_checkpoints(checkpoints, max_steps, "max_steps")
    else:
        if tolerance is not None or max_steps is not None:
            raise ValueError(
                "steps takes exactly that many steps: give either steps, or tolerance and "
                f"max_steps, not both (got steps={steps!r}, tolerance={tolerance!r}, "
                f"max_steps={max_steps!r})"
            )
        max_steps = integer_at_least(steps, "steps")
        checkpoints = _check_checkpoints(checkpoints, max_steps, "steps")
    if theta_train is None:
        theta_train = frozen_ntk(config, np.asarray(x_a)).Theta[-1]
    if np.shape(theta_train) != (x_a.shape[0],) * 2:
        raise ValueError(
            f"theta_train must be the (N_A, N_A) = {(x_a.shape[0],) * 2} frozen NTK of x_train, "
            f"got shape {np.shape(theta_train)}"
        )
    bound = stability_bound(theta_train)
    if eta > bound:
        raise ValueError(
            f"eta = {eta:.6g} exceeds the infinite-width stability bound "
            f"2/lambda_max(Theta) = {bound:.6g} of the training set: gradient descent with the "
            "frozen NTK diverges there; choose 0 < eta <= the bound"
        )
    if chunk_size is None:
        chunk_size = _chunk_size(config, x_all.shape[0], len(models), len(checkpoints), keep_ntk)

    structure, hyper = _split_config(config)
    settings = (models, x_a.shape[0], len(checkpoints) + 1, bool(keep_ntk))
    # without a tolerance (fixed steps) no residual is <= -inf, so no model stops converged
    run = (
        jnp.float64(eta),
        jnp.float64(-np.inf if tolerance is None else tolerance),
        jnp.float64(divergence),
        jnp.asarray((*checkpoints, max_steps), jnp.int32),
    )
    y = jnp.asarray(labels)
    out = map_networks(
        lambda params: _train_chunk(params, x_all, y, hyper, run, structure, settings),
        key,
        n_networks,
        chunk_size,
        "training networks",
        progress,
        config=config,
    )
    result = TrainingResult(
        models=models,
        initial=out["initial"],
        final=out["final"],
        history=out["history"],
        checkpoints=np.asarray(checkpoints, dtype=int),
        steps=out["steps"],
        converged=out["converged"],
        diverged=out["diverged"],
        ntk_initial=out.get("ntk_initial"),
        ntk_final=out.get("ntk_final"),
        y_train=labels,
        eta=eta,
        tolerance=tolerance,
        max_steps=max_steps,
        bound=bound,
    )
    if result.fixed_steps and result.report.any_diverged:
        warnings.warn(f"some networks diverged:\n{result.report}", stacklevel=2)
    elif not result.fixed_steps and not result.report.all_converged:
        warnings.warn(
            f"not every network reached the stopping criterion:\n{result.report}", stacklevel=2
        )
    return result
