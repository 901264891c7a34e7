"""The user's device and place: operating system and browser from the user agent, US
census region from the location, as Python functions (the web form, the scorer) and as
Spark SQL (the features), from one set of rules.

In:  a user-agent string or an eventsim location ("City, ST" or "City, ST-ST").
Out: (os, browser) names of :data:`OS_RULES` / :data:`BROWSER_RULES` or :data:`OTHER`;
     a region of :data:`CENSUS_REGIONS` or :data:`UNKNOWN`.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from sparkify.rawlog import sql_literal

# ------------------------------------------------------------------ user agent and location
#: (substring, OS) checked in order; the first match wins.
OS_RULES: list[tuple[str, str]] = [
    ("iPhone", "iPhone"), ("iPad", "iPad"), ("Macintosh", "Mac"),
    ("Windows", "Windows"), ("Linux", "Linux"), ("X11", "Linux"),
]
#: (substring, browser) checked in order; the first match wins.
BROWSER_RULES: list[tuple[str, str]] = [
    ("MSIE", "IE"), ("Trident", "IE"), ("Chromium", "Chromium"), ("Chrome", "Chrome"),
    ("Firefox", "Firefox"), ("iPhone", "Mobile Safari"), ("iPad", "Mobile Safari"),
    ("Safari", "Safari"),
]
OTHER = "Other"
UNKNOWN = "Unknown"

CENSUS_REGIONS: dict[str, tuple[str, ...]] = {
    "Northeast": ("CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"),
    "Midwest": ("IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"),
    "South": ("DE", "FL", "GA", "MD", "NC", "SC", "VA", "DC", "WV", "AL", "KY", "MS", "TN",
              "AR", "LA", "OK", "TX"),
    "West": ("AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"),
}
STATE_REGION: dict[str, str] = {s: r for r, states in CENSUS_REGIONS.items() for s in states}


def parse_user_agent(ua: str | None) -> tuple[str, str]:
    """(os, browser) of a user-agent string, e.g. ``('Windows', 'Chrome')``; same rules as
    the Spark expressions. Unknown parts are ``'Other'``; None gives ``('Unknown', 'Unknown')``."""
    if not ua:
        return UNKNOWN, UNKNOWN
    os_name = next((name for key, name in OS_RULES if key in ua), OTHER)
    browser = next((name for key, name in BROWSER_RULES if key in ua), OTHER)
    return os_name, browser


def location_state(location: str | None) -> str | None:
    """The state code of a CBSA location: text after the comma, last part after '-'.

    ``'Boston-Cambridge-Newton, MA-NH'`` -> ``'NH'``; None when there is no comma."""
    if not location or "," not in location:
        return None
    return location.rsplit(",", 1)[1].strip().split("-")[-1].strip() or None


def location_region(location: str | None) -> str:
    """US Census region (Northeast, Midwest, South, West) of a location, else 'Unknown'."""
    return STATE_REGION.get(location_state(location) or "", UNKNOWN)


# The derived columns are Spark SQL text, as the feature catalogue's expressions are.
def _rules_sql(col: str, rules: list[tuple[str, str]]) -> str:
    whens = " ".join(f"WHEN contains({col}, {sql_literal(key)}) THEN {sql_literal(name)}" for key, name in rules)
    return f"CASE WHEN {col} IS NULL THEN {sql_literal(UNKNOWN)} {whens} ELSE {sql_literal(OTHER)} END"


def os_sql(ua: str) -> str:
    """Spark SQL text of the OS (:data:`OS_RULES`) of user-agent column (SQL text) ``ua``."""
    return _rules_sql(ua, OS_RULES)


def browser_sql(ua: str) -> str:
    """Spark SQL text of the browser (:data:`BROWSER_RULES`) of user-agent column ``ua``."""
    return _rules_sql(ua, BROWSER_RULES)


def state_sql(location: str) -> str:
    """Spark SQL text of the state of ``location`` as :func:`location_state` finds it."""
    after_comma = f"trim(element_at(split({location}, ','), -1))"
    return f"CASE WHEN contains({location}, ',') THEN trim(element_at(split({after_comma}, '-'), -1)) END"


def region_sql(location: str) -> str:
    """Spark SQL text of the Census region of ``location`` (:func:`location_region`)."""
    pairs = ", ".join(f"{sql_literal(k)}, {sql_literal(v)}" for k, v in STATE_REGION.items())
    return f"coalesce(element_at(map({pairs}), {state_sql(location)}), {sql_literal(UNKNOWN)})"


def os_expr(ua: str) -> Column:
    """The OS of user-agent column ``ua`` (a name or SQL text), as :func:`parse_user_agent`."""
    return F.expr(os_sql(ua))


def browser_expr(ua: str) -> Column:
    """The browser of user-agent column ``ua``, as :func:`parse_user_agent`."""
    return F.expr(browser_sql(ua))


def region_expr(location: str) -> Column:
    """The Census region of location column ``location``, as :func:`location_region`."""
    return F.expr(region_sql(location))
