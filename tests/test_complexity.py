import itertools

import numpy as np
import pytest

from pdltlib.complexity import (  # _group: the group the brute force acts with
    FINITE_WIDTH_TENSORS,
    CouplingTable,
    _group,
    independent_components,
    initialization_couplings,
    parameter_count,
    trained_couplings,
    vertex_components,
    vertex_symmetry,
)


def _orbits(n_inputs, symmetry):
    """Brute force: canonical representative (the smallest image) of every index tuple."""
    group = _group(symmetry.rank, symmetry.generators)
    seen = set()
    for idx in itertools.product(range(n_inputs), repeat=symmetry.rank):
        seen.add(min(tuple(idx[g[s]] for s in range(symmetry.rank)) for g in group))
    return len(seen)


@pytest.mark.parametrize("n_inputs", [1, 2, 3])
def test_burnside_counts_equal_brute_force_orbits(n_inputs):
    for tensor in FINITE_WIDTH_TENSORS:
        assert tensor.components(n_inputs) == _orbits(n_inputs, tensor)
    for k in (1, 2, 3):
        sym = vertex_symmetry(k)
        assert sym.components(n_inputs) == _orbits(n_inputs, sym) == vertex_components(n_inputs, k)


def test_closed_forms():
    for n in range(1, 8):
        p = n * (n + 1) // 2
        assert vertex_components(n, 1) == p
        assert vertex_components(n, 2) == p * (p + 1) // 2
        by_name = {t.name: t.components(n) for t in FINITE_WIDTH_TENSORS}
        assert by_name["Q"] == n**4
        assert by_name["B"] == (n**4 + 3 * n**2) // 4
        assert by_name["D"] == p**2
        assert trained_couplings(n, 2, 3, 0) == 3 * n + (n + 2) * (n + 3)  # (ε.14)
    assert independent_components(4, 3) == 64
    big = 2000
    lead = trained_couplings(big - 1, 1, 1, 1) / big**4
    assert lead == pytest.approx(19 / 4, rel=5e-3)  # (ε.15): O(N_D^4)
    ratio = initialization_couplings(2 * big, 2) / initialization_couplings(big, 2)
    assert np.log2(ratio) == pytest.approx(6, abs=0.01)  # (ε.23): O(N_D^6)
    assert parameter_count((2, 3, 1)) == 3 * 3 + 4
    assert "trained 1/n" in str(CouplingTable([2, 3]))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="n_inputs"):
        vertex_components(0, 2)
    with pytest.raises(ValueError, match="k must"):
        vertex_components(3, 0)
    with pytest.raises(ValueError, match="order"):
        trained_couplings(2, 1, 1, 2)
    with pytest.raises(ValueError, match="n_train"):
        trained_couplings(0, 1)
    with pytest.raises(ValueError, match="generators"):
        independent_components(2, 3, [(0, 0, 1)])
    with pytest.raises(ValueError, match="widths"):
        parameter_count((3,))
    with pytest.raises(ValueError, match="order"):
        initialization_couplings(3, -1)
