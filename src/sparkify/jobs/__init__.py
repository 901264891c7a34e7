"""Entry points for running Sparkify jobs on a cluster with ``spark-submit``.

- ``sparkify.jobs.submit``   the file ``spark-submit`` runs; it hands its arguments to
  ``sparkify.cli.main`` (``spark-submit ... submit.py train EVENTS --model DIR``).
- ``sparkify.jobs.package``  builds the ``--py-files`` zip of the package and writes the
  entry point beside it (``python -m sparkify.jobs.package --out dist/sparkify.zip``).

Nothing here imports pyspark at import time.
"""
