"""What the opt-in artist features add to the models: the same splits, the same parameters,
with and without ``distinct_artists`` and ``artist_diversity``.

    .venv/bin/python benchmarks/artist_ablation.py LOG [--models lr,gbt,rf] [--seeds 1,2,3]
    .venv/bin/python benchmarks/artist_ablation.py MODEL_DIR/features.parquet

``LOG`` (raw JSON or an ingest directory) is loaded with ``load_log(..., artists=True)``
and turned into the default prediction-time user table; a ``features.parquet`` written by
``sparkify train --artist-features`` is used as it is. For each family and seed: a random
75/25 split of the users, the family's pipeline (``sparkify.modeling.pipelines``, class
weights on) fitted twice, and the held-out PR-AUC and best churn-class F1 over thresholds
printed side by side. Compare the differences with the spread between seeds.
"""

from __future__ import annotations

import argparse

import numpy as np

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


def best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """The churn-class F1 at the best threshold (the same rule for both arms)."""
    y = labels[np.argsort(-scores, kind="stable")]
    tp = np.cumsum(y)
    flagged = np.arange(1, len(y) + 1)
    return float((2 * tp / (flagged + y.sum())).max()) if y.sum() else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="an event log, or a features.parquet with the artist features")
    parser.add_argument("--models", default="lr,gbt,rf", help="families (default lr,gbt,rf)")
    parser.add_argument("--seeds", default="1,2,3", help="split seeds (default 1,2,3)")
    args = parser.parse_args(argv)

    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from sparkify.features import ARTIST_FEATURES, model_features
    from sparkify.modeling.pipelines import build_pipeline
    from sparkify.spark import get_spark

    spark = get_spark(app_name="sparkify-artist-ablation")
    try:
        table = user_table(spark, args.source)
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


if __name__ == "__main__":
    raise SystemExit(main())
