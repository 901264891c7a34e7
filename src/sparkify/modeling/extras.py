"""The extra evaluations beside the main figures: the seed-compatible label, the true
ceiling and the split-seed spread.

In:  the split table, the tuned model, its test scores and figures, and the config.
Out: the ``label_comparison``, ``ceiling`` and ``seed_spread`` entries of
     ``metrics.json`` (each None when not run); :func:`ceiling_on_rows` also serves
     ``sparkify backtest``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sparkify.modeling import calibration as cal
from sparkify.modeling import evaluate as ev
from sparkify.modeling.assessment import model_figures
from sparkify.modeling.pipelines import AS_OF_COL, LABEL_COL, feature_columns
from sparkify.modeling.selection import CVOutcome, Scored, fit_fixed, fraction_of_ceiling, fraction_text
from sparkify.modeling.split import (
    SPLIT_COL,
    SplitTable,
    oot_dates,
    require_learnable,
    split_frames,
    split_weighted,
    user_base,
)
from sparkify.modeling.train_config import TrainConfig
from sparkify.progress import Progress

CEILING_THRESHOLD_ROWS = 5000
FORWARD_THRESHOLD_ROWS = 500
FIGURE_KEYS = ("f1", "precision", "recall", "pr_auc", "roc_auc", "accuracy", "weighted_f1", "rows", "users",
               "churners")
EVER_NOTE = ("'ever' labels every user who ever cancelled in the log, with features from the window before "
             "the user's last day (cancellation events and time-to-last-event features removed). It answers "
             "'who churned?', not 'who will churn?': features and label overlap in time, so its figures "
             "overstate what a model can do before the fact. The prediction-time ('window') figures are the "
             "honest ones.")


def step_extras(loaded, data: SplitTable, test: Scored, tuned: CVOutcome, best_fig: dict, events_path: str,
                numeric, categorical, config: TrainConfig, progress: Progress) -> dict:
    """The extra evaluations, each a stage of its own: the seed-compatible 'ever' label
    (``config.label_comparison``), the true ceiling (``config.ceiling``, on a simulated
    log with its ground truth beside it) and the split-seed spread (``config.seed_spread``,
    small test sets). Returns {'label_comparison', 'ceiling', 'seed_spread'}."""
    from pyspark.sql import functions as F

    spec = data.spec
    out: dict[str, Any] = {"label_comparison": None, "ceiling": None, "seed_spread": None}
    if config.label_comparison and spec.mode == "window":
        with progress.stage("label comparison") as st:
            lc = out["label_comparison"] = label_comparison(loaded, tuned.family, tuned.params, config,
                                                            data.partitions, best_fig)
            st.note = (f"'ever' F1 {lc['ever']['f1']:.3f} on {ev.counts_text(lc['ever'])} vs prediction-time F1 "
                       f"{lc['window']['f1']:.3f} on {ev.counts_text(lc['window'])}")
    truth = truth_path_for(events_path) if config.ceiling and spec.mode == "window" else None
    if truth is not None:
        with progress.stage("ceiling") as st:
            try:
                levels = (data.table.filter(F.col(SPLIT_COL) != "unused")
                          .select("userId", AS_OF_COL, "level", LABEL_COL))
                out["ceiling"] = ceiling(truth, levels, test, tuned, spec)
            except Exception as exc:  # the ceiling is a yardstick: never fail training for it
                st.note = f"skipped: ground truth at {truth} could not be used ({exc})"
            else:
                c = out["ceiling"]
                st.note = (f"true probability on the same test rows ({ev.counts_text(c['test'])}): PR-AUC "
                           f"{c['test']['pr_auc']:.3f}, F1 {c['test']['f1']:.3f}; the model reaches "
                           f"{fraction_text(c)} of its PR-AUC")
    if config.seed_spread > 0 and best_fig["test"]["users"] < config.spread_max_test_users:
        with progress.stage("seed spread") as st:
            out["seed_spread"] = seed_spread(data.base, numeric, categorical, tuned.family, tuned.params, config,
                                             data.partitions, best_fig["test"], oot_dates(spec))
            sp = out["seed_spread"]["f1"]
            st.note = (f"F1 over {sp['n']} splits: {sp['mean']:.3f} +/- {sp['sd']:.3f} "
                       f"({ev.spread_sizes(out['seed_spread'])})")
    return out


# --------------------------------------------------------------------------- ceiling
def truth_path_for(events_path: str) -> Path | None:
    """The simulator's ground truth beside a log: ``<stem>_truth.parquet`` for a file,
    ``<dir>/_truth.parquet`` for a directory. None when absent or not a local path."""
    if "://" in events_path and not events_path.startswith("file://"):
        return None
    p = Path(events_path.removeprefix("file://"))
    candidates = []
    if p.is_dir():
        candidates.append(p / "_truth.parquet")
    else:
        name = p.name
        for ext in (".json.gz", ".jsonl.gz", ".json", ".jsonl"):
            if name.endswith(ext):
                name = name[: -len(ext)]
                break
        candidates.append(p.with_name(f"{name}_truth.parquet"))
    return next((c for c in candidates if c.exists()), None)


def ceiling(truth: Path, levels, test: Scored, tuned: CVOutcome, spec) -> dict:
    """:func:`ceiling_on_rows` on the test rows (threshold from a sample of the train rows'
    true probabilities), beside the model's own PR-AUC on them."""
    pdf = levels.toPandas()
    pdf[AS_OF_COL] = pdf[AS_OF_COL].astype("int64")
    keyed = pdf.set_index(["userId", AS_OF_COL])
    test_rows = keyed.loc[test.keys()].reset_index()
    train_rows = keyed.loc[tuned.oof.keys()].reset_index()
    if len(train_rows) > CEILING_THRESHOLD_ROWS:
        train_rows = train_rows.sample(CEILING_THRESHOLD_ROWS, random_state=0)
    out, p = ceiling_on_rows(truth, test_rows, spec.horizon_days, threshold_rows=train_rows)
    model_pr = ev.average_precision(test.labels, test.scores)
    out["model_test_pr_auc"] = model_pr
    out.update(fraction_of_ceiling(test.users, test.labels, test.scores, p))
    if out.get("hazard_at_t") and out["hazard_at_t"]["pr_auc"]:
        out["hazard_at_t"]["model_pr_auc_fraction"] = model_pr / out["hazard_at_t"]["pr_auc"]
    return out


def ceiling_on_rows(truth: Path, rows, horizon_days: int, threshold_rows=None) -> tuple[dict, np.ndarray]:
    """The true ceiling on ``rows`` (pandas [userId, as_of_ms, level, churn]): the
    simulator's probability that each user cancels within the horizon given its state at
    the row's date (``sparkify.simulator.hazard``), scored like a model; its decision
    threshold is the F1-maximising one on ``threshold_rows``' true probabilities (None:
    on ``rows`` themselves, an optimistic choice). Out: (the figures, the probability of
    each row in ``rows``' order)."""
    import pyarrow.parquet as pq

    from sparkify.simulator import TRUTH_META_KEY
    from sparkify.simulator.hazard import true_churn_probability
    from sparkify.simulator.satisfaction import (
        driver_contributions,
        hazard_at,
        horizon_probability,
        planted_drivers,
        satisfaction_spec,
    )

    table = pq.read_table(str(truth)).to_pandas()
    table["userId"] = table["userId"].astype(str)
    cols = ["userId", AS_OF_COL, "level"]
    sat = satisfaction_spec(table.attrs.get(TRUTH_META_KEY))
    if sat is not None and threshold_rows is not None and len(threshold_rows) > FORWARD_THRESHOLD_ROWS:
        # a satisfaction run's truth is simulated forward row by row (~40 ms each)
        threshold_rows = threshold_rows.sample(FORWARD_THRESHOLD_ROWS, random_state=0)
    p = true_churn_probability(table, rows[cols], horizon_days)
    y = rows[LABEL_COL].to_numpy().astype(int)
    if threshold_rows is not None:
        p_thr = true_churn_probability(table, threshold_rows[cols], horizon_days)
        threshold, _ = ev.best_threshold(threshold_rows[LABEL_COL].to_numpy().astype(int), p_thr)
    else:
        threshold, _ = ev.best_threshold(y, p)
    test = {**ev.score_metrics(y, p, threshold), **cal.probability_figures(y, p, groups=rows["userId"].to_numpy()),
            "rows": int(len(y)), "users": int(rows["userId"].nunique()), "churners": int(y.sum())}
    out = {"test": test, "threshold": threshold, "source": str(truth),
           "what": ("the simulator's true probability of cancelling within the horizon given each user's "
                    "latent rates, cohort and level at the observation date, on the same rows")}
    if sat is not None:
        out["churn_model"] = "satisfaction"
        out["what"] = ("the simulator's true probability of cancelling within the horizon given each user's state "
                       "at the observation date (experience counters, level, temperament), simulated forward "
                       "on the same rows")
        contributions = driver_contributions(table, rows, sat)
        spread = (contributions - contributions.mean()).abs().mean()
        out["planted"] = [{**d, "true_importance": float(spread[d["driver"]])} for d in planted_drivers(sat)]
        held = horizon_probability(hazard_at(table, rows, sat), horizon_days)
        out["hazard_at_t"] = {"pr_auc": ev.average_precision(y, held), "rows": int(len(y)),
                              "users": int(rows["userId"].nunique()), "churners": int(y.sum()),
                              "what": ("each row's known daily hazard at its date held over the horizon: what the "
                                       "user's recent experiences say, without the lasting traits' future")}
    return out, p


# --------------------------------------------------------------------------- label comparison, seed spread
def label_comparison(loaded, family: str, params: dict, config: TrainConfig, partitions: int,
                     best_fig: dict) -> dict:
    """The best family with its tuned parameters under the seed-compatible 'ever' label
    (same seed, fresh out-of-fold threshold), beside the prediction-time figures."""
    from sparkify.features import LabelSpec

    _, numeric, categorical = feature_columns("ever", config.artist_features)
    long_days = (config.label or LabelSpec()).long_days
    base, ever_spec, _rows = user_base(loaded, LabelSpec(mode="ever", long_days=long_days), numeric, categorical,
                                       partitions)
    table, counts, _w = split_weighted(base, config, config.seed, partitions)
    try:
        require_learnable(counts, config.folds, " in 'ever' mode")
        train_df, test_df = split_frames(table)
        fig = model_figures(fit_fixed(train_df, family, numeric, categorical, params, config), test_df)
        ever = {k: fig["test"][k] for k in FIGURE_KEYS}
    finally:
        table.unpersist()
        base.unpersist()
    window = {k: best_fig["test"][k] for k in FIGURE_KEYS}
    return {"family": family, "window": window, "ever": ever, "ever_spec": ever_spec.to_dict(), "note": EVER_NOTE}


def seed_spread(base, numeric, categorical, family: str, params: dict, config: TrainConfig, partitions: int,
                main_test: dict, oot: tuple[int, ...]) -> dict:
    """Churn-class F1 and PR-AUC of the tuned family over ``config.seed_spread`` extra
    split seeds (fresh out-of-fold threshold each), plus the main split's ``main_test``;
    ``tests`` holds each split's test rows, users and churner rows."""
    f1s, praucs, seeds = [main_test["f1"]], [main_test["pr_auc"]], [config.seed]
    sizes = [{k: main_test[k] for k in ("rows", "users", "churners")}]
    for i in range(1, config.seed_spread + 1):
        seed = config.seed + 1000 * i
        table, counts, _w = split_weighted(base, config, seed, partitions, oot)
        try:
            if counts["test_churners"] == 0:
                continue
            train_df, test_df = split_frames(table)
            fig = model_figures(fit_fixed(train_df, family, numeric, categorical, params,
                                          replace(config, seed=seed)), test_df)
            f1s.append(fig["test"]["f1"])
            praucs.append(fig["test"]["pr_auc"])
            seeds.append(seed)
            sizes.append({k: fig["test"][k] for k in ("rows", "users", "churners")})
        finally:
            table.unpersist()
    return {"seeds": seeds, "f1": ev.spread(f1s), "pr_auc": ev.spread(praucs),
            "f1_values": f1s, "pr_auc_values": praucs, "tests": sizes,
            "note": "same family and parameters, a different user split per seed"}
