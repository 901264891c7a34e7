"""Training measured (``python benchmarks/train.py pipeline|first-run|backtest|ablation``).

* :func:`run_pipeline`: every stage of the churn pipeline on one log, in a table: load
  (parse + clean), features (user table, split, cache), the families' cross-validation
  side by side, tuning, evaluation, label comparison, ceiling, seed spread (the last three
  with ``--thorough``, the ceiling on simulated logs), artifact writing, and scoring every
  active user from the log already loaded (``sparkify train --scores``). The model goes to
  a temporary directory unless ``--model DIR``; ``--json FILE`` also writes the figures.
* :func:`run_first_run`: from ``make run`` to a served app, the time of each step, and the
  default model against ``--thorough``. A first run on a set-up machine does what
  ``make run`` does on the mini preset, each step a fresh process as ``make`` runs it:
  ``make setup`` (already set up: a check of .venv and Java); ``sparkify simulate --preset
  mini``; ``sparkify train LOG --model DIR --scores DIR/scores.csv`` (the quick default
  plan); ``sparkify serve --model DIR`` until ``/api/health`` answers 200. The clock runs
  from the start of the first step to the first 200; ``--runs N`` repeats it (a new log
  seed each run; the server is stopped after each). ``--thorough`` then trains
  ``--thorough`` on the first run's log and prints both model cards' family choice and
  test figures, with the difference in test PR-AUC and its 95 % interval from a paired
  bootstrap over the held-out users (both models hold out the same users: the split
  depends on the user ids and the seed only).
* :func:`run_backtest`: out of time: train at one date, apply at a later one, compare with
  what happened. The issue's yardstick: a 92-day simulated log (1,500 users, cached), a
  model whose latest observation date is 2018-11-01 (its labels reach 2018-12-01), applied
  at 2018-12-01 and judged on the cancellations of 2018-12-01 .. 2018-12-31. Prints the
  model's own test figures, the backtest's, expected vs realized churners and the PR-AUC
  ratio, each with its row and churner counts. The model goes to ``--out``/model (default:
  ``backtest/`` beside the cached log).
* :func:`run_ablation`: what the opt-in artist features add to the models: the same
  splits, the same parameters, with and without ``distinct_artists`` and
  ``artist_diversity``. A log (raw JSON or an ingest directory) is loaded with
  ``load_log(..., artists=True)`` and turned into the default prediction-time user table;
  a ``features.parquet`` written by ``sparkify train --artist-features`` is used as it is.
  For each family and seed: a random 75/25 split of the users, the family's pipeline
  (``sparkify.modeling.pipelines``, class weights on) fitted twice, and the held-out PR-AUC
  and best churn-class F1 over thresholds printed side by side. Compare the differences
  with the spread between seeds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparkify.modeling.calibration import reliability_text
from sparkify.modeling.evaluate import interval_text
from sparkify.modeling.selection import fraction_text

from .common import ROOT, cached_log, get_bench_spark, machine_line, markdown_table, resolve_log, start_server

SPARKIFY = ROOT / ".venv" / "bin" / "sparkify"


# ------------------------------------------------------------------ pipeline
def stage_table(rows: list[tuple[str, float]], total: float) -> str:
    body = [[name, f"{sec:.1f}", f"{100 * sec / total:.1f}%"] for name, sec in rows]
    return "\n".join(markdown_table(["stage", "seconds", "share"], body + [["total", f"{total:.1f}", ""]]))


def run_pipeline(args) -> int:
    """``train.py pipeline``: ``sparkify.modeling.train.train`` on one log, every stage timed."""
    import pandas as pd

    from sparkify.modeling.train import TrainConfig, train

    log, _, _ = resolve_log(args)
    overrides = {"models": tuple(args.models.split(","))}
    if args.folds:
        overrides["folds"] = args.folds
    if args.window_days:
        from sparkify.features import LabelSpec

        overrides["label"] = LabelSpec(long_days=args.window_days)
    config = (TrainConfig.fast if args.quick else TrainConfig.thorough if args.thorough else TrainConfig)(**overrides)
    tmp = None
    model_dir = Path(args.model) if args.model else Path(tempfile.mkdtemp(prefix="sparkify-bench-")) / "classifier"
    if not args.model:
        tmp = model_dir.parent
    t_session = time.perf_counter()
    spark = get_bench_spark("sparkify-bench-pipeline", master=args.master)
    session_s = time.perf_counter() - t_session
    try:
        result = train(spark, log, model_dir, config, scores_out=model_dir / "scores.csv")
        written = pd.read_csv(model_dir / "scores.csv", usecols=["userId"])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    timings = dict(result.timings)
    train_total = timings.pop("total", sum(timings.values()))
    rows = [("spark session", session_s), *timings.items()]
    total = session_s + train_total + timings.get("scoring", 0.0)
    m = result.metrics
    print()
    print(f"log: {log}")
    d = m["data"]
    dates = m["label"].get("dates") or []
    print(f"{len(dates)} observation date(s); labelled {d['rows']:,} rows of {d['users']:,} users "
          f"({d['churner_rows']:,} churner rows of {d['churning_users']:,} churning users); test {d['test_rows']:,} "
          f"rows of {d['test_users']:,} users ({d['test_churners']:,} churner rows); scored {len(written):,} active "
          f"users; cores {spark.sparkContext.defaultParallelism}")
    print(stage_table(rows, total))
    best = m["best"]
    t = best["test"]
    print(f"\nbest {best['name']} {best['params']}: test churn F1 {t['f1']:.3f}, PR-AUC {t['pr_auc']:.3f}, "
          f"ROC-AUC {t['roc_auc']:.3f}, top-10 % lift {t['top10']['lift']:.2f}, Brier {t['brier']:.4f}, "
          f"expected/realized churners {t['expected_churners']:.1f}/{t['realized_churners']}, {reliability_text(t)} "
          f"({t['rows']:,} rows, {t['churners']:,} churner rows)")
    for period, b in best.get("periods", {}).items():
        print(f"  {period:<12} {b['rows']:,} rows of {b['users']:,} users, {b['churners']:,} churner rows: "
              f"PR-AUC {b['pr_auc']:.3f}, expected/realized {b['expected_churners']:.1f}/{b['realized_churners']}")
    for fig in m["models"].values():
        ft = fig["test"]
        print(f"  {fig['name']:<24} F1 {ft['f1']:.3f}  PR-AUC {ft['pr_auc']:.3f}  CV {fig['train_seconds']:.1f}s")
    if m.get("ceiling"):
        c = m["ceiling"]
        print(f"true ceiling on the same rows: F1 {c['test']['f1']:.3f}, PR-AUC {c['test']['pr_auc']:.3f}; "
              f"model PR-AUC / ceiling PR-AUC = {fraction_text(c)}")
    if m.get("label_comparison"):
        lc = m["label_comparison"]
        print(f"'ever' label: F1 {lc['ever']['f1']:.3f}, weighted F1 {lc['ever']['weighted_f1']:.3f}")
    if m.get("seed_spread"):
        s = m["seed_spread"]["f1"]
        print(f"F1 over {s['n']} splits: {s['mean']:.3f} +/- {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"log": str(log), "stages": dict(rows), "total": total,
                                               "metrics": {k: m[k] for k in ("data", "best", "models")}},
                                              indent=2, default=str))
    spark.stop()
    return 0


# ------------------------------------------------------------------ first run of `make run`
def _run(step: str, argv: list, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(map(str, argv))}\n")
        fh.flush()
        code = subprocess.call([str(a) for a in argv], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"first-run: {step} failed (exit {code}); see {log}")
    return time.perf_counter() - t0


def first_run(out: Path, seed: int) -> dict:
    """One timed first run into ``out``; returns the step times (s) and the model directory."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log, events, model = out / "console.log", out / "mini_sparkify_event_data.json", out / "classifier"
    t0 = time.perf_counter()
    steps = {"setup": _run("setup", ["make", "-s", "setup"], log),
             "simulate": _run("simulate", [SPARKIFY, "simulate", "--preset", "mini", "--seed", seed, "--out", events],
                              log),
             "train + score": _run("train", [SPARKIFY, "train", events, "--model", model, "--scores",
                                             model / "scores.csv"], log)}
    try:
        proc, _, steps["serve (to the first 200)"] = start_server([SPARKIFY, "serve", "--model", model], log)
    except RuntimeError as exc:
        sys.exit(f"first-run: {exc}")
    total = time.perf_counter() - t0
    proc.terminate()
    proc.wait(timeout=30)
    timings = json.loads((model / "metrics.json").read_text()).get("timings", {})
    return {"steps": steps, "total": total, "train_stages": timings, "model": model, "events": events}


def _test_rows(model: Path):
    import pandas as pd

    f = pd.read_parquet(model / "features.parquet", columns=["userId", "as_of_ms", "churn", "split", "score"])
    return f[f["split"] == "test"].set_index(["userId", "as_of_ms"]).sort_index()


def paired_difference(a, b, draws: int = 1000, seed: int = 0) -> dict:
    """Test PR-AUC of ``b`` minus ``a`` (frames of test rows with churn and score) on their
    common test rows, with a 95 % interval from resampling users (a user's rows together)."""
    import numpy as np

    from sparkify.modeling.evaluate import average_precision

    common = a.join(b[["score"]], rsuffix="_b", how="inner")
    users = common.index.get_level_values("userId").to_numpy()
    ids, inverse = np.unique(users, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    y, sa, sb = common["churn"].to_numpy().astype(int), common["score"].to_numpy(), common["score_b"].to_numpy()
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        idx = np.concatenate([rows_of[i] for i in rng.integers(0, len(ids), len(ids))])
        if y[idx].sum() == 0:
            continue
        diffs.append(average_precision(y[idx], sb[idx]) - average_precision(y[idx], sa[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"rows": len(y), "users": len(ids), "churner_rows": int(y.sum()),
            "difference": average_precision(y, sb) - average_precision(y, sa), "lo": float(lo), "hi": float(hi)}


def _card(model: Path) -> str:
    m = json.loads((model / "metrics.json").read_text())
    b, t = m["best"], m["best"]["test"]
    return (f"{b['name']} {b['params']}: test {t['rows']:,} rows of {t['users']:,} users, {t['churners']:,} churner "
            f"rows: PR-AUC {t['pr_auc']:.3f}, F1 {t['f1']:.3f}, expected/realized {t['expected_churners']:.1f}/"
            f"{t['realized_churners']}, {reliability_text(t)}; "
            f"train {m['timings']['total']:.0f}s")


def run_first_run(args) -> int:
    """``train.py first-run``: ``--runs`` timed first runs (and ``--thorough`` against the default)."""
    import numpy as np

    if not SPARKIFY.exists():
        sys.exit("first-run: run `make setup` first (.venv/bin/sparkify is missing)")
    print(f"first run of `make run` on the mini preset ({machine_line()})")
    runs = []
    for i in range(args.runs):
        r = first_run(args.out / f"run{i + 1}", args.seed + i)
        runs.append(r)
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["train_stages"].items() if k != "total")
        print(f"run {i + 1} (log seed {args.seed + i}): served after {r['total']:.1f}s: {steps}\n"
              f"  train stages (s): {stages}")
    totals = [r["total"] for r in runs]
    print(f"served after: median {np.median(totals):.1f}s, min {min(totals):.1f}s, max {max(totals):.1f}s "
          f"over {len(totals)} runs")
    print(f"  default model (run 1): {_card(runs[0]['model'])}")
    if args.thorough:
        thorough = args.out / "thorough"
        log = args.out / "thorough.log"
        log.unlink(missing_ok=True)
        _run("thorough train", [SPARKIFY, "train", runs[0]["events"], "--model", thorough, "--thorough"], log)
        print(f"  --thorough model (same log): {_card(thorough)}")
        d = paired_difference(_test_rows(runs[0]["model"]), _test_rows(thorough))
        print(f"  test PR-AUC, thorough minus default: {d['difference']:+.3f} (95 % interval {d['lo']:+.3f} .. "
              f"{d['hi']:+.3f}, users resampled; {d['rows']:,} rows of {d['users']:,} users, "
              f"{d['churner_rows']:,} churner rows)")
    return 0


# ------------------------------------------------------------------ out-of-time backtest
def seeds_of(args) -> list[int]:
    """The log seeds of a run: ``--seeds 42,43,44`` or the one ``--seed``."""
    if not args.seeds:
        return [args.seed]
    try:
        return [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds: comma-separated integers expected, got {args.seeds!r}") from None


def window_option(args) -> dict:
    """``LabelSpec`` keywords for ``--window-days`` (none: ``sparkify train``'s default)."""
    return {"long_days": args.window_days} if args.window_days else {}


def seed_out(args, seed: int, seeds: list[int]):
    """``--out`` for one seed: as given for a single seed, ``OUT/seed<N>`` for several."""
    if args.out is None or len(seeds) == 1:
        return args.out
    return args.out / f"seed{seed}"


def run_backtest(args) -> int:
    """``train.py backtest``: train at ``--last-date``, apply at ``--as-of``, compare with what
    happened; with ``--seeds``, once per log seed, then the figures side by side."""
    import numpy as np

    seeds = seeds_of(args)
    spark = get_bench_spark("sparkify-bench-backtest")
    runs = [backtest_one(spark, args, seed, seed_out(args, seed, seeds)) for seed in seeds]
    if len(runs) > 1:
        print(f"\n{len(runs)} logs of {args.users:,} users and {args.days} days, trained at {args.last_date}, "
              f"applied at {args.as_of}:")
        print("\n".join(markdown_table(
            ["seed", "own test rows / churner rows", "PR-AUC", f"at {args.as_of}: users / churners", "PR-AUC",
             "ratio (95 % interval)", "truth's ratio", "expected / realized"],
            [[seed, f"{r['test']['rows']:,} / {r['test']['churners']:,}", f"{r['test']['pr_auc']:.3f}",
              f"{r['backtest']['rows']:,} / {r['backtest']['churners']:,}", f"{r['backtest']['pr_auc']:.3f}",
              f"{r['pr_auc_vs_test']:.2f}{interval_text(r.get('pr_auc_vs_test_interval'))}",
              "-" if r["ceiling_pr_auc_vs_test"] is None else f"{r['ceiling_pr_auc_vs_test']:.2f}",
              f"{r['backtest']['expected_churners'] / max(r['backtest']['realized_churners'], 1):.2f}"]
             for seed, r in zip(seeds, runs)], "rrrrrrrr")))
        ratios = [r["pr_auc_vs_test"] for r in runs]
        print(f"PR-AUC ratio: median {np.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f} "
              f"(target >= 0.85); {sum(x >= 0.85 for x in ratios)} of {len(ratios)} logs reach it")
        truth = [(r["pr_auc_vs_test"], r["ceiling_pr_auc_vs_test"]) for r in runs if r["ceiling_pr_auc_vs_test"]]
        if truth:
            print(f"the true probability's own ratio: median {np.median([t for _, t in truth]):.2f}; the model's "
                  f"ratio over the truth's: median {np.median([m / t for m, t in truth]):.2f} (1: the model loses "
                  "no more than the truth does)")
    return 0


def backtest_one(spark, args, seed: int, out) -> dict:
    """One log seed of ``train.py backtest``; prints its figures, writes and returns them."""
    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, parse_time
    from sparkify.modeling.backtest import backtest, summary, write_backtest
    from sparkify.modeling.train import TrainConfig, train, truth_path_for

    log, _ = cached_log(users=args.users, days=args.days, seed=seed, bench_dir=args.bench_dir)
    out = out or log.parent / "backtest"
    out.mkdir(parents=True, exist_ok=True)
    label = LabelSpec(last_date=parse_time(args.last_date), **window_option(args))
    config = (TrainConfig.fast if args.quick else TrainConfig)(label=label)
    t0 = time.perf_counter()
    if args.reuse_model and (out / "model" / "metrics.json").exists():
        from types import SimpleNamespace

        result = SimpleNamespace(metrics=json.loads((out / "model" / "metrics.json").read_text()))
        train_s = float(result.metrics["timings"]["total"])
    else:
        result = train(spark, log, out / "model", config)
        train_s = time.perf_counter() - t0
    with load_log(spark, log) as loaded:
        t1 = time.perf_counter()
        bt = backtest(spark, loaded.days, out / "model", parse_time(args.as_of), truth=truth_path_for(str(log)))
        bt_s = time.perf_counter() - t1
    write_backtest(out / "model", bt)
    m = result.metrics
    t = m["best"]["test"]
    oot = m["best"]["periods"].get("out_of_time", {})
    f = bt["figures"]
    print()
    print(f"log seed {seed}; model: {m['best']['name']}, dates {m['label']['dates'][0][:10]} .. {m['label']['dates'][-1][:10]} "
          f"({len(m['label']['dates'])}), trained in {train_s:.0f}s")
    print(f"own test (held-out users): {t['rows']:,} rows of {t['users']:,} users, {t['churners']:,} churner rows: "
          f"PR-AUC {t['pr_auc']:.3f}, expected/realized {t['expected_churners']:.1f}/{t['realized_churners']}")
    if oot:
        print(f"  out-of-time part ({m['label']['dates'][-1][:10]}): {oot['rows']:,} rows, {oot['churners']:,} "
              f"churners: PR-AUC {oot['pr_auc']:.3f}, expected/realized {oot['expected_churners']:.1f}/"
              f"{oot['realized_churners']}")
    print(summary(bt))
    print(f"expected/realized at {args.as_of}: {f['expected_churners'] / max(f['realized_churners'], 1):.2f} "
          f"(target 0.8-1.25); backtest PR-AUC / own test PR-AUC: {bt['pr_auc_vs_test']:.2f} (target >= 0.85); "
          f"backtest took {bt_s:.0f}s")
    own_ceiling, later_ceiling = (m.get("ceiling") or {}).get("test"), (bt.get("ceiling") or {}).get("test")
    truth_ratio = None
    if own_ceiling and later_ceiling and own_ceiling["pr_auc"]:
        truth_ratio = later_ceiling["pr_auc"] / own_ceiling["pr_auc"]
        print(f"true ceiling: PR-AUC {own_ceiling['pr_auc']:.3f} on the own test rows, {later_ceiling['pr_auc']:.3f} "
              f"at {args.as_of}: the truth's own ratio {truth_ratio:.2f}; the model's share of the ceiling "
              f"{t['pr_auc'] / own_ceiling['pr_auc']:.2f} -> {f['pr_auc'] / later_ceiling['pr_auc']:.2f}")
    figures = {"seed": seed, "train_seconds": train_s,
               "test": {k: t[k] for k in ("rows", "users", "churners", "pr_auc", "expected_churners",
                                          "realized_churners")},
               "backtest": {k: f[k] for k in ("rows", "churners", "pr_auc", "expected_churners", "realized_churners",
                                              "brier", "bins_within", "bins", "calibration_p")},
               "pr_auc_vs_test": bt["pr_auc_vs_test"], "pr_auc_vs_test_interval": bt.get("pr_auc_vs_test_interval"),
               "ceiling_pr_auc_vs_test": truth_ratio}
    (out / "backtest_figures.json").write_text(json.dumps(figures, indent=2))
    return figures


def run_drivers(args) -> int:
    """``train.py drivers``: train on a satisfaction log; the model against the true ceiling
    and the planted drivers (from metrics.json); with ``--seeds``, once per log seed, then
    side by side. Exit 1 when the model's PR-AUC is below 0.8x the ceiling's (the median
    over the seeds) or a leading driver is not among its top inputs on some seed."""
    import numpy as np

    seeds = seeds_of(args)
    spark = get_bench_spark("sparkify-bench-drivers")
    runs = [drivers_one(spark, args, seed, seed_out(args, seed, seeds)) for seed in seeds]
    runs = [r for r in runs if r is not None]
    if len(runs) < len(seeds):
        return 1
    fractions = [r["fraction"] for r in runs]
    if len(runs) > 1:
        print(f"\n{len(runs)} satisfaction logs:")
        print("\n".join(markdown_table(
            ["seed", "test rows / users / churner rows", "model PR-AUC", "ceiling", "model / ceiling (95 % interval)",
             "hazard at t", "model / hazard at t", "leading drivers in the top"],
            [[seed, f"{r['test']['rows']:,} / {r['test']['users']:,} / {r['test']['churners']:,}",
              f"{r['model_pr_auc']:.3f}", f"{r['ceiling_pr_auc']:.3f}",
              f"{r['fraction']:.2f}{interval_text(r.get('fraction_interval'))}",
              "-" if r["hazard_at_t_pr_auc"] is None else f"{r['hazard_at_t_pr_auc']:.3f}",
              "-" if not r["hazard_at_t_pr_auc"] else f"{r['model_pr_auc'] / r['hazard_at_t_pr_auc']:.2f}",
              f"{r['drivers']['leading_in_top']} of {r['drivers']['leading']}"]
             for seed, r in zip(seeds, runs)], "rrrrrrrr")))
        print(f"model / ceiling: median {np.median(fractions):.2f}, min {min(fractions):.2f}, max "
              f"{max(fractions):.2f} (target >= 0.8)")
    found = all(r["drivers"]["leading_in_top"] == r["drivers"]["leading"] for r in runs)
    return 0 if np.median(fractions) >= 0.8 and found else 1


def drivers_one(spark, args, seed: int, out) -> dict | None:
    """One log seed of ``train.py drivers``; prints its figures, writes and returns them
    (None when the log has no ground truth)."""
    from sparkify.features import LabelSpec
    from sparkify.modeling.train import TrainConfig, train

    users = None if args.preset else args.users
    log, info = cached_log(args.preset, users, seed, bench_dir=args.bench_dir, churn_model="satisfaction")
    out = out or log.parent / "drivers" / "model"
    t0 = time.perf_counter()
    steps = {"step_days": args.step_days} if getattr(args, "step_days", None) else {}
    m = train(spark, log, out, TrainConfig(label=LabelSpec(**window_option(args), **steps))).metrics
    train_s = time.perf_counter() - t0
    t, c = m["best"]["test"], m.get("ceiling") or {}
    if not c.get("drivers"):
        print("no ceiling or drivers in metrics.json: is the ground truth beside the log?", file=sys.stderr)
        return None
    ct, dv = c["test"], c["drivers"]
    print()
    print(f"seed {seed}: satisfaction log {log}: {info['users']:,} users, {info['churned']:,} churned; model {m['best']['name']} "
          f"trained in {train_s:.0f}s")
    print(f"test: {t['rows']:,} rows of {t['users']:,} users, {t['churners']:,} churner rows")
    print(f"model PR-AUC {t['pr_auc']:.3f}; true ceiling PR-AUC {ct['pr_auc']:.3f} (expected/realized churners "
          f"{ct['expected_churners']:.1f}/{ct['realized_churners']}); the model reaches "
          f"{fraction_text(c)} of it (target >= 0.8)")
    held = c.get("hazard_at_t") or {}
    if held:
        print(f"known daily hazard at t held over the horizon: PR-AUC {held['pr_auc']:.3f}; the model reaches "
              f"{held['model_pr_auc_fraction']:.2f} of it")
    print("\n".join(markdown_table(["driver", "true effect", "true importance", "features", "best rank",
                                    "rank by mean absolute contribution", "first reason"],
                         [[d["driver"] + (" (leading)" if d["leading"] else ""), f"{d['effect']:+.3g}",
                           f"{d['true_importance']:.3f}", ", ".join(d["features"]),
                           d["rank"] if d["rank"] is not None else "-",
                           "-" if d.get("contribution_rank") is None else d["contribution_rank"],
                           "-" if d["first_reason_share"] is None else f"{d['first_reason_share']:.0%}"]
                          for d in dv["drivers"]], "lrrlrrr")))
    print(f"{dv['leading_in_top']} of the {dv['leading']} leading drivers among the top {dv['top']} inputs "
          f"({', '.join(dv['top_features'])}); the first raising reason of {dv['reason_driver_share']:.0%} of "
          f"{dv['reason_rows']} at-risk test rows is a driver")
    figures = {"seed": seed, "train_seconds": train_s, "model_pr_auc": t["pr_auc"], "ceiling_pr_auc": ct["pr_auc"],
               "hazard_at_t_pr_auc": held.get("pr_auc"),
               "fraction": c["model_pr_auc_fraction"], "fraction_interval": c.get("fraction_interval"), "test": {k: t[k] for k in ("rows", "users", "churners")},
               "drivers": dv}
    (out / "drivers_figures.json").write_text(json.dumps(figures, indent=2))
    return figures


# ------------------------------------------------------------------ artist ablation
#: Fixed, moderate parameters per family (no tuning: the comparison is what matters).
PARAMS = {"lr": {"regParam": 0.01, "maxIter": 30}, "gbt": {"maxIter": 30, "maxDepth": 4},
          "rf": {"numTrees": 60, "maxDepth": 8}}


def user_table(spark, source: str):
    """The user table with the artist features, from a features Parquet or a log."""
    from sparkify.features import ARTIST_FEATURES, LabelSpec, build_user_table

    if source.rstrip("/").endswith(".parquet"):
        table = spark.read.parquet(source)
        missing = [c for c in ARTIST_FEATURES if c not in table.columns]
        if missing:
            raise SystemExit(f"{source} lacks {', '.join(missing)}: train with --artist-features, "
                             "or give the event log")
        return table
    from sparkify.dataset import load_log

    loaded = load_log(spark, source, artists=True)
    table, _ = build_user_table(loaded.days, LabelSpec())
    return table


def best_f1(labels, scores) -> float:
    """The churn-class F1 at the best threshold (the same rule for both arms)."""
    import numpy as np

    y = labels[np.argsort(-scores, kind="stable")]
    tp = np.cumsum(y)
    flagged = np.arange(1, len(y) + 1)
    return float((2 * tp / (flagged + y.sum())).max()) if y.sum() else 0.0


def run_ablation(args) -> int:
    """``train.py ablation``: held-out PR-AUC and F1 with and without the artist features."""
    import numpy as np
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from sparkify.features import ARTIST_FEATURES, model_features
    from sparkify.modeling.pipelines import build_pipeline

    source, _, _ = resolve_log(args)
    spark = get_bench_spark("sparkify-artist-ablation")
    try:
        table = user_table(spark, str(source))
        users = table.count()
        churners = table.filter(F.col("churn") == 1).count()
        weight = (users - churners) / max(churners, 1)
        table = (table.withColumn("churn", F.col("churn").cast("double"))
                 .withColumn("weight", F.when(F.col("churn") == 1, F.lit(weight)).otherwise(F.lit(1.0)))
                 .repartition(spark.sparkContext.defaultParallelism).cache())
        specs = model_features("window", artists=True)
        numeric = [f.name for f in specs if f.kind == "numeric"]
        categorical = [f.name for f in specs if f.kind == "categorical"]
        without = [n for n in numeric if n not in ARTIST_FEATURES]
        evaluator = BinaryClassificationEvaluator(labelCol="churn", metricName="areaUnderPR")
        print(f"{users:,} users, {churners:,} churners")
        print("family seed | with artists: PR-AUC  F1* | without: PR-AUC  F1* | difference in PR-AUC")
        for family in (m.strip() for m in args.models.split(",")):
            if family not in PARAMS:
                raise SystemExit(f"unknown family {family!r}: use lr, gbt or rf")
            diffs = []
            for seed in (int(s) for s in args.seeds.split(",")):
                train, test = table.randomSplit([0.75, 0.25], seed=seed)
                arms = []
                for columns in (numeric, without):
                    pipeline, _ = build_pipeline(family, columns, categorical, PARAMS[family], seed=seed)
                    scored = pipeline.fit(train).transform(test)
                    rows = scored.select("churn", vector_to_array("probability")[1]).toPandas().to_numpy()
                    arms.append((evaluator.evaluate(scored), best_f1(rows[:, 0], rows[:, 1])))
                diffs.append(arms[0][0] - arms[1][0])
                print(f"{family:6s} {seed:4d} | {arms[0][0]:.4f} {arms[0][1]:.4f} | "
                      f"{arms[1][0]:.4f} {arms[1][1]:.4f} | {diffs[-1]:+.4f}", flush=True)
            print(f"{family:6s} mean difference in PR-AUC {np.mean(diffs):+.4f} over {len(diffs)} splits")
        table.unpersist()
    finally:
        spark.stop()
    return 0


# --------------------------------------------------------------------------- latent traits
def latent_traits(truth):
    """The simulator's lasting per-user traits, not among a model's inputs, as inputs: in, the
    ground-truth table (pandas); out, (a table keyed by ``userId``, numeric columns,
    categorical columns). Multiplicative rates enter on a log scale: the session and page
    gaps (``alpha``, ``beta``), the satisfaction model's ``temperament``; its ``baseline``
    as it is; the ``cohort`` as a category."""
    import numpy as np

    out = truth[["userId"]].astype({"userId": str})
    numeric = []
    for name, values in (("latent_log_alpha", np.log(truth["alpha"])), ("latent_log_beta", np.log(truth["beta"])),
                         ("latent_log_temperament", np.log(truth["temperament"]) if "temperament" in truth else None),
                         ("latent_baseline", truth["baseline"] if "baseline" in truth else None)):
        if values is not None:
            out[name] = values.to_numpy(dtype=float)
            numeric.append(name)
    out["latent_cohort"] = truth["cohort"].astype(str).to_numpy()
    return out, numeric, ["latent_cohort"]


def run_latent(args) -> int:
    """``train.py latent``: how much of the gap between a saved model and the true ceiling
    is the users' lasting traits, which are not among the model's inputs (the simulator's
    userId ranges do encode the cohort, as the real mini log's ID series do, but the
    product reads no id as a feature). On the model's own training and test rows
    (``features.parquet``), a logistic regression (the comparison point's parameters,
    unweighted) is fitted on the model's inputs, then on the same inputs and each user's
    latent traits (:func:`latent_traits`); each is scored on the test rows beside the saved
    model and the true ceiling, as a fraction of the ceiling's PR-AUC with its 95 %
    interval (test users resampled)."""
    import numpy as np
    import pandas as pd

    from sparkify.modeling import evaluate as ev
    from sparkify.modeling.extras import ceiling_on_rows
    from sparkify.modeling.pipelines import AS_OF_COL, LABEL_COL, build_pipeline, default_settings, prepare_table
    from sparkify.modeling.selection import fraction_of_ceiling, with_score

    model = Path(args.model)
    metrics = json.loads((model / "metrics.json").read_text())
    model_json = json.loads((model / "model.json").read_text())
    truth_path = Path(args.truth or (metrics.get("ceiling") or {}).get("source") or "")
    if not truth_path.is_file():
        raise SystemExit(f"no ground truth for {model}: give --truth (the log's _truth.parquet)")
    truth = pd.read_parquet(truth_path)
    latent, latent_numeric, latent_categorical = latent_traits(truth)
    rows = pd.read_parquet(model / "features.parquet")
    rows = rows[rows["split"].isin(["train", "test"])].merge(latent, on="userId", how="left")
    numeric = [f["name"] for f in model_json["features"] if f["kind"] == "numeric"]
    categorical = [f["name"] for f in model_json["features"] if f["kind"] == "categorical"]
    lr = default_settings()["lr"]                      # the comparison point, or the one this model's CV chose
    params = {**lr.fixed, **{k: v[0] for k, v in lr.compare_grid.items()},
              **((metrics.get("models") or {}).get("lr") or {}).get("params", {})}
    params.pop("weightCol", None)

    test = rows[rows["split"] == "test"].sort_values(["userId", AS_OF_COL]).reset_index(drop=True)
    users, labels = test["userId"].to_numpy(), test[LABEL_COL].to_numpy().astype(int)
    print(machine_line())
    print(f"model: {model} ({metrics['best']['name']}); truth: {truth_path}")
    print(f"train {int((rows['split'] == 'train').sum()):,} rows; test {ev.counts_text(_counts(test))}", flush=True)
    t0 = time.perf_counter()
    _, truth_p = ceiling_on_rows(truth_path, test, int(model_json["label"]["horizon_days"]))
    print(f"true ceiling on the test rows: {time.perf_counter() - t0:.1f} s", flush=True)

    spark = get_bench_spark("sparkify-latent")
    try:
        arms = {"the saved model (" + metrics["best"]["name"] + ")": test["score"].to_numpy(dtype=float)}
        for name, extra_num, extra_cat in (("LogisticRegression, the model's inputs", [], []),
                                           ("LogisticRegression, + the latent traits", latent_numeric,
                                            latent_categorical)):
            num, cat = numeric + extra_num, categorical + extra_cat
            frame = spark.createDataFrame(rows[["userId", AS_OF_COL, LABEL_COL, "split", *num, *cat]])
            table = prepare_table(frame, num, cat).join(frame.select("userId", AS_OF_COL, "split"),
                                                        ["userId", AS_OF_COL]).repartition(2).cache()
            pipeline, _ = build_pipeline("lr", num, cat, params, weighted=False)
            fitted = pipeline.fit(table.filter("split = 'train'"))
            scored = (with_score(fitted.transform(table.filter("split = 'test'")), "lr")
                      .select("userId", AS_OF_COL, "score").toPandas())
            arms[name] = test[["userId", AS_OF_COL]].merge(scored, on=["userId", AS_OF_COL])["score"].to_numpy()
            table.unpersist()
    finally:
        spark.stop()
    arms["the true ceiling"] = truth_p
    out = []
    for name, scores in arms.items():
        frac = fraction_of_ceiling(users, labels, scores, truth_p)
        out.append([name, f"{ev.average_precision(labels, scores):.3f}",
                    f"{frac['model_pr_auc_fraction']:.2f}{ev.interval_text(frac['fraction_interval'])}"])
    print(f"\ntest: {ev.counts_text(_counts(test))}; latent traits: {', '.join(latent_numeric + latent_categorical)}")
    print("\n".join(markdown_table(["scores", "PR-AUC", "fraction of the ceiling"], out)))
    return 0 if np.isfinite(truth_p).all() else 1


def _counts(table) -> dict:
    """Rows, users and churner rows of a pandas table of labelled rows."""
    return {"rows": len(table), "users": int(table["userId"].nunique()), "churners": int(table["churn"].sum())}
