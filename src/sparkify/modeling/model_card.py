"""MODEL_CARD.md: a short, plain account of the data, label design, metrics and limits.

In: model.json, metrics.json and data_quality.json contents (dicts). Out: Markdown text.
"""

from __future__ import annotations


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_model_card(model: dict, metrics: dict, quality: dict) -> str:
    label = model["label"]
    best = metrics["best"]
    test = best["test"]
    data = metrics["data"]
    lines = [
        "# Model card: Sparkify churn model",
        "",
        f"Created {model['created']} with Spark {model['spark_version']}. "
        f"Model: **{model['model_type']}** ({', '.join(f'{k}={v}' for k, v in best['params'].items())}).",
        "",
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
        f"of {data['test_users']:,} other users ({data['test_churners']:,} churner rows). No user is on both sides.",
        "",
        "## Label design",
        "",
    ]
    if label["mode"] == "window":
        dates = label.get("dates") or []
        when = (f"{len(dates)} observation dates t, every {label.get('step_days')} days from {dates[0][:10]} to "
                f"{dates[-1][:10]}" if len(dates) > 1 else f"one observation date t = {dates[0] if dates else '?'}")
        lines += [
            f"Prediction-time, on {when}. Each row is a (user, t): its features use only the events of "
            f"fixed windows before t (the last {label.get('long_days')} and {label.get('recent_days')} days, "
            "rates per day the account existed in the window, recency and tenure at t), so a row "
            "looks the same whether the log starts a month or a year before t; its label is 1 when "
            f"the user reaches Cancellation Confirmation in (t, t + {label['horizon_days']} days]. Users who had "
            "already cancelled before t, or were silent for the whole window, have no row at t. "
            "This is the question a retention team can act on: *who will churn next month, "
            "judging from what we know today?*",
        ]
    else:
        lines += [
            "Seed-compatible (`ever`): churn = the user ever reached Cancellation Confirmation in the log. "
            "Features exclude the Cancel/Cancellation Confirmation pages, auth `Cancelled` and anything "
            "measured to a user's last event. Features and label still overlap in time, so these figures "
            "overstate what a model can do before the fact.",
        ]
    lines += [
        "",
        "Why prediction-time is the honest design: typical notebooks reach F1 0.85-0.95 on this data "
        "because their features see the cancellation (counts of Cancel pages, tenure or last activity "
        "measured up to the churn). A model can only be used *before* a user cancels, so it must be "
        "judged on features from before a cutoff and labels after it.",
        "",
        "## Metrics (held-out users)",
        "",
        f"Decision: churn when the {model['score_kind']} > {model['threshold']:.4f}, a threshold chosen "
        "on out-of-fold validation scores of the training part (folds by user) to maximise churn-class F1. "
        f"The probabilities are calibrated ({(model.get('calibration') or {}).get('method', 'none')}, chosen by "
        "cross-fitted log loss on the out-of-fold scores).",
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
    c = test["confusion"]
    top = test["top10"]
    base = metrics.get("baseline", {})
    lines += [
        "",
        f"Confusion (test): TP {c['tp']}, FP {c['fp']}, FN {c['fn']}, TN {c['tn']}. "
        f"Top 10 % of scores ({top['users']} rows): precision {_num(top['precision'])}, lift {_num(top['lift'], 2)} "
        f"over the base rate {_num(top['base_rate'])}. A constant predictor has PR-AUC {_num(base.get('pr_auc'))}.",
    ]
    periods = best.get("periods") or {}
    if periods:
        lines += ["", "In time and out of time (the latest date is used by no training row):", "",
                  "| part | rows | users | churner rows | PR-AUC | F1 | Brier | expected / realized churners | "
                  "reliability bins within noise |", "|---|---|---|---|---|---|---|---|---|"]
        for name, b in periods.items():
            lines.append(f"| {name.replace('_', ' ')} | {b['rows']:,} | {b['users']:,} | {b['churners']:,} | "
                         f"{_num(b['pr_auc'])} | {_num(b['f1'])} | {_num(b['brier'], 4)} | "
                         f"{b['expected_churners']:.1f} / {b['realized_churners']} | {b['bins_within']}/{b['bins']} |")
    if "expected_churners" in test:
        lines += ["", f"Calibration on all test rows: Brier {_num(test['brier'], 4)}, expected {test['expected_churners']:.1f} "
                  f"vs realized {test['realized_churners']} churners, {test['bins_within']} of {test['bins']} "
                  "reliability bins hold the mean prediction inside the 95 % interval of the observed rate "
                  "(rows of one user are not independent, so the intervals are a little narrow)."]
    spread = metrics.get("seed_spread")
    if spread:
        f = spread["f1"]
        lines.append("")
        lines.append(f"Over {f['n']} user splits the churn-class F1 is {_num(f['mean'])} +/- {_num(f['sd'])} "
                     f"(min {_num(f['min'])}, max {_num(f['max'])}): with a test set this small, "
                     "one split's figure is noisy.")
    lc = metrics.get("label_comparison")
    if lc:
        lines.append("")
        lines.append(f"Seed-compatible label (`ever`, same family): churn F1 {_num(lc['ever']['f1'])}, "
                     f"weighted F1 {_num(lc['ever']['weighted_f1'])}, beside {_num(lc['window']['f1'])} / "
                     f"{_num(lc['window']['weighted_f1'])} prediction-time.")
    ceiling = metrics.get("ceiling")
    if ceiling:
        lines.append("")
        lines.append(f"True ceiling (simulated data): the simulator's own probability of cancelling within the "
                     f"horizon, given each user's latent rates, cohort and level at t, on the same "
                     f"{ceiling['test']['rows']:,} test rows: PR-AUC {_num(ceiling['test']['pr_auc'])}, churn F1 "
                     f"{_num(ceiling['test']['f1'])}. The model reaches {_num(ceiling.get('model_pr_auc_fraction'), 2)} "
                     "of the ceiling's PR-AUC.")
    backtest = metrics.get("backtest")
    if backtest:
        f = backtest["figures"]
        lines.append("")
        lines.append(f"Backtest at {backtest['as_of'][:10]}: {f['rows']:,} users, {f['churners']:,} churners, PR-AUC "
                     f"{_num(f['pr_auc'])}, expected {f['expected_churners']:.1f} vs realized {f['realized_churners']}.")
    imps = best.get("importances", [])[:10]
    if imps:
        lines += ["", f"Top inputs ({imps[0]['kind']}s):", ""]
        lines += [f"- {r['feature']}: {r['value']:+.4f}" for r in imps]
    lines += [
        "",
        "## Limits",
        "",
        "- Small logs give small test sets: read the split spread, not one figure.",
        "- The model learns the patterns of one log's period; retrain when behaviour or the product changes.",
        "- Probabilities are calibrated on the training period; `sparkify backtest` checks them at a later date.",
        "- Categories unseen in training (new devices, regions) fall into a shared 'unknown' bucket.",
        "- Not a causal model: a feature's weight says what predicts churn, not what would prevent it.",
        "",
    ]
    return "\n".join(lines)
