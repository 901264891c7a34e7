"""Presets matching the three real Sparkify files, and the default cohort mix.

A preset fixes the number of users at the END of the window (distinct userIds in the
log, as the real files count them), the window and the hidden-row userId. The
calibration constants below turn a target user count into eventsim's parameters (the
number of users at start-up; growth adds a few more who arrive as Guests).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

WINDOW_START = dt.datetime(2018, 10, 1, tzinfo=dt.timezone.utc)
WINDOW_DAYS = 61  # 2018-10-01 00:00 -> 2018-12-01 00:00 UTC


@dataclass(frozen=True)
class Preset:
    """A target like one of the real files."""

    name: str
    users: int  # distinct users in the log at the end of the window
    events: int  # rows of the real file (for checks)
    size_bytes: int  # size of the real file
    hidden_user_id: str  # userId of Logged Out / Guest rows
    beta_scale: float = 1.0  # the real files differ in events per user (mini 1,273, medium 1,214, full 1,179)


PRESETS: dict[str, Preset] = {
    "mini": Preset("mini", 225, 286_500, 128_000_000, ""),
    "medium": Preset("medium", 448, 543_705, 242_000_000, "", beta_scale=1.04),
    "full": Preset("full", 22_277, 26_259_199, 12_000_000_000, "1261737", beta_scale=1.09),
}


@dataclass(frozen=True)
class Cohort:
    """One eventsim run of the merged log: its share of users, its userId base, its own
    sessionId counter, and overrides of the base config.

    ``page_scale`` multiplies the probability of moving into the named pages (the extra
    mass comes from the state's other destinations); ``alpha_scale`` / ``beta_scale``
    multiply the mean gap between pages / between sessions; ``end_scale`` multiplies
    every state's session-end probability.
    """

    name: str
    share: float
    user_id_base: int
    page_scale: dict[str, float] = field(default_factory=dict)
    alpha_scale: float = 1.0
    beta_scale: float = 1.0
    end_scale: float = 1.0


# The real mini log merges runs with different churn propensities (userIds 1..,
# 100001.., 200001.., 300001..). Churners there thumbs-down more, add fewer friends,
# hit more adverts and errors: cohorts with a high Cancel propensity carry those traits
# too, so churn is partly predictable from behaviour, as in the real log.
# Small corrections applied to every default cohort: the Accordion template alone gives
# About/Settings/Error rates ~10-20 % above the real log's.
# Sessions: the template's session ends give ~88 events per user-session, the real mini
# log's 87.6 (the full log has ~58: 455 k user-sessions for 22.3 k users), so END_SCALE
# leaves them as they are (a per-cohort knob; 1.5 gave ~59 and too few events per user for
# the users who churn, see ACTIVITY_SIGMA).
END_SCALE = 1.0
BASE_PAGE_SCALE = {"About": 0.9, "Settings": 0.92, "Error": 0.9, "Submit Upgrade": 1.12}


def _scale(**pages: float) -> dict[str, float]:
    out = dict(BASE_PAGE_SCALE)
    for k, v in pages.items():
        name = k.replace("_", " ")
        out[name] = out.get(name, 1.0) * v
    return out


DEFAULT_COHORTS: tuple[Cohort, ...] = (
    Cohort("core", 0.50, 0, _scale(Cancel=1.15, Thumbs_Up=1.06, Thumbs_Down=1.05), end_scale=END_SCALE),
    Cohort("fickle", 0.17, 100_000,
           _scale(Cancel=3.7, Thumbs_Down=1.8, Thumbs_Up=0.95, Add_Friend=0.75, Roll_Advert=1.25,
                  Downgrade=1.3, Help=1.2, Error=1.3), end_scale=END_SCALE),
    Cohort("devoted", 0.18, 200_000,
           _scale(Cancel=0.45, Thumbs_Up=1.25, Add_Friend=1.25, Add_to_Playlist=1.15, Thumbs_Down=0.85),
           beta_scale=0.9, end_scale=END_SCALE),
    Cohort("restless", 0.15, 300_000,
           _scale(Cancel=2.2, Thumbs_Down=1.35, Logout=1.2, Add_Friend=0.9), alpha_scale=1.1, end_scale=END_SCALE),
)

# Calibration (measured with `benchmarks/simulate.py fidelity` and runs of 400 users on several seeds):
# the share of start-up users who show up in a window of D days (users with a long
# beta may have no session in a short window; a few churn during warm-up), and the
# multipliers of eventsim's alpha / beta that give the real ~1,270 events per user.
VISIBLE_BY_DAYS = ((0, 0.0), (1, 0.362), (2, 0.541), (4, 0.703), (7, 0.798), (10, 0.864), (14, 0.907),
                   (21, 0.946), (30, 0.964), (45, 0.977), (61, 0.986), (90, 0.988), (120, 0.99))
GROWTH_RATE = 0.1  # per year: arrivals (as Guests) and the registration-age scale
BETA_SCALE = 0.5
ALPHA_SCALE = 1.0
# Spread of the per-user activity: alpha and beta are multiplied by exp(sigma Z - sigma^2/2),
# Z ~ N(0, 1) (mean 1). eventsim's sigma of 1 makes the heaviest users the likeliest to
# churn (every page view carries the same chance of Cancel): churners had 1.0-1.2x the
# events and sessions of the users who stay, against 0.64 and 0.67 in the real mini log.
# At 0.5 they have 0.65-0.75x (benchmarks/simulate.py fidelity, mini and medium).
ACTIVITY_SIGMA = 0.5


def visible_share(days: float) -> float:
    """Share of start-up users expected in the log of a ``days``-long window."""
    pts = VISIBLE_BY_DAYS
    if days >= pts[-1][0]:
        return pts[-1][1]
    for (d0, v0), (d1, v1) in zip(pts, pts[1:]):
        if d0 <= days <= d1:
            return v0 + (v1 - v0) * (days - d0) / (d1 - d0)
    return pts[-1][1]


def initial_users(target_users: int, days: float, growth_rate: float = GROWTH_RATE) -> int:
    """Start-up users so that about ``target_users`` distinct users show up in the log."""
    grown = (1.0 + growth_rate) ** (days / 365.0)
    # floor: windows shorter than a few hours would otherwise need absurdly many users
    return max(1, round(target_users / (max(visible_share(days), 0.1) * grown)))


def _number(entry: dict, where: str, key: str, default, minimum: float = 0.0, integer: bool = False):
    """``entry[key]`` (or ``default``) as a float, or an int when ``integer``, at least
    ``minimum``; ValueError naming ``where`` otherwise."""
    v = entry.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum or (integer and v != int(v)):
        raise ValueError(f"{where}: {key!r} must be a{'n integer' if integer else ' number'} >= {minimum}")
    return int(v) if integer else float(v)


def cohorts_from_json(data, source: str = "<cohorts>") -> tuple[Cohort, ...]:
    """Cohorts from decoded JSON: a list of objects with ``name``, ``share``,
    ``user_id_base`` and optional ``page_scale`` ({page: factor}), ``alpha_scale``,
    ``beta_scale``. Raises ValueError with a clear message for anything else."""
    if not isinstance(data, list) or not data:
        raise ValueError(f"{source}: expected a non-empty JSON list of cohorts")
    allowed = {"name", "share", "user_id_base", "page_scale", "alpha_scale", "beta_scale"}
    out = []
    for i, c in enumerate(data):
        where = f"{source}: cohort {i}"
        if not isinstance(c, dict):
            raise ValueError(f"{where}: must be an object")
        extra = set(c) - allowed
        if extra:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        for key in ("name", "share", "user_id_base"):
            if key not in c:
                raise ValueError(f"{where}: missing {key!r}")

        scale = c.get("page_scale", {})
        if not isinstance(scale, dict) or not all(isinstance(k, str) for k in scale):
            raise ValueError(f"{where}: 'page_scale' must map page names to factors")
        out.append(Cohort(str(c["name"]), _number(c, where, "share", None, 1e-12),
                          _number(c, where, "user_id_base", None, 0, True), dict(scale),
                          _number(c, where, "alpha_scale", 1.0, 1e-9), _number(c, where, "beta_scale", 1.0, 1e-9)))
    bases = sorted(c.user_id_base for c in out)
    if len(set(bases)) != len(bases):
        raise ValueError(f"{source}: cohorts need distinct user_id_base values")
    return tuple(out)
