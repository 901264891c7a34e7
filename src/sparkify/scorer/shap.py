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

Per request (:func:`tree_shap`), a leaf's contribution depends on x only through which of its
path's tests x passes, so at load time every leaf's contributions are tabulated for every
pattern of o (``LeafPaths.table``) and, for paths of at most 16 nodes, every pattern of the
path nodes' go-left bits is mapped to its table row (``LeafPaths.fast``). Explaining one
record then is: each internal node's test once, each leaf's go-left bits packed into an
integer (one uint64 multiply per 8 bits), two gathers and one ``bincount`` (about 0.1 ms for 100 depth-6 trees).
:func:`tree_shap_unwound` is the reference: the same arithmetic per request, no tables.

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
    #: the per-request index arrays of the table path (:class:`FastPaths`); None: unwind
    fast: FastPaths | None = None


TABLE_BYTES = 64 * 2**20
_GATHER = np.uint64(0x0102040810204080)  # sum of 2**(56 - 7k), k = 0..7
_SHIFT = np.uint64(56)
ROWMAP_BYTES = 16 * 2**20  # bound on FastPaths.rowmap (leaves * 2**depth int32)


@dataclass
class FastPaths:
    """Index arrays, built once per forest, that turn one feature vector into every leaf's
    row of the contribution table with a handful of whole-array NumPy calls.

    The forest's internal nodes are renumbered 0..M-1: continuous splits, one dummy node
    that never goes left, categorical splits. Each leaf's path nodes (padded with the dummy
    to a multiple of 8 positions) index the per-node go-left vector; the bits, packed little-endian into one integer g, select
    ``rowmap[leaf * 2**D + g]``: the row ``leaf * 2**U + o_pattern`` of the table.
    """

    cont_feature: np.ndarray  # (Mc + 1,) intp feature of each continuous node (+ dummy: 0)
    cont_threshold: np.ndarray  # (Mc + 1,) float64 x <= t goes left (dummy: NaN, never)
    cat_feature: np.ndarray   # (Mk,) intp feature of each categorical internal node
    cat_base: np.ndarray      # (Mk,) intp row offset of the node in cat_flat
    cat_flat: np.ndarray      # (R * (C + 1),) bool cat_table with an all-False column C
    num_categories: int       # C: a value outside 0..C-1 (or fractional, NaN) goes right
    path_index: np.ndarray    # (L, D8) intp compact internal node per path position
    rowmap: np.ndarray | None  # (L * 2**D,) int32 table row per leaf and go pattern
    row_base: np.ndarray      # (L,) intp leaf * 2**U (fallback without rowmap)
    path_went_left: np.ndarray  # (L, D) bool (fallback without rowmap)
    path_pad: np.ndarray      # (L, D) bool (fallback without rowmap)
    path_bit: np.ndarray      # (L, D) int64 1 << slot (fallback without rowmap)
    slot_bins: np.ndarray     # (L * U,) intp feature of each table column (0 for padding:
                              # padded slots contribute exactly 0)
    table_rows: np.ndarray    # (L * 2**U, U) float64 view of LeafPaths.table

    def go_left(self, x: np.ndarray) -> np.ndarray:
        """(M,) bool: whether ``x`` goes left at each internal node (Spark's rule, as
        :meth:`PackedForest.go_left`)."""
        go = x.take(self.cont_feature) <= self.cont_threshold
        if self.cat_feature.size:
            c = self.num_categories
            valid = (x >= 0) & (x < c) & (x == np.floor(x))
            ci = np.where(valid, x, c).astype(np.intp)
            go = np.concatenate((go, self.cat_flat.take(self.cat_base + ci.take(self.cat_feature))))
        return go

    def rows(self, x: np.ndarray) -> np.ndarray:
        """(L,) the table row of every leaf for feature vector ``x``."""
        bits = self.go_left(x).take(self.path_index)
        if self.rowmap is not None:
            # 8 go bits (0/1 bytes) per uint64, gathered into the top byte by one multiply
            # (bit k = byte k; the partial products never overlap, so there are no carries)
            words = bits.view("<u8")
            g = (words[:, 0] * _GATHER) >> _SHIFT
            for k in range(1, words.shape[1]):
                g |= ((words[:, k] * _GATHER) >> _SHIFT) << np.uint64(8 * k)
            return self.rowmap.take(self._map_base + g.astype(np.intp))
        D = self.path_went_left.shape[1]
        sat = (bits[:, :D] == self.path_went_left) | self.path_pad
        cleared = np.bitwise_or.reduce(np.where(sat, 0, self.path_bit), axis=1)
        U = self.table_rows.shape[1]
        return self.row_base + (((1 << U) - 1) & ~cleared)

    def __post_init__(self) -> None:
        L, D = self.path_went_left.shape
        self._map_base = np.arange(L, dtype=np.intp) << D


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
    table = contribution_table(value, z, wk)
    fast = None if table is None else _fast_paths(forest, node, went_left, slot, slot_feature, table)
    return LeafPaths(value=value, node=node, went_left=went_left, slot=slot,
                     slot_feature=slot_feature, z=z, expected_value=expected, weights_k=wk,
                     table=table, fast=fast)


def _fast_paths(forest: PackedForest, node: np.ndarray, went_left: np.ndarray, slot: np.ndarray,
                slot_feature: np.ndarray, table: np.ndarray) -> FastPaths:
    """The :class:`FastPaths` of a forest's padded paths and their o-pattern table."""
    L, D = node.shape
    U = slot_feature.shape[1]
    pad = node < 0
    internal = np.nonzero(forest.feature >= 0)[0]
    cont = internal[~forest.is_cat[internal]]
    cat = internal[forest.is_cat[internal]]
    # compact numbering: continuous nodes, then one dummy node that never goes left
    # (threshold NaN: the padding of every path), then categorical nodes
    dummy = len(cont)
    compact = np.full(len(forest.feature), dummy, dtype=np.intp)
    compact[cont] = np.arange(len(cont))
    compact[cat] = dummy + 1 + np.arange(len(cat))
    C = forest.cat_table.shape[1]
    cat_ext = np.zeros((forest.cat_table.shape[0], C + 1), dtype=bool)
    cat_ext[:, :C] = forest.cat_table
    D8 = max(8, -(-D // 8) * 8)
    path_index = np.full((L, D8), dummy, dtype=np.intp)
    path_index[:, :D] = np.where(pad, dummy, compact[np.where(pad, 0, node)])
    bit = np.where(pad, 0, np.int64(1) << np.minimum(slot, U - 1).astype(np.int64))
    full = (1 << U) - 1
    row_base = np.arange(L, dtype=np.intp) << U
    rowmap = None
    if D <= 16 and L * (1 << D) * 4 <= ROWMAP_BYTES and L * (1 << U) < 2**31:
        # every go pattern g of the D path nodes -> o pattern -> table row, all leaves at once
        rowmap = np.empty((L, 1 << D), dtype=np.int32)
        for g in range(1 << D):
            go = ((g >> np.arange(D)) & 1).astype(bool)
            sat = (go[None, :] == went_left) | pad
            cleared = np.bitwise_or.reduce(np.where(sat, 0, bit), axis=1)
            rowmap[:, g] = row_base + (full & ~cleared)
        rowmap = rowmap.reshape(-1)
    rows = table.reshape(L << U, U)
    rows[np.repeat(slot_feature < 0, 1 << U, axis=0)] = 0.0  # exactly 0 already (o = z = 1)
    return FastPaths(
        cont_feature=np.append(forest.feature[cont], 0).astype(np.intp),
        cont_threshold=np.append(forest.threshold[cont], np.nan).astype(np.float64),
        cat_feature=forest.feature[cat].astype(np.intp),
        cat_base=(forest.cat_row[cat] * (C + 1)).astype(np.intp),
        cat_flat=cat_ext.reshape(-1), num_categories=C,
        path_index=path_index, rowmap=rowmap, row_base=row_base,
        path_went_left=went_left.copy(), path_pad=pad, path_bit=bit,
        slot_bins=np.where(slot_feature < 0, 0, slot_feature).astype(np.intp).reshape(-1),
        table_rows=rows)


def tree_shap(forest: PackedForest, paths: LeafPaths, x: np.ndarray) -> np.ndarray:
    """In: one feature vector ``x`` (d,). Out: exact TreeSHAP values per feature (d,).
    With ``paths.fast`` (built by :func:`build_leaf_paths` for ``forest``): one row of the
    contribution table per leaf, summed per feature; else :func:`tree_shap_unwound`."""
    fast = paths.fast
    if fast is None:
        return tree_shap_unwound(forest, paths, x)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    d = x.shape[0]
    contrib = fast.table_rows.take(fast.rows(x), axis=0)
    return np.bincount(fast.slot_bins, weights=contrib.reshape(-1), minlength=d)[:d]


def tree_shap_unwound(forest: PackedForest, paths: LeafPaths, x: np.ndarray) -> np.ndarray:
    """The reference: TreeSHAP of one feature vector by unwinding every leaf's product
    polynomial per request (no tables)."""
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
