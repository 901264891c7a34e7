"""The file ``spark-submit`` runs: any ``sparkify`` subcommand, on any cluster.

Usage (the arguments after the script are exactly those of the ``sparkify`` command)::

    spark-submit --master spark://HOST:7077 --py-files dist/sparkify.zip \\
        dist/sparkify_submit.py train hdfs:///data/sparkify.json --model /shared/model

Under spark-submit the master, memory and resources come from spark-submit's options;
``sparkify.spark.get_spark`` does not override them (it detects spark-submit through
``sparkify.spark.under_spark_submit``). Exit status: that of the subcommand (0 success,
2 user error, 1 failure).
"""

from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    """Run ``sparkify <argv>`` in this (spark-submit launched) process; return its exit code."""
    try:
        from sparkify.cli import main
        from sparkify.spark import under_spark_submit
    except ImportError as exc:  # the package was neither installed nor shipped
        print(
            "sparkify-submit: error: cannot import the sparkify package "
            f"({exc}).\nShip it with --py-files: build the zip with "
            "`python -m sparkify.jobs.package --out dist/sparkify.zip` and pass "
            "`--py-files dist/sparkify.zip` to spark-submit (its dependencies, e.g. pandas, "
            "numpy, pyarrow, orjson, must be installed in the driver's Python).",
            file=sys.stderr,
        )
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    import sparkify

    print(f"sparkify-submit: sparkify {sparkify.__version__} from {sparkify.__file__}", file=sys.stderr)
    if not under_spark_submit():
        print(
            "sparkify-submit: note: not launched by spark-submit; running with the "
            "default local master (use `sparkify ...` directly for local runs).",
            file=sys.stderr,
        )
    return main(list(argv))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
