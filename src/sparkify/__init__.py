"""Sparkify: churn prediction for subscription music services.

The data's journey, one module a step:

- ``sparkify.simulator``  writes eventsim-faithful event logs (no Spark needed)
- ``sparkify.dataset``    loads and cleans a raw log (explicit schema, quarantine)
- ``sparkify.features``   one leakage-free row of features per user
- ``sparkify.modeling``   trains, tunes, evaluates and scores with Spark MLlib
- ``sparkify.scorer``     scores a saved model in NumPy, no JVM
- ``sparkify.webapp``     the Flask + Bootstrap app
- ``sparkify.plots``      charts shared by the report and the app
"""

__version__ = "0.1.0"
