"""Model selection: the family comparison and the tuning of the best family.

In:  the train rows of a :class:`~sparkify.modeling.split.SplitTable` (``fold`` gives the
     folds, by user), the feature columns and a
     :class:`~sparkify.modeling.train_config.TrainConfig`.
Out: :class:`CVOutcome` per family (:func:`step_compare`) and the tuned model of the best
     one (:func:`step_tune`), each with its out-of-fold scores (:class:`Scored`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparkify.modeling import evaluate as ev
from sparkify.modeling.pipelines import (
    AS_OF_COL,
    FAMILY_NAMES,
    FOLD_COL,
    LABEL_COL,
    WEIGHT_COL,
    build_pipeline,
    param_maps,
    readable_params,
)
from sparkify.modeling.split import PERIOD_COL
from sparkify.modeling.train_config import TrainConfig
from sparkify.progress import Progress

SCORE_COL = "score"


@dataclass
class Scored:
    """Rows scored by a model, as NumPy arrays in one order: ``users``, ``as_of`` (epoch
    ms), ``labels`` (0/1), ``scores`` and, for out-of-fold scores, ``folds``; ``period``
    ('in_time' / 'out_of_time') for test rows."""

    users: np.ndarray
    as_of: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    folds: np.ndarray | None = None
    period: np.ndarray | None = None

    def keys(self) -> list[tuple[str, int]]:
        return list(zip(self.users.tolist(), self.as_of.tolist()))

    def subset(self, mask: np.ndarray) -> "Scored":
        def pick(a):
            return None if a is None else a[mask]

        return Scored(self.users[mask], self.as_of[mask], self.labels[mask], self.scores[mask],
                      pick(self.folds), pick(self.period))

    def counts(self) -> dict[str, int]:
        """Rows, distinct users and churner rows."""
        return {"rows": int(len(self.labels)), "users": int(len(np.unique(self.users))),
                "churners": int(self.labels.sum())}


def with_score(df, family: str):
    """Add ``score``: P(churn) for probabilistic models, the margin for LinearSVC."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    source = "rawPrediction" if family == "svc" else "probability"
    return df.withColumn(SCORE_COL, vector_to_array(F.col(source)).getItem(1))


def collect_scores(df) -> Scored:
    """The :class:`Scored` arrays of a scored table (one row per user and date)."""
    cols = ["userId", AS_OF_COL, LABEL_COL, SCORE_COL] + [c for c in (FOLD_COL, PERIOD_COL) if c in df.columns]
    pdf = df.select(*cols).toPandas()
    return Scored(pdf["userId"].to_numpy(), pdf[AS_OF_COL].to_numpy(dtype=np.int64),
                  pdf[LABEL_COL].to_numpy().astype(int), pdf[SCORE_COL].to_numpy(dtype=float),
                  pdf[FOLD_COL].to_numpy() if FOLD_COL in pdf else None,
                  pdf[PERIOD_COL].to_numpy() if PERIOD_COL in pdf else None)


def test_scores(model, test_df, family: str) -> Scored:
    """``test_df`` scored by ``model``."""
    return collect_scores(with_score(model.transform(test_df), family))


@dataclass
class CVOutcome:
    """One CrossValidator run: the refit best model, its parameters, the CV metric of
    each grid point, out-of-fold scores of the train rows and the time it took."""

    family: str
    model: Any  # PipelineModel refit on all train rows
    params: dict[str, Any]
    grid_size: int
    cv_metrics: list[float]
    oof: Scored
    seconds: float

    def threshold(self) -> tuple[float, float]:
        """(decision threshold, out-of-fold F1 at it): the churn-class F1 maximum."""
        return ev.best_threshold(self.oof.labels, self.oof.scores)

    def rank_key(self) -> tuple[float, float]:
        """(out-of-fold F1 at its best threshold, out-of-fold PR-AUC): higher is better."""
        return (self.threshold()[1], ev.average_precision(self.oof.labels, self.oof.scores))


@dataclass
class Tuned:
    """The tuned model: ``outcome``, ``source`` ('tuning' when the tuning grid beat the
    comparison point, else 'comparison') and ``weighting`` (the class weights' out-of-fold
    PR-AUC with and without and whether they were kept; None when class weights are off)."""

    outcome: CVOutcome
    source: str
    weighting: dict | None


# --------------------------------------------------------------------------- steps
def step_compare(train_df, numeric, categorical, config: TrainConfig, progress: Progress) -> dict[str, CVOutcome]:
    """Each family's k-fold CV over its comparison grid (parameters by the CV metric),
    ``config.parallelism`` families at once; each family's line is printed as it ends.
    Returns the outcomes in ``config.models`` order."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def run(family: str) -> CVOutcome:
        s = config.settings[family]
        return cross_validate(train_df, family, numeric, categorical, s.fixed, s.compare_grid, config,
                              parallelism=1)

    outcomes: dict[str, CVOutcome] = {}
    with progress.stage(f"compare {', '.join(config.models)}", total=len(config.models), unit="families") as st:
        with ThreadPoolExecutor(max_workers=max(1, config.parallelism)) as pool:
            futures = {pool.submit(run, family): family for family in config.models}
            for future in as_completed(futures):
                o = outcomes[futures[future]] = future.result()
                st.advance()
                thr, f1 = o.threshold()
                progress.say(f"  {FAMILY_NAMES[o.family]}: out-of-fold F1 {f1:.3f}, "
                             f"CV {config.cv_metric} {max(o.cv_metrics):.3f} on {ev.counts_text(o.oof.counts())} "
                             f"({o.seconds:.1f}s)")
        st.note = f"{len(outcomes)} families"
    return {family: outcomes[family] for family in config.models}


SELECTION_RULE = ("family by out-of-fold churn-class F1 at its best threshold; families within one standard "
                  "error (train users resampled) of the best tie, and the tie goes to out-of-fold PR-AUC")


def oof_counts(choice: dict) -> str:
    """'N rows of U users, C churner rows' of :func:`selection_table`'s out-of-fold figures
    ('the training rows' for a choice saved before it held them)."""
    return ev.counts_text(choice) or "the training rows"


def choice_note(choice: dict) -> str:
    """One line: the chosen family and why (:func:`selection_table`'s figures)."""
    fams = choice["families"]
    tied = [f for f, v in fams.items() if v["tied"]]
    line = (f"chosen: {FAMILY_NAMES[choice['chosen']]} (out-of-fold F1 {fams[choice['chosen']]['f1']:.3f}, "
            f"PR-AUC {fams[choice['chosen']]['pr_auc']:.3f} on {oof_counts(choice)})")
    if len(tied) > 1:
        line += (f"; F1 within one standard error ({choice['standard_error']:.3f}) of the best: "
                 f"{', '.join(FAMILY_NAMES[f] for f in tied)}, so the best PR-AUC decides")
    return line


def selection_table(outcomes: dict[str, CVOutcome], seed: int = 42) -> dict[str, Any]:
    """The family judged best by out-of-fold churn-class F1, read with its noise.

    In:  each family's :class:`CVOutcome` (out-of-fold scores of the same train rows).
    Out: ``leader`` (the highest out-of-fold F1, each family at its own best threshold),
    its F1's ``standard_error`` (:func:`f1_standard_error`: the train users resampled),
    each family's out-of-fold ``f1``, ``pr_auc`` and whether it ``tied`` with the leader
    (F1 within one standard error), the ``chosen`` family: the tied family of the
    highest out-of-fold PR-AUC (then the first in order), and the ``rows``, ``users`` and
    ``churners`` the out-of-fold figures rest on."""
    f1 = {fam: o.threshold()[1] for fam, o in outcomes.items()}
    pr = {fam: ev.average_precision(o.oof.labels, o.oof.scores) for fam, o in outcomes.items()}
    leader = max(outcomes, key=lambda fam: (f1[fam], pr[fam]))
    se = f1_standard_error(outcomes[leader], seed)
    tied = [fam for fam in outcomes if f1[fam] >= f1[leader] - se]
    chosen = max(tied, key=lambda fam: pr[fam])
    return {"leader": leader, "standard_error": se, "chosen": chosen,
            "families": {fam: {"f1": f1[fam], "pr_auc": pr[fam], "tied": fam in tied} for fam in outcomes},
            **outcomes[leader].oof.counts()}


def user_resample_copies(users: np.ndarray, seed: int = 42, resamples: int = 200) -> np.ndarray:
    """How many copies of each row each of ``resamples`` resamples holds when the users
    (not the rows) are drawn with replacement: a (resamples, rows) integer array; a user's
    rows move together."""
    unique, index = np.unique(users, return_inverse=True)
    draws = np.random.default_rng(seed).integers(0, len(unique), size=(resamples, len(unique)))
    per_user = np.stack([np.bincount(d, minlength=len(unique)) for d in draws])
    return per_user[:, index]


def f1_standard_error(outcome: CVOutcome, seed: int = 42, resamples: int = 200) -> float:
    """Standard error of ``outcome``'s out-of-fold F1 at its threshold: the F1 over
    ``resamples`` resamples of the train users (:func:`user_resample_copies`)."""
    threshold, _ = outcome.threshold()
    oof = outcome.oof
    flagged = (oof.scores > threshold).astype(int)
    copies = user_resample_copies(oof.users, seed, resamples)
    tp, fp, fn = (copies @ (flagged * oof.labels), copies @ (flagged * (1 - oof.labels)),
                  copies @ ((1 - flagged) * oof.labels))
    return float(np.std([ev.f1_from_counts(*counts) for counts in zip(tp, fp, fn)], ddof=1))


def pr_auc_gain(base: Scored, other: Scored, seed: int = 42, resamples: int = 200) -> tuple[float, float]:
    """(``other``'s PR-AUC minus ``base``'s, the standard error of that difference) on the
    same rows (matched by user and date), over ``resamples`` resamples of the users
    (:func:`user_resample_copies`), the same for both. Raises ValueError when the two do
    not score the same rows."""
    ob, oo = np.lexsort((base.as_of, base.users)), np.lexsort((other.as_of, other.users))
    users, labels = base.users[ob], base.labels[ob]
    if not (np.array_equal(users, other.users[oo]) and np.array_equal(base.as_of[ob], other.as_of[oo])):
        raise ValueError("the two score different rows")
    sb, so = base.scores[ob], other.scores[oo]
    resampled = resampled_pr_aucs([(users, labels, sb), (users, labels, so)], seed, resamples)
    gain = ev.average_precision(labels, so) - ev.average_precision(labels, sb)
    return gain, float(np.nanstd(resampled[:, 1] - resampled[:, 0], ddof=1))


def resampled_pr_aucs(sides: list[tuple], seed: int = 42, resamples: int = 200) -> np.ndarray:
    """PR-AUC of each side on the same ``resamples`` resamples of the users: each side a
    (users, labels, scores) tuple of aligned arrays; the users of all sides are drawn
    together (:func:`user_resample_copies` on their union), so a user on two sides moves
    on both. Out: a (resamples, len(sides)) array, NaN where a side's resample holds no
    churner."""
    keys = [np.asarray(users).astype(str) for users, _, _ in sides]
    union, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    copies = user_resample_copies(union, seed, resamples)          # (resamples, union): one column per user
    starts = np.cumsum([0] + [len(k) for k in keys])
    out = np.full((resamples, len(sides)), np.nan)
    for j, (_, labels, scores) in enumerate(sides):
        labels, scores = np.asarray(labels), np.asarray(scores)
        rows, per_row = np.arange(len(labels)), copies[:, inverse[starts[j]:starts[j + 1]]]
        for i in range(resamples):
            pick = np.repeat(rows, per_row[i])
            if labels[pick].any():
                out[i, j] = ev.average_precision(labels[pick], scores[pick])
    return out


def ratio_band(numerator: np.ndarray, denominator: np.ndarray) -> list[float]:
    """The 2.5th and 97.5th percentiles of numerator / denominator over resamples (the
    resamples where either is NaN or the denominator 0 left out; NaN when none is left)."""
    ratios = numerator / np.where(denominator > 0, denominator, np.nan)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return [float("nan"), float("nan")]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return [float(low), float(high)]


def fraction_of_ceiling(users: np.ndarray, labels: np.ndarray, model_scores: np.ndarray, truth: np.ndarray,
                        seed: int = 42, resamples: int = 200) -> dict:
    """The model's PR-AUC over the true probability's on the same rows, with a 95 %
    interval from resampling the users (a user's rows move together): in, aligned arrays;
    out, ``model_pr_auc_fraction`` and ``fraction_interval`` [low, high] (NaN when the
    truth's PR-AUC is 0). A low end above 1 means the model beats the truth by more than
    the noise: a leak to hunt."""
    truth_pr = ev.average_precision(labels, truth)
    if not truth_pr:
        return {"model_pr_auc_fraction": float("nan"), "fraction_interval": [float("nan"), float("nan")]}
    r = resampled_pr_aucs([(users, labels, model_scores), (users, labels, truth)], seed, resamples)
    return {"model_pr_auc_fraction": ev.average_precision(labels, model_scores) / truth_pr,
            "fraction_interval": ratio_band(r[:, 0], r[:, 1])}


def pr_auc_ratio_interval(later: tuple, earlier: tuple, seed: int = 42, resamples: int = 200) -> list[float]:
    """95 % interval of PR-AUC(later) / PR-AUC(earlier) for two sets of scored rows (each
    a (users, labels, scores) tuple of aligned arrays), the users of both drawn together
    (:func:`resampled_pr_aucs`: a user in both sets moves in both): [low, high]."""
    r = resampled_pr_aucs([later, earlier], seed, resamples)
    return ratio_band(r[:, 0], r[:, 1])


def fraction_text(ceiling: dict) -> str:
    """'0.72 (95 % interval 0.61-0.84, users resampled)' for a ceiling block with
    :func:`fraction_of_ceiling`'s figures (the bare fraction for one saved without its
    interval)."""
    frac = ceiling.get("model_pr_auc_fraction")
    return ("n/a" if frac is None else f"{frac:.2f}") + ev.interval_text(ceiling.get("fraction_interval"))


def step_tune(train_df, family: str, comparison: CVOutcome, numeric, categorical, config: TrainConfig,
              progress: Progress) -> Tuned:
    """The 'tuning' stage: the family over its tuning grid when ``config.tune`` (the
    comparison point is kept when the grid does not beat it out of fold), then, with
    ``config.class_weights``, the chosen point with class weights: the weights are kept
    only when they raise the out-of-fold PR-AUC by more than one standard error of the
    gain (:func:`pr_auc_gain`; ranking: calibration fixes the probabilities either way).
    The comparison and the grid are unweighted in every plan, so a plan chooses the
    family the quick plan chooses."""
    with progress.stage("tuning") as st:
        s = config.settings[family]
        outcome, source = comparison, "comparison"
        if config.tune and s.tune_grid:
            searched = cross_validate(train_df, family, numeric, categorical, s.fixed, s.tune_grid, config)
            if searched.rank_key() >= comparison.rank_key():
                outcome, source = searched, "tuning"
        tuned = Tuned(outcome, source, None)
        if config.class_weights:
            weighted = fit_fixed(train_df, family, numeric, categorical,
                                 {**outcome.params, "weightCol": WEIGHT_COL}, config)
            pr = {name: ev.average_precision(o.oof.labels, o.oof.scores)
                  for name, o in (("weighted", weighted), ("unweighted", outcome))}
            gain, se = pr_auc_gain(outcome.oof, weighted.oof, config.seed)
            kept = gain > se
            tuned = Tuned(weighted if kept else outcome, source,
                          {"out_of_fold_pr_auc": pr, "gain": gain, "standard_error": se, "kept": kept})
        st.note = _tuning_note(tuned, config)
    return tuned


def _tuning_note(tuned: Tuned, config: TrainConfig) -> str:
    o, weighting = tuned.outcome, tuned.weighting
    threshold, val_f1 = o.threshold()
    note = (f"{FAMILY_NAMES[o.family]} {o.params}"
            + ("" if config.tune else " (its comparison point: --thorough searches a grid)")
            + f", threshold {threshold:.4f}, out-of-fold F1 {val_f1:.3f} on {ev.counts_text(o.oof.counts())}")
    if weighting is not None:
        pr = weighting["out_of_fold_pr_auc"]
        note += (f"; class weights {'kept' if weighting['kept'] else 'dropped'} (out-of-fold PR-AUC "
                 f"{pr['weighted']:.3f} with, {pr['unweighted']:.3f} without; one standard error of the "
                 f"gain {weighting['standard_error']:.3f})")
    return note


# --------------------------------------------------------------------------- cross-validation
def cross_validate(train_df, family: str, numeric: list[str], categorical: list[str],
                   fixed: dict, grid: dict, config: TrainConfig, parallelism: int | None = None) -> CVOutcome:
    """k-fold CV of one family over ``grid`` on the train rows (``fold`` column gives the
    folds, by user), ``parallelism`` fits at once (default ``config.parallelism``);
    returns the refit best model and the out-of-fold scores of its parameters.

    A grid of several points goes through Spark's ``CrossValidator``; a single point
    (nothing to choose) is k fold fits and the refit, scored out of fold directly."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator

    pipeline, clf = build_pipeline(family, numeric, categorical, fixed, seed=config.seed, weighted=False)
    maps = param_maps(clf, grid)
    if len(maps) == 1:
        return _cross_fit_point(train_df, pipeline, family, fixed, maps[0], config, parallelism or config.parallelism)
    evaluator = BinaryClassificationEvaluator(labelCol=LABEL_COL, rawPredictionCol="rawPrediction",
                                              metricName=config.cv_metric)
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=maps, evaluator=evaluator,
                        numFolds=config.folds, foldCol=FOLD_COL, parallelism=parallelism or config.parallelism,
                        collectSubModels=True, seed=config.seed)
    t0 = time.perf_counter()
    cv_model = cv.fit(train_df)
    metrics = [float(m) for m in cv_model.avgMetrics]
    best = int(np.argmax(metrics)) if evaluator.isLargerBetter() else int(np.argmin(metrics))
    scored = _out_of_fold(train_df, [cv_model.subModels[k][best] for k in range(config.folds)], family)
    seconds = time.perf_counter() - t0
    params = dict(fixed)
    params.update(readable_params(maps[best]))
    return CVOutcome(family, cv_model.bestModel, params, len(maps), metrics, scored, seconds)


def fit_fixed(train_df, family, numeric, categorical, params, config) -> CVOutcome:
    """CV with a single parameter point: k fits for out-of-fold scores (threshold) plus
    the refit on all train rows."""
    return cross_validate(train_df, family, numeric, categorical, params, {}, config)


def _out_of_fold(train_df, fold_models: list, family: str) -> Scored:
    """The train rows of each fold k scored by ``fold_models[k]`` (fitted without them),
    collected in one job."""
    from functools import reduce

    from pyspark.sql import functions as F

    parts = [with_score(m.transform(train_df.filter(F.col(FOLD_COL) == k)), family)
             .select("userId", AS_OF_COL, LABEL_COL, SCORE_COL, FOLD_COL) for k, m in enumerate(fold_models)]
    return collect_scores(reduce(lambda a, b: a.unionByName(b), parts))


def _cross_fit_point(train_df, pipeline, family: str, fixed: dict, param_map: dict, config: TrainConfig,
                     parallelism: int) -> CVOutcome:
    """One parameter point: a model per fold (fitted on the other folds) and one on all
    rows, ``parallelism`` at once; the out-of-fold scores, and the mean over folds of
    ``config.cv_metric`` on them as the CV metric."""
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.sql import functions as F

    t0 = time.perf_counter()

    def fit(k: int):
        return pipeline.copy(param_map).fit(train_df if k < 0 else train_df.filter(F.col(FOLD_COL) != k))

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        refit, *fold_models = pool.map(fit, [-1, *range(config.folds)])
    scored = _out_of_fold(train_df, fold_models, family)
    metric = ev.average_precision if config.cv_metric == "areaUnderPR" else ev.roc_auc
    per_fold = [metric(scored.labels[scored.folds == k], scored.scores[scored.folds == k])
                for k in range(config.folds)]
    params = dict(fixed)
    params.update(readable_params(param_map))
    return CVOutcome(family, refit, params, 1, [float(np.mean(per_fold))], scored, time.perf_counter() - t0)
