"""Tree ensembles of a saved pipeline: ``RandomForestClassificationModel`` and
``GBTClassificationModel``, all trees packed into flat arrays and walked in lock-step.

Node semantics (Spark): a continuous split sends ``x <= threshold`` left; a categorical
split sends ``x in leftCategories`` left (anything else, NaN included, goes right).

- RF: rawPrediction = sum over trees of the leaf's class counts normalised to sum 1;
  probability = raw / sum(raw); prediction = argmax(raw) (or ``thresholds`` on probability).
- GBT: margin m = sum_i w_i * leaf_i; rawPrediction = [-m, m];
  probability = [p0, 1 - p0] with p0 = 1 / (1 + exp(2m)); prediction = m > -m (or thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparkify.scorer.common import Classifier, first_argmax, probability_to_prediction
from sparkify.scorer.errors import ModelLoadError
from sparkify.scorer.pipeline_reader import StageFiles, read_parquet_dir

SMALL_BATCH = 8  # rows up to which leaves() tests every node once (one request's rows)


@dataclass
class PackedForest:
    """All trees of an ensemble in flat node arrays (absolute node indices).

    A leaf has ``feature == -1`` and ``left == right == itself``, so walking ``depth``
    steps from the roots always ends on the leaves.
    """

    feature: np.ndarray      # (N,) int64, -1 at leaves
    threshold: np.ndarray    # (N,) float64 (continuous splits)
    left: np.ndarray         # (N,) int64
    right: np.ndarray        # (N,) int64
    is_cat: np.ndarray       # (N,) bool
    cat_row: np.ndarray      # (N,) int64 row of cat_table (0 = unused dummy row)
    cat_table: np.ndarray    # (R, C) bool: category c goes left at that node
    stats: list[np.ndarray]  # per node impurityStats
    prediction: np.ndarray   # (N,) float64 node prediction
    cover: np.ndarray        # (N,) float64 weighted training count at the node
    roots: np.ndarray        # (T,) int64
    weights: np.ndarray      # (T,) float64
    depth: int               # longest root-to-leaf path (edges)

    def __post_init__(self) -> None:
        self.has_categorical = bool(self.is_cat.any())
        # flat lookup tables for the lock-step walk
        self._feat0 = np.where(self.feature < 0, 0, self.feature)
        self._thr = np.where(np.isnan(self.threshold), np.inf, self.threshold)
        self._child = np.empty(2 * len(self.feature), dtype=np.int64)
        self._child[0::2] = self.left
        self._child[1::2] = self.right
        # categorical nodes for testing every node at once (small batches): the category
        # table with an all-False column C for values that are not one of 0..C-1
        self._cat_nodes = np.nonzero(self.is_cat)[0]
        ncat = self.cat_table.shape[1]
        ext = np.zeros((self.cat_table.shape[0], ncat + 1), dtype=bool)
        ext[:, :ncat] = self.cat_table
        self._cat_flat = ext.reshape(-1)
        self._cat_base = self.cat_row[self._cat_nodes] * (ncat + 1)
        self._cat_feat = self._feat0[self._cat_nodes]
        self._cat_values = np.append(np.arange(ncat, dtype=np.float64), np.nan)

    @property
    def num_trees(self) -> int:
        return len(self.roots)

    def _cat_left(self, node: np.ndarray, x: np.ndarray) -> np.ndarray:
        """At categorical nodes: x in leftCategories (NaN, negative, fractional or unknown
        category values are not, so they go right)."""
        ncat = self.cat_table.shape[1]
        valid = (x >= 0) & (x < ncat) & (x == np.floor(x))
        xi = np.where(valid, x, 0).astype(np.intp)
        return valid & self.cat_table[self.cat_row[node], xi]

    def go_left(self, node: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Whether value(s) ``x`` at internal node(s) ``node`` go left (Spark's rule)."""
        left = x <= self.threshold[node]
        if self.has_categorical:
            cat = self.is_cat[node]
            if cat.any():
                left[cat] = self._cat_left(node[cat], x[cat])
        return left

    def _go_left_all(self, X: np.ndarray) -> np.ndarray:
        """(n, N) bool: whether each row goes left at every node (Spark's rule; leaves:
        either, they loop onto themselves). Categorical: a value goes left when it is one of
        0..C-1 (NaN, fractional or out of range: not) and in the node's left set."""
        go = X[:, self._feat0] <= self._thr
        if self._cat_nodes.size:
            xc = X[:, self._cat_feat]
            k = np.searchsorted(self._cat_values[:-1], xc)   # NaN sorts last: k = C
            ci = np.where(self._cat_values.take(k) == xc, k, len(self._cat_values) - 1)
            go[:, self._cat_nodes] = self._cat_flat.take(self._cat_base + ci)
        return go

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """In: feature matrix (n, d). Out: (n, T) absolute leaf index per row and tree,
        all trees and rows advanced together one level per step (flat ``take`` lookups).
        A few rows (a served request) test every node once first, then walk those bits."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, d = X.shape
        idx = np.tile(self.roots, (n, 1))
        if n <= SMALL_BATCH:
            N = len(self.feature)
            right = ~self._go_left_all(X).reshape(-1)
            rbase = (np.arange(n, dtype=np.int64) * N)[:, None]
            for _ in range(self.depth):
                idx = self._child.take(2 * idx + right.take(rbase + idx))
            return idx
        flat = X.ravel()
        base = (np.arange(n, dtype=np.int64) * d)[:, None]
        for _ in range(self.depth):
            x = flat.take(base + self._feat0.take(idx))
            right = ~(x <= self._thr.take(idx))   # NaN goes right; leaves loop onto themselves
            if self.has_categorical:
                cat = self.is_cat.take(idx)
                if cat.any():
                    right[cat] = ~self._cat_left(idx[cat], x[cat])
            idx = self._child.take(2 * idx + right)
        return idx

    def sum_over_trees(self, X: np.ndarray, table: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """In: features (n, d) and a per-node table (N,) or (N, k). Out: for each row, the sum
        over trees of the table at the leaf reached, (n,) or (n, k); rows in chunks to bound
        memory (chunk x trees leaf indices at a time)."""
        n = X.shape[0]
        out = np.empty((n,) + table.shape[1:])
        for lo in range(0, n, chunk):
            leaves = self.leaves(X[lo:lo + chunk])
            out[lo:lo + chunk] = table[leaves].sum(axis=1)
        return out


def _list_column(arr) -> list[np.ndarray]:
    """A pyarrow list<double> array -> list of NumPy arrays."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    ends = np.cumsum(lengths)
    return np.split(flat, ends[:-1]) if len(lengths) else []


def read_forest(files: StageFiles, regression_trees: bool) -> PackedForest:
    """In: a saved RF/GBT stage. Out: its ``PackedForest`` (weights from treesMetadata)."""
    nodes = _read_nodes(files)
    trees, starts = np.unique(nodes.tree_id, return_index=True)
    counts = np.diff(np.append(starts, len(nodes.tree_id)))
    offset_of = dict(zip(trees.tolist(), starts.tolist()))
    base = np.repeat(starts, counts)
    if not np.array_equal(nodes.ids, np.arange(len(nodes.ids)) - base):
        raise ModelLoadError(f"{files.path}/data: node ids are not 0..n-1 within each tree")

    n = len(nodes.ids)
    is_leaf = nodes.lchild < 0
    node = np.arange(n)
    left = np.where(is_leaf, node, nodes.lchild + base)
    right = np.where(is_leaf, node, nodes.rchild + base)
    is_cat = (~is_leaf) & (nodes.ncat >= 0)
    threshold, cat_row, cat_table = _split_tables(files, nodes, is_leaf, is_cat)
    if regression_trees:
        cover = np.array([s[0] if len(s) else 0.0 for s in nodes.stats])
    else:
        cover = np.array([s.sum() for s in nodes.stats])
    depth = _depth(is_leaf, left, right)
    return PackedForest(
        feature=np.where(is_leaf, -1, nodes.feat).astype(np.int64), threshold=threshold,
        left=left.astype(np.int64), right=right.astype(np.int64), is_cat=is_cat, cat_row=cat_row,
        cat_table=cat_table, stats=nodes.stats, prediction=nodes.pred, cover=cover,
        roots=np.array([offset_of[t] for t in trees.tolist()], dtype=np.int64),
        weights=_tree_weights(files, trees, regression_trees), depth=depth)


@dataclass
class _Nodes:
    """The node rows of a saved tree ensemble, sorted by (treeID, node id): one entry
    per node (``stats`` and ``loc`` as lists of arrays)."""

    tree_id: np.ndarray
    ids: np.ndarray          # node id within its tree
    pred: np.ndarray         # float64 node prediction
    stats: list[np.ndarray]  # impurityStats
    lchild: np.ndarray       # node id within the tree, -1 at leaves
    rchild: np.ndarray
    feat: np.ndarray         # split feature index
    loc: list[np.ndarray]    # leftCategoriesOrThreshold
    ncat: np.ndarray         # numCategories, -1 for a continuous split


def _read_nodes(files: StageFiles) -> _Nodes:
    """In: a saved RF/GBT stage. Out: its ``data`` node rows as :class:`_Nodes`. Raises
    ModelLoadError when the columns are not Spark's tree layout."""
    table = files.data()
    try:
        tree_id = table.column("treeID").to_numpy()
        nd = table.column("nodeData").combine_chunks()
        ids = nd.field("id").to_numpy(zero_copy_only=False)
        pred = nd.field("prediction").to_numpy(zero_copy_only=False).astype(np.float64)
        stats = _list_column(nd.field("impurityStats"))
        lchild = nd.field("leftChild").to_numpy(zero_copy_only=False)
        rchild = nd.field("rightChild").to_numpy(zero_copy_only=False)
        split = nd.field("split")
        feat = split.field("featureIndex").to_numpy(zero_copy_only=False)
        loc = _list_column(split.field("leftCategoriesOrThreshold"))
        ncat = split.field("numCategories").to_numpy(zero_copy_only=False)
    except (KeyError, AttributeError, ValueError) as exc:
        raise ModelLoadError(f"{files.path}/data: unexpected tree data layout: {exc}") from exc
    order = np.lexsort((ids, tree_id))
    return _Nodes(tree_id=tree_id[order], ids=ids[order], pred=pred[order], stats=[stats[i] for i in order],
                  lchild=lchild[order], rchild=rchild[order], feat=feat[order], loc=[loc[i] for i in order],
                  ncat=ncat[order])


def _split_tables(files: StageFiles, nodes: _Nodes, is_leaf: np.ndarray,
                  is_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out: (threshold per node, NaN except at continuous splits; cat_row per node, 0
    except at categorical splits; cat_table, row r: the categories that go left at the
    r-th categorical node, row 0 unused). Raises ModelLoadError for a continuous split
    without exactly one threshold."""
    n, loc, ncat = len(nodes.ids), nodes.loc, nodes.ncat
    threshold = np.full(n, np.nan)
    cat_nodes = np.nonzero(is_cat)[0]
    width = 1
    for i in cat_nodes:
        width = max(width, int(ncat[i]), int(loc[i].max()) + 1 if len(loc[i]) else 1)
    cat_table = np.zeros((len(cat_nodes) + 1, width), dtype=bool)
    cat_row = np.zeros(n, dtype=np.int64)
    for r, i in enumerate(cat_nodes, start=1):
        cat_row[i] = r
        cats = loc[i].astype(np.int64)
        cat_table[r, cats] = True
    for i in np.nonzero((~is_leaf) & ~is_cat)[0]:
        if len(loc[i]) != 1:
            raise ModelLoadError(f"{files.path}/data: continuous split without one threshold")
        threshold[i] = loc[i][0]
    return threshold, cat_row, cat_table


def _depth(is_leaf: np.ndarray, left: np.ndarray, right: np.ndarray) -> int:
    """The longest root-to-leaf path (edges) over all trees, nodes in preorder (a parent
    before its children; absolute child indices); 0 for no nodes."""
    n = len(is_leaf)
    depth_arr = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if not is_leaf[i]:
            depth_arr[left[i]] = depth_arr[i] + 1
            depth_arr[right[i]] = depth_arr[i] + 1
    return int(depth_arr.max()) if n else 0


def _tree_weights(files: StageFiles, trees: np.ndarray, regression_trees: bool) -> np.ndarray:
    """Each tree's weight (in the order of ``trees``) from the stage's treesMetadata; all
    1 when it is absent for a random forest. Raises ModelLoadError when a GBT lacks it or
    a tree has no weight."""
    weights = np.ones(len(trees))
    tm_dir = files.path / "treesMetadata"
    if tm_dir.is_dir():
        tm = read_parquet_dir(tm_dir)
        tm_ids = tm.column("_1").to_numpy()
        tm_w = tm.column("_3").to_numpy().astype(np.float64)
        w_of = dict(zip(tm_ids.tolist(), tm_w.tolist()))
        missing = [t for t in trees.tolist() if t not in w_of]
        if missing:
            raise ModelLoadError(f"{tm_dir}: no weight for trees {missing[:5]}")
        weights = np.array([w_of[t] for t in trees.tolist()])
    elif regression_trees:
        raise ModelLoadError(f"{tm_dir} is missing (GBT tree weights)")
    return weights


class RandomForest(Classifier):
    """``RandomForestClassificationModel``."""

    def __init__(self, files: StageFiles):
        super().__init__(files)
        meta = files.metadata
        self.num_classes = int(meta.get("numClasses", 2))
        self.num_features = int(meta["numFeatures"]) if "numFeatures" in meta else None
        self.forest = read_forest(files, regression_trees=False)
        k = self.num_classes
        vals = np.zeros((len(self.forest.stats), k))
        for i, s in enumerate(self.forest.stats):
            if len(s) != k:
                if self.forest.feature[i] < 0:
                    raise ModelLoadError(f"{files.path}: leaf with {len(s)} class counts for {k} classes")
                continue
            total = s.sum()
            if total != 0:
                vals[i] = s / total
        #: per node: class counts normalised to sum 1 (the leaf's vote)
        self.node_votes = vals

    def predict(self, X):
        raw = self.forest.sum_over_trees(X, self.node_votes)
        total = raw.sum(axis=1, keepdims=True)
        prob = np.divide(raw, total, out=raw.copy(), where=total != 0)
        if self.thresholds is not None:
            pred = probability_to_prediction(prob, self.thresholds)
        else:
            pred = first_argmax(raw)
        return {"rawPrediction": raw, "probability": prob, "prediction": pred}


class GBT(Classifier):
    """``GBTClassificationModel`` (logistic loss)."""

    def __init__(self, files: StageFiles):
        super().__init__(files)
        meta = files.metadata
        self.num_features = int(meta["numFeatures"]) if "numFeatures" in meta else None
        loss = files.param("lossType", "logistic")
        if loss != "logistic":
            raise ModelLoadError(f"{files.path}: GBT lossType {loss!r} is not supported (logistic only)")
        self.forest = read_forest(files, regression_trees=True)

    def margin(self, X: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """m = sum_i w_i * leaf_i, rows in chunks."""
        n = X.shape[0]
        out = np.empty(n)
        for lo in range(0, n, chunk):
            out[lo:lo + chunk] = self.forest.prediction[self.forest.leaves(X[lo:lo + chunk])] @ self.forest.weights
        return out

    def predict(self, X):
        m = self.margin(X)
        raw = np.column_stack([-m, m])
        p0 = 1.0 / (1.0 + np.exp(-2.0 * raw[:, 0]))
        prob = np.column_stack([p0, 1.0 - p0])
        if self.thresholds is not None:
            pred = probability_to_prediction(prob, self.thresholds)
        else:
            pred = (m > -m).astype(np.float64)
        return {"rawPrediction": raw, "probability": prob, "prediction": pred}
