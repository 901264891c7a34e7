"""MODEL_CARD.md: a short, plain account of the data, label design, metrics and limits.

In: model.json, metrics.json and data_quality.json contents (dicts), and the latest
backtest.json when there is one. Out: Markdown text.

:func:`render_model_card` joins the sections in order: the header, data, label design,
the features (from model.json's catalogue entries), the metrics table, the test details
(confusion, periods, calibration), the extra evaluations (seed spread, label comparison,
ceiling, backtest), top inputs and limits.
"""

from __future__ import annotations

from sparkify.modeling.evaluate import counts_text, spread_sizes, top_churners_text
from sparkify.modeling.selection import fraction_text, oof_counts

WHY_PREDICTION_TIME = (
    "Why prediction-time is the honest design: typical notebooks reach F1 0.85-0.95 on this data "
    "because their features see the cancellation (counts of Cancel pages, tenure or last activity "
    "measured up to the churn). A model can only be used *before* a user cancels, so it must be "
    "judged on features from before a cutoff and labels after it."
)
LIMITS = [
    "## Limits",
    "",
    "- Small logs give small test sets: read the split spread, not one figure.",
    "- The model learns the patterns of one log's period; retrain when behaviour or the product changes.",
    "- Probabilities are calibrated on the training period; `sparkify backtest` checks them at a later date.",
    "- Categories unseen in training (new devices, regions) fall into a shared 'unknown' bucket.",
    "- Not a causal model: a feature's weight says what predicts churn, not what would prevent it.",
    "",
]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_model_card(model: dict, metrics: dict, quality: dict, backtest: dict | None = None) -> str:
    """The model card's Markdown from model.json, metrics.json, data_quality.json and the
    latest backtest (backtest.json; None: not run yet)."""
    lines = _header(model, metrics)
    lines += _data_section(metrics["data"], quality)
    lines += _label_section(model["label"])
    lines += _features_section(model.get("features") or [])
    lines += _metrics_table(model, metrics)
    lines += _test_details(metrics)
    lines += _extra_evaluations(metrics)
    lines += _top_inputs(metrics["best"])
    lines += _backtest_lines(backtest)
    lines += ["", *LIMITS]
    return "\n".join(lines)


def _header(model: dict, metrics: dict) -> list[str]:
    params = ", ".join(f"{k}={v}" for k, v in metrics["best"]["params"].items())
    return [
        "# Model card: Sparkify churn model",
        "",
        f"Created {model['created']} with Spark {model['spark_version']}. "
        f"Model: **{model['model_type']}** ({params}).",
        "",
    ]


def _data_section(data: dict, quality: dict) -> list[str]:
    """Where the rows came from and how they were split."""
    return [
        "## Data",
        "",
        f"- Source: `{quality.get('source')}`; {quality.get('rows_read', 0):,} rows read, "
        f"{quality.get('user_rows', 0):,} user events kept, {quality.get('hidden_rows', 0):,} logged-out/guest rows, "
        f"{quality.get('duplicates', 0):,} duplicates removed, {quality.get('quarantined', 0):,} malformed lines quarantined.",
        f"- {quality.get('users', 0):,} users, {quality.get('churners', 0):,} of whom cancelled in the log; "
        f"events from {quality.get('first_ts')} to {quality.get('last_ts')} (UTC).",
        f"- Labelled rows: {data['rows']:,} (user, date) rows of {data['users']:,} users; {data['churner_rows']:,} "
        f"churner rows ({_pct(data['churn_rate'])}) of {data['churning_users']:,} users who churn. "
        f"Train {data['train_rows']:,} rows of {data['train_users']:,} users; held-out test {data['test_rows']:,} rows "
        f"of {data['test_users']:,} other users ({data['test_churners']:,} churner rows). No user is on both sides"
        + (f"; the training users' {data['unused_rows']:,} rows at the out-of-time date ({data['unused_churners']:,} "
           "churner rows) are in neither part, so that date stays unseen in training" if data.get("unused_rows") else "")
        + ".",
        "",
    ]


def _label_section(label: dict) -> list[str]:
    """The label design (prediction-time or seed-compatible) and why prediction-time is honest."""
    lines = ["## Label design", ""]
    if label["mode"] == "window":
        dates = label.get("dates") or []
        when = (f"{len(dates)} observation dates t, every {label.get('step_days')} days from {dates[0][:10]} to "
                f"{dates[-1][:10]}" if len(dates) > 1 else f"one observation date t = {dates[0] if dates else '?'}")
        lines.append(
            f"Prediction-time, on {when}. Each row is a (user, t): its features use only the events of "
            f"fixed windows before t (the last {label.get('long_days')} and {label.get('recent_days')} days, "
            "rates per day the account existed in the window, recency and tenure at t), so a row "
            "looks the same whether the log starts a month or a year before t; its label is 1 when "
            f"the user reaches Cancellation Confirmation in (t, t + {label['horizon_days']} days]. Users who had "
            "already cancelled before t, or were silent for the whole window, have no row at t. "
            "This is the question a retention team can act on: *who will churn next month, "
            "judging from what we know today?*")
    else:
        lines.append(
            "Seed-compatible (`ever`): churn = the user ever reached Cancellation Confirmation in the log. "
            "Features exclude the Cancel/Cancellation Confirmation pages, auth `Cancelled` and anything "
            "measured to a user's last event. Features and label still overlap in time, so these figures "
            "overstate what a model can do before the fact.")
    return lines + ["", WHY_PREDICTION_TIME, ""]


def _features_section(features: list[dict]) -> list[str]:
    """The model's inputs as model.json lists them (the feature catalogue's descriptions,
    filled with the model's windows), with the training median or categories."""
    if not features:
        return []
    lines = ["## Features", "", "| feature | kind | unit | description | training median or categories |",
             "|---|---|---|---|---|"]
    for f in features:
        seen = (_num(f.get("median"), 3) if f["kind"] == "numeric"
                else ", ".join(str(c) for c in f.get("categories") or []))
        lines.append(f"| `{f['name']}` | {f['kind']} | {f.get('unit') or ''} | {f['description']} | {seen} |")
    return lines + [""]


def _metrics_table(model: dict, metrics: dict) -> list[str]:
    """The decision rule and one row of test figures per family, the chosen model last."""
    best, test = metrics["best"], metrics["best"]["test"]
    lines = [
        "## Metrics (held-out users)",
        "",
        f"Decision: churn when the {model['score_kind']} > {model['threshold']:.4f}, a threshold chosen "
        "on out-of-fold validation scores of the training part (folds by user) to maximise churn-class F1. "
        f"The probabilities are calibrated ({(model.get('calibration') or {}).get('method', 'none')}: Platt or "
        "isotonic, whichever has the lower cross-fitted log loss on the out-of-fold scores).",
        "",
        f"Every figure is on the held-out users' rows: {test['rows']:,} rows of {test['users']:,} users, "
        f"{test['churners']:,} churner rows.",
        "",
        "| model | churn F1 | precision | recall | PR-AUC | ROC-AUC | accuracy | weighted F1 | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics["models"].values():
        t = m["test"]
        lines.append(f"| {m['name']} | {_num(t['f1'])} | {_num(t['precision'])} | {_num(t['recall'])} | "
                     f"{_num(t['pr_auc'])} | {_num(t['roc_auc'])} | {_num(t['accuracy'])} | "
                     f"{_num(t['weighted_f1'])} | {m['train_seconds']:.1f} |")
    if not metrics.get("cv", {}).get("tuning_grid", True):
        tag = "its comparison point; `sparkify train --thorough` searches a tuning grid"
    elif best.get("selected_from", "tuning") == "tuning":
        tag = "tuned"
    else:
        tag = "comparison point kept: the bigger grid did not beat it out of fold"
    lines.append(f"| **{best['name']} ({tag})** | **{_num(test['f1'])}** | {_num(test['precision'])} | "
                 f"{_num(test['recall'])} | {_num(test['pr_auc'])} | {_num(test['roc_auc'])} | "
                 f"{_num(test['accuracy'])} | {_num(test['weighted_f1'])} | {best['train_seconds']:.1f} |")
    return lines + _choice_lines(metrics)


def _choice_lines(metrics: dict) -> list[str]:
    """How the family was chosen (out-of-fold figures of each) and whether class weights were kept."""
    cv, best = metrics.get("cv") or {}, metrics["best"]
    choice = cv.get("family_choice")
    lines = []
    if choice:
        names = {fam: m["name"] for fam, m in metrics["models"].items()}
        figures = ", ".join(f"{names.get(fam, fam)} {_num(v['f1'])} / {_num(v['pr_auc'])}"
                            + (" (tied)" if v["tied"] and len(choice["families"]) > 1 else "")
                            for fam, v in choice["families"].items())
        lines += ["", f"Family choice: {cv.get('selection', '')}. Out-of-fold F1 / PR-AUC on "
                      f"{oof_counts(choice)} (the training part): {figures}; one standard error of the best F1: "
                      f"{_num(choice['standard_error'])}."]
    weighting = best.get("class_weights")
    if isinstance(weighting, dict):
        pr = weighting["out_of_fold_pr_auc"]
        se = weighting.get("standard_error")
        lines += ["", f"Class weights {'kept' if weighting['kept'] else 'not kept'}: out-of-fold PR-AUC "
                      f"{_num(pr['weighted'])} with them, {_num(pr['unweighted'])} without on "
                      f"{oof_counts(choice) if choice else 'the training rows'}"
                      + (f" (kept only for a gain above one standard error, {_num(se)})" if se is not None else "")
                      + "."]
    return lines


def _test_details(metrics: dict) -> list[str]:
    """Confusion and top-10 % figures, the in-time / out-of-time table and the calibration."""
    best, test = metrics["best"], metrics["best"]["test"]
    c, top, base = test["confusion"], test["top10"], metrics.get("baseline", {})
    lines = [
        "",
        f"Confusion (test): TP {c['tp']}, FP {c['fp']}, FN {c['fn']}, TN {c['tn']}. "
        f"Top 10 % of scores ({top['users']:,} rows{top_churners_text(top)}): precision {_num(top['precision'])}, lift {_num(top['lift'], 2)} "
        f"over the base rate {_num(top['base_rate'])}. A constant predictor has PR-AUC {_num(base.get('pr_auc'))}.",
    ]
    periods = best.get("periods") or {}
    if periods:
        lines += ["", "In time and out of time (the latest date is used by no training row):", "",
                  "| part | rows | users | churner rows | PR-AUC | F1 | Brier | expected / realized churners | "
                  "reliability bins within noise | calibration test p |", "|---|---|---|---|---|---|---|---|---|---|"]
        for name, b in periods.items():
            lines.append(f"| {name.replace('_', ' ')} | {b['rows']:,} | {b['users']:,} | {b['churners']:,} | "
                         f"{_num(b['pr_auc'])} | {_num(b['f1'])} | {_num(b['brier'], 4)} | "
                         f"{b['expected_churners']:.1f} / {b['realized_churners']} | {b['bins_within']}/{b['bins']} | "
                         f"{_num(b.get('calibration_p'), 2)} |")
    if "expected_churners" in test:
        lines += ["", f"Calibration on all test rows: Brier {_num(test['brier'], 4)}, expected {test['expected_churners']:.1f} "
                  f"vs realized {test['realized_churners']} churners, {test['bins_within']} of {test['bins']} "
                  "reliability bins hold the mean prediction inside the 95 % interval of the observed rate "
                  "(intervals widened for rows of one user, which share one future)"
                  + ("" if test.get("calibration_p") is None else
                     f"; the curve against the diagonal, a chi-square test over the bins: p {test['calibration_p']:.2f} "
                     "(at least 0.05: within the noise)") + "."]
    return lines


def _extra_evaluations(metrics: dict) -> list[str]:
    """One paragraph each for the seed spread, the label comparison and the ceiling, when present."""
    lines: list[str] = []
    spread = metrics.get("seed_spread")
    if spread:
        f = spread["f1"]
        lines += ["", f"Over {f['n']} user splits the churn-class F1 is {_num(f['mean'])} +/- {_num(f['sd'])} "
                      f"(min {_num(f['min'])}, max {_num(f['max'])}; {spread_sizes(spread)}): with a test set "
                      "this small, one split's figure is noisy."]
    lc = metrics.get("label_comparison")
    if lc:
        lines += ["", f"Seed-compatible label (`ever`, same family): churn F1 {_num(lc['ever']['f1'])}, "
                      f"weighted F1 {_num(lc['ever']['weighted_f1'])} ({counts_text(lc['ever'])}), beside "
                      f"{_num(lc['window']['f1'])} / {_num(lc['window']['weighted_f1'])} prediction-time "
                      f"({counts_text(lc['window'])})."]
    ceiling = metrics.get("ceiling")
    if ceiling:
        given = ("state at t (experience counters, level, temperament; simulated forward)"
                 if ceiling.get("churn_model") == "satisfaction" else "latent rates, cohort and level at t")
        lines += ["", f"True ceiling (simulated data): the simulator's own probability of cancelling within the "
                      f"horizon, given each user's {given}, on the same "
                      f"{ceiling['test']['rows']:,} test rows ({ceiling['test']['users']:,} users, "
                      f"{ceiling['test']['churners']:,} churner rows): PR-AUC {_num(ceiling['test']['pr_auc'])}, "
                      f"churn F1 {_num(ceiling['test']['f1'])}. The model reaches "
                      f"{fraction_text(ceiling)} of the ceiling's PR-AUC (a low end above 1 would be a leak to hunt)."]
        held = ceiling.get("hazard_at_t")
        if held:
            lines += ["", f"The known daily hazard at t alone, held over the horizon ({held['what'].split(': ')[-1]}): "
                          f"PR-AUC {_num(held['pr_auc'])} on the same rows; the model reaches "
                          f"{_num(held.get('model_pr_auc_fraction'), 2)} of it."]
        lines += _drivers_lines(ceiling.get("drivers"))
    return lines


def _backtest_lines(backtest: dict | None) -> list[str]:
    """The latest out-of-time backtest (``sparkify backtest``), when one was run."""
    if not backtest:
        return []
    from sparkify.modeling.backtest import overlap_text, own_test_text

    f = backtest["figures"]
    overlap = overlap_text(backtest)
    return ["", "## Backtest", "",
            f"Applied at {backtest['as_of'][:10]} and compared with what happened in the next "
            f"{backtest['horizon_days']} days: {f['rows']:,} users, {f['churners']:,} churners; PR-AUC "
            f"{_num(f['pr_auc'])}{own_test_text(backtest)}; top 10 % lift {_num(f['top10']['lift'], 2)}; at the saved threshold "
            f"precision {_num(f['precision'])}, recall {_num(f['recall'])}; expected {f['expected_churners']:.1f} vs "
            f"realized {f['realized_churners']} churners, Brier {_num(f['brier'], 4)}, {f['bins_within']} of "
            f"{f['bins']} reliability bins within the noise"
            + ("" if f.get("calibration_p") is None else f", calibration test p {f['calibration_p']:.2f}") + "."
            + (f" Note: {overlap}." if overlap else "")]


def _drivers_lines(drivers: dict | None) -> list[str]:
    """The planted drivers of a satisfaction log against the model: rank among its inputs and
    share of first reasons."""
    if not drivers:
        return []
    lines = ["", f"Planted drivers (satisfaction log): {drivers['leading_in_top']} of the {drivers['leading']} leading "
                 f"drivers (true importance at least half the strongest's) are among the model's top "
                 f"{drivers['top']} inputs; the first reason raising the score of "
                 f"{_pct(drivers.get('reason_driver_share'))} of the {drivers['reason_rows']} at-risk test rows is a "
                 "planted driver.",
             "", "| driver | true effect on D | true importance | model features | best rank | rank by mean "
                 "absolute contribution | first reason |",
             "|---|---|---|---|---|---|---|"]
    for d in drivers["drivers"]:
        by_c = d.get("contribution_rank")
        lines.append(f"| {d['driver']}{' (leading)' if d.get('leading') else ''} | {d['effect']:+.3g} | "
                     f"{_num(d.get('true_importance'))} | {', '.join(d['features'])} | "
                     f"{d['rank'] if d['rank'] is not None else '-'} | {by_c if by_c is not None else '-'} | "
                     f"{_pct(d.get('first_reason_share'))} |")
    return lines


def _top_inputs(best: dict) -> list[str]:
    """The ten largest importances or coefficients of the chosen model, when it has any."""
    imps = best.get("importances", [])[:10]
    if not imps:
        return []
    return ["", f"Top inputs ({imps[0]['kind']}s):", "", *(f"- {r['feature']}: {r['value']:+.4f}" for r in imps)]
