"""Exact per-feature contributions, in NumPy.

Trees: path-dependent TreeSHAP (Lundberg et al. 2018), the Shapley values of
``v(S) = E[f(x) | x_S]`` where features outside S follow both branches weighted by the
training cover of each child. For one leaf l, ``v_l(S) = value_l * prod_j (o_j if j in S
else z_j)`` over the distinct features j on its path, with ``z_j`` the product of the cover
fractions of the path's splits on j and ``o_j`` 1 when x follows all of them, else 0. The
Shapley value of such a product game is

    phi_i = value_l * (o_i - z_i) * sum_k e_k(i) * k! (U-k-1)! / U!,

with ``e_k(i)`` the coefficients of ``prod_{j != i} (z_j + o_j t)``. All leaves of all trees are
computed together (paths padded to U slots with null players z = o = 1, which leave the
Shapley values unchanged), the sums over k by dividing each factor out of the full product. Local accuracy: ``sum(phi) + expected_value == f(x)`` exactly up
to rounding; tests/test_shap.py also checks it against brute-force Shapley values.

Linear models: contribution_j = w_j * (x_j - mean_j), on the margin (log-odds for LR).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from sparkify.scorer.trees import PackedForest

_CHUNK = 16384  # leaves per block (bounds memory to ~ CHUNK * U floats per temporary)


@dataclass
class LeafPaths:
    """Every root-to-leaf path of a forest, padded to ``depth`` nodes and ``U`` slots."""

    value: np.ndarray         # (L,) leaf output on the explained scale (tree weight included)
    node: np.ndarray          # (L, D) internal nodes on the path, -1 padding
    went_left: np.ndarray     # (L, D) direction taken towards the leaf
    slot: np.ndarray          # (L, D) slot (distinct feature) of each path node, U for padding
    slot_feature: np.ndarray  # (L, U) feature index of each slot, -1 padding
    z: np.ndarray             # (L, U) cover fraction product per slot (1 for padding)
    expected_value: float     # E[f] under the covers = sum_l value_l * prod z
    weights_k: np.ndarray     # (U,) Shapley weights k! (U-k-1)! / U!
    #: (L, 2**U, U) every leaf's contributions for every pattern of o (bit j = o_j), when
    #: it fits in TABLE_BYTES; explaining then costs one gather per leaf instead of the
    #: O(U^2) unwinding. None: unwind per request.
    table: np.ndarray | None = None


TABLE_BYTES = 64 * 2**20


def contribution_table(value: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """For every leaf and every 0/1 pattern of o over its U slots, the leaf's contribution
    ``value * (o - z) * unwound_sums(z, o)`` to each slot; None if the table would exceed
    :data:`TABLE_BYTES`. Exact: the same arithmetic as :func:`tree_shap` per request."""
    n, U = z.shape
    patterns = 1 << U
    if n * patterns * U * 8 > TABLE_BYTES:
        return None
    table = np.empty((n, patterns, U))
    bits = (np.arange(patterns)[:, None] >> np.arange(U)[None, :]) & 1
    for p in range(patterns):
        o = np.broadcast_to(bits[p].astype(np.float64), (n, U))
        table[:, p, :] = value[:, None] * (o - z) * _unwound_sums(z, o, w)
    return table


def build_leaf_paths(forest: PackedForest, leaf_value: np.ndarray) -> LeafPaths:
    """In: a packed forest and, per node, the value a leaf adds to the explained output
    (e.g. class-1 vote / T for RF, weight * prediction for GBT). Out: ``LeafPaths``."""
    cover = forest.cover
    paths: list[list[tuple[int, bool, float]]] = []
    leaves: list[int] = []
    for root in forest.roots.tolist():
        stack: list[tuple[int, list[tuple[int, bool, float]]]] = [(root, [])]
        while stack:
            node, path = stack.pop()
            if forest.feature[node] < 0:
                leaves.append(node)
                paths.append(path)
                continue
            lft, rgt = int(forest.left[node]), int(forest.right[node])
            total = cover[lft] + cover[rgt]
            fl = cover[lft] / total if total > 0 else 0.5
            stack.append((rgt, path + [(node, False, 1.0 - fl if total > 0 else 0.5)]))
            stack.append((lft, path + [(node, True, fl)]))
    L = len(leaves)
    D = max(1, max((len(p) for p in paths), default=0))
    uniq = [list(dict.fromkeys(int(forest.feature[n]) for n, _, _ in p)) for p in paths]
    U = max(1, max((len(u) for u in uniq), default=0))
    node = np.full((L, D), -1, dtype=np.int64)
    went_left = np.ones((L, D), dtype=bool)
    slot = np.full((L, D), U, dtype=np.int64)
    slot_feature = np.full((L, U), -1, dtype=np.int64)
    z = np.ones((L, U))
    for li, (p, u) in enumerate(zip(paths, uniq)):
        pos = {f: k for k, f in enumerate(u)}
        slot_feature[li, :len(u)] = u
        for d, (n, gl, frac) in enumerate(p):
            k = pos[int(forest.feature[n])]
            node[li, d] = n
            went_left[li, d] = gl
            slot[li, d] = k
            z[li, k] *= frac
    value = np.asarray(leaf_value, dtype=np.float64)[np.asarray(leaves, dtype=np.int64)]
    expected = float(np.sum(value * np.prod(z, axis=1)))
    wk = np.array([factorial(k) * factorial(U - k - 1) / factorial(U) for k in range(U)])
    return LeafPaths(value=value, node=node, went_left=went_left, slot=slot,
                     slot_feature=slot_feature, z=z, expected_value=expected, weights_k=wk,
                     table=contribution_table(value, z, wk))


def tree_shap(forest: PackedForest, paths: LeafPaths, x: np.ndarray) -> np.ndarray:
    """In: one feature vector ``x`` (d,). Out: exact TreeSHAP values per feature (d,)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    phi = np.zeros(x.shape[0])
    L, U = paths.z.shape
    for lo in range(0, L, _CHUNK):
        hi = min(L, lo + _CHUNK)
        node = paths.node[lo:hi]
        pad = node < 0
        safe = np.where(pad, forest.roots[0], node)
        feat = np.where(pad, 0, forest.feature[safe])
        feat = np.where(feat < 0, 0, feat)
        go = forest.go_left(safe.reshape(-1), x[feat].reshape(-1)).reshape(node.shape)
        sat = (go == paths.went_left[lo:hi]) | pad
        n = hi - lo
        sf = paths.slot_feature[lo:hi]
        ok = sf >= 0
        if paths.table is not None:  # o as a bit pattern per leaf, then one gather
            slot = paths.slot[lo:hi]
            cleared = np.bitwise_or.reduce(np.where(sat, 0, 1 << np.minimum(slot, U - 1)), axis=1)
            pattern = ((1 << U) - 1) & ~cleared
            contrib = paths.table[lo + np.arange(n), pattern]
            phi += np.bincount(sf[ok], weights=contrib[ok], minlength=phi.shape[0])[:phi.shape[0]]
            continue
        o = np.ones((n, U + 1))
        rows = np.arange(n)
        slot = paths.slot[lo:hi]
        for d in range(slot.shape[1]):
            o[rows, slot[:, d]] *= sat[:, d]
        o = o[:, :U]
        z = paths.z[lo:hi]
        contrib = paths.value[lo:hi, None] * (o - z) * _unwound_sums(z, o, paths.weights_k)
        np.add.at(phi, sf[ok], contrib[ok])
    return phi


def _unwound_sums(z: np.ndarray, o: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For every leaf l and slot i: sum_k e_k(l, i) * w_k, where e(l, i) are the coefficients
    of prod_{j != i} (z_j + o_j t). Builds the full product P once (U steps), then divides
    out each factor (TreeSHAP's "unwind"): top-down when o_i = 1, P / z_i when o_i = 0
    (o is 0 or 1). O(L U^2) work in O(U) NumPy calls."""
    n, U = z.shape
    P = np.zeros((n, U + 1))
    P[:, 0] = 1.0
    for j in range(U):
        zj, oj = z[:, j, None], o[:, j, None]
        P[:, 1:] = P[:, 1:] * zj + P[:, :-1] * oj
        P[:, 0] *= zj[:, 0]
    # o_i == 1: Q = P / (z_i + t), coefficients from the top: q_{U-1} = p_U, q_{k-1} = p_k - z_i q_k
    q = np.repeat(P[:, U, None], U, axis=1)
    s_one = q * w[U - 1]
    for k in range(U - 1, 0, -1):
        q = P[:, k, None] - z * q
        s_one += q * w[k - 1]
    # o_i == 0: Q = P / z_i (a zero cover fraction with o_i = 0 contributes nothing: o_i - z_i = 0)
    s_zero = np.divide((P[:, :U] @ w)[:, None], z, out=np.zeros_like(z), where=z > 0)
    return np.where(o == 1.0, s_one, s_zero)


def linear_contributions(w: np.ndarray, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """In: coefficients, one scaled feature vector and the scaled training mean (all (d,)).
    Out: per-slot contributions ``w * (x - mean)`` to the margin."""
    return np.asarray(w) * (np.asarray(x, dtype=np.float64) - np.asarray(mean, dtype=np.float64))
