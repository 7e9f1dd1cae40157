"""Model complexity from the macroscopic perspective (book epilogue ε): how many numbers it takes
to specify the distribution of a network's outputs on a dataset D of N_D inputs, truncated at a
given order in 1/n, against the number of model parameters.

The counting is of independent components of the data-dependent couplings. A coupling is a
tensor with sample indices; the index symmetries of its defining decomposition identify
components, and the number of independent ones is the number of orbits of index tuples under
the symmetry group, counted exactly by Burnside's lemma (:func:`independent_components`):
(1/|G|) sum_{g in G} N_D^{c(g)}, c(g) the number of cycles of the permutation g of index slots.

* Initialization, (ε.17)-(ε.18), (ε.24): the 2k-point vertex (k = 1 the kernel, 2 the
  four-point vertex V, 3 the six-point vertex U, ...) is symmetric within each of its k sample
  pairs and under permutations of the pairs, so it has C(p + k - 1, k) components, p =
  N_D (N_D + 1) / 2 (:func:`vertex_components`), O(N_D^{2k}) (ε.25). Truncating at order
  1/n^m keeps k = 1..m + 1.
* The trained ensemble: at infinite width the labels, the kernel and the frozen NTK,
  n_L N_A + N_D (N_D + 1) (ε.14); at order 1/n also the eleven four-sample tensors of (ε.13),
  V, A, B, D, F, P, Q, R, S, T, U, with the symmetries of their decompositions (4.77), (8.67),
  (8.82), (11.45), (∞.11)-(∞.12) (:data:`FINITE_WIDTH_TENSORS`): O(N_D^4) (ε.15), with leading
  coefficient 19/4. These are the symmetries the decompositions force; a tensor with an accidental
  extra symmetry would have fewer components, so the count is an upper bound of the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

from pdltlib.stats import Table

__all__ = [
    "TensorSymmetry",
    "FINITE_WIDTH_TENSORS",
    "independent_components",
    "vertex_symmetry",
    "vertex_components",
    "initialization_couplings",
    "trained_couplings",
    "parameter_count",
    "CouplingTable",
]


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TensorSymmetry:
    """The index symmetries of a coupling tensor: its rank and generating permutations of the
    index slots (``generators[g][s]`` is the slot whose index slot s takes), with the book
    equation of the decomposition that implies them.

    Not in the book as such: a bookkeeping device for the counting of (ε.14)-(ε.15).
    """

    name: str
    rank: int
    generators: tuple[tuple[int, ...], ...]
    source: str

    def components(self, n_inputs: int) -> int:
        """The number of independent components on N_D = ``n_inputs`` inputs."""
        return independent_components(n_inputs, self.rank, self.generators)


# Each entry: the permutations of sample slots under which the book's decomposition of the
# correlator is invariant (exchanging identical factors, e.g. the two NTKs of E[dH dH], or the
# symmetric neuron-sample pairs of one NTK), expressed in the book's subscript order.
FINITE_WIDTH_TENSORS: tuple[TensorSymmetry, ...] = (
    TensorSymmetry("V", 4, ((1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)), "(4.77)"),
    TensorSymmetry("A", 4, ((1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)), "(8.82)"),
    TensorSymmetry("B", 4, ((2, 3, 0, 1), (1, 0, 3, 2)), "(8.82)"),
    TensorSymmetry("D", 4, ((1, 0, 2, 3), (0, 1, 3, 2)), "(8.67)"),
    TensorSymmetry("F", 4, ((2, 3, 0, 1),), "(8.67)"),
    TensorSymmetry("P", 4, ((0, 2, 1, 3),), "(11.45), footnote 3 of §11.2"),
    TensorSymmetry("Q", 4, (), "(11.45), footnote 3 of §11.2"),
    TensorSymmetry("R", 4, ((0, 1, 3, 2),), "(∞.11)"),
    TensorSymmetry("S", 4, ((1, 0, 3, 2),), "(∞.12)"),
    TensorSymmetry("T", 4, ((3, 2, 1, 0),), "(∞.12)"),
    TensorSymmetry("U", 4, ((2, 3, 0, 1),), "(∞.12)"),
)


def _group(rank: int, generators: Sequence[Sequence[int]]) -> set[tuple[int, ...]]:
    """All products of the generators: the permutation group they generate."""
    identity = tuple(range(rank))
    gens = []
    for g in generators:
        perm = tuple(int(s) for s in g)
        if sorted(perm) != list(identity):
            raise ValueError(f"generators must be permutations of range({rank}), got {g!r}")
        gens.append(perm)
    group, frontier = {identity}, [identity]
    while frontier:
        new = []
        for h in frontier:
            for g in gens:
                product = tuple(h[g[s]] for s in range(rank))
                if product not in group:
                    group.add(product)
                    new.append(product)
        frontier = new
    return group


def _cycles(perm: tuple[int, ...]) -> int:
    seen, cycles = set(), 0
    for start in range(len(perm)):
        if start not in seen:
            cycles += 1
            s = start
            while s not in seen:
                seen.add(s)
                s = perm[s]
    return cycles


def independent_components(
    n_inputs: int, rank: int, generators: Sequence[Sequence[int]] = ()
) -> int:
    """Orbits of the N_D^rank index tuples of a tensor under the symmetry group of its slots.

    Burnside's lemma: (1/|G|) sum_g N_D^{c(g)}, with c(g) the cycles of g and G the group the
    ``generators`` (permutations of range(rank)) generate. No symmetry gives N_D^rank.

    Not in the book: the exact count behind "O(N_D^4) numbers" (ε.15).
    """
    n = _count(n_inputs, "n_inputs", 1)
    rank = _count(rank, "rank", 1)
    group = _group(rank, generators)
    total = sum(n ** _cycles(g) for g in group)
    return total // len(group)


def vertex_symmetry(k: int) -> TensorSymmetry:
    """The symmetry of the 2k-point vertex of (ε.18), e.g. u_{(d1d2)(d3d4)(d5d6)} for k = 3:
    symmetric within each pair and under permutations of the k pairs (the neuron sums make the
    pairs interchangeable)."""
    k = _count(k, "k", 1)
    rank = 2 * k
    swap_in_pair = tuple([1, 0, *range(2, rank)])
    generators = [swap_in_pair]
    if k > 1:
        cycle = tuple((s + 2) % rank for s in range(rank))
        swap_pairs = tuple([2, 3, 0, 1, *range(4, rank)])
        generators += [cycle, swap_pairs]
    return TensorSymmetry(f"{2 * k}-point vertex", rank, tuple(generators), "(ε.18)")


def vertex_components(n_inputs: int, k: int) -> int:
    """C(p + k - 1, k), p = N_D (N_D + 1)/2: independent components of the 2k-point vertex.

    A multiset of k symmetric sample pairs. k = 1: the kernel, N_D(N_D + 1)/2 (ε.14); k = 2: the
    four-point vertex; k = 3: the six-point vertex U of (ε.22), O(N_D^6) (ε.23); in general
    O(N_D^{2k}) (ε.25). Equals :func:`independent_components` of :func:`vertex_symmetry`.
    """
    n = _count(n_inputs, "n_inputs", 1)
    k = _count(k, "k", 1)
    p = n * (n + 1) // 2
    return math.comb(p + k - 1, k)


def initialization_couplings(n_inputs: int, order: int) -> int:
    """Numbers that specify the preactivation distribution on N_D inputs at order 1/n^order.

    The couplings of the action truncated as in (ε.17)-(ε.18) and (ε.24): the 2k-point vertices
    for k = 1..order + 1 (the 1/n corrections of lower vertices have the same shape and add no
    new components). order 0: the kernel; 1: + V; 2: + U.
    """
    n = _count(n_inputs, "n_inputs", 1)
    order = _count(order, "order", 0)
    return sum(vertex_components(n, k) for k in range(1, order + 2))


def trained_couplings(n_train: int, n_test: int, n_out: int = 1, order: int = 0) -> int:
    """Numbers that specify the distribution of fully trained outputs on D = A u B.

    order 0 (infinite width, (ε.9)): n_L N_A labels + the kernel and the frozen NTK on D,
    n_L N_A + N_D (N_D + 1) (ε.14). order 1 ((ε.13)): the metric G and NTK mean H on D (each
    with its 1/n part, same shape) and the eleven four-sample tensors of
    :data:`FINITE_WIDTH_TENSORS`, O(N_D^4) (ε.15). Higher orders are not in the book.
    """
    n_a = _count(n_train, "n_train", 1)
    n_b = _count(n_test, "n_test", 0)
    n_out = _count(n_out, "n_out", 1)
    order = _count(order, "order", 0)
    if order > 1:
        raise ValueError(f"order must be 0 or 1 (the book's (ε.14), (ε.15)), got {order}")
    n_d = n_a + n_b
    count = n_out * n_a + n_d * (n_d + 1)
    if order == 1:
        count += sum(t.components(n_d) for t in FINITE_WIDTH_TENSORS)
    return count


def parameter_count(widths: Sequence[int]) -> int:
    """P = sum_l n_l (n_{l-1} + 1): the weights and biases of an MLP (2.5) with widths
    (n_0, n_1, ..., n_L): the microscopic model complexity the epilogue contrasts with the
    couplings."""
    n = [_count(w, "widths", 1) for w in widths]
    if len(n) < 2:
        raise ValueError(f"widths must be (n_0, ..., n_L) with L >= 1, got {widths!r}")
    return sum(b * (a + 1) for a, b in zip(n[:-1], n[1:], strict=True))


class CouplingTable(Table):
    """Couplings needed on N_D inputs: at initialization to order 1/n^0, 1/n, 1/n^2 ((ε.17)-
    (ε.24)) and for the trained ensemble (one training input fewer than N_D, n_L = 1) at
    infinite width (ε.14) and order 1/n (ε.15).

    Not in the book as a table: the counting of section ε.
    """

    columns = ("N_D", "init: K", "init: K, V", "init: K, V, U", "trained ∞", "trained 1/n")

    def __init__(self, n_inputs: Sequence[int]):
        self.n_inputs = [_count(n, "n_inputs", 2) for n in n_inputs]

    def rows(self) -> list[tuple[str, ...]]:
        return [
            (
                str(n),
                *(str(initialization_couplings(n, m)) for m in range(3)),
                *(str(trained_couplings(n - 1, 1, 1, m)) for m in range(2)),
            )
            for n in self.n_inputs
        ]
