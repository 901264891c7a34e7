"""Project-wide paths and defaults. Everything here is a plain value: no side effects."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parents[1]
DATA_DIR = PROJECT_DIR / "data"
MODELS_DIR = PROJECT_DIR / "model"
REPORTS_DIR = PROJECT_DIR / "reports"

SIMULATOR_DATA_DIR = PACKAGE_DIR / "simulator" / "data"
DEFAULT_EVENTSIM_CONFIG = SIMULATOR_DATA_DIR / "accordion-config.json"

DEFAULT_EVENTS = DATA_DIR / "mini_sparkify_event_data.json"
DEFAULT_MODEL_DIR = MODELS_DIR / "classifier"

# Label design (prediction-time): features from a fixed window of events before each
# observation date t (every DEFAULT_STEP_DAYS days), label = Cancellation Confirmation
# within (t, t + horizon].
DEFAULT_HORIZON_DAYS = 30
DEFAULT_STEP_DAYS = 7
# The two look-back windows every behavioural feature is measured over, in days, ending at
# the observation time t: the window [t - long_days, t) (default LONG_DAYS; `sparkify train
# --window-days`, kept by the model) and its recent part [t - RECENT_DAYS, t). A 2-month log
# with a 30-day horizon leaves about 31 days for the window and the observation dates; 14
# days keeps three weekly dates there. Longer logs can afford 28: steadier rates per user.
LONG_DAYS = 14
RECENT_DAYS = 7
CHURN_PAGE = "Cancellation Confirmation"
USER_AUTHS = ("Logged In", "Cancelled")

# Web app
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
