"""eventsim's user attribute tables and weighted sampling from them.

Tables (in ``sparkify.config.SIMULATOR_DATA_DIR``, copies of eventsim's data files):
first names with gender and 1990 birth counts, the top-1000 US surnames with counts,
917 CBSA metro/micro area names with 2010 population, and the 85 user-agent strings
with eventsim's weights (kept raw: about 71 % of the weight carries literal double
quotes, as the real log shows).

In: a NumPy ``Generator`` and a number of users. Out: :class:`UserAttributes` (index
arrays into the tables, so a user's attributes are fixed once drawn).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sparkify.config import SIMULATOR_DATA_DIR


@dataclass(frozen=True)
class Table:
    """Values with sampling weights (probabilities, summing to 1)."""

    values: tuple[str, ...]
    p: np.ndarray
    extra: tuple[str, ...] = ()  # e.g. gender per first name

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Return ``n`` indices into ``values`` drawn with the table's weights."""
        return rng.choice(len(self.values), size=n, p=self.p)


def _weights(counts: list[float]) -> np.ndarray:
    w = np.asarray(counts, dtype=np.float64)
    return w / w.sum()


@lru_cache(maxsize=4)
def load_tables(data_dir: str | Path = SIMULATOR_DATA_DIR) -> dict[str, Table]:
    """Read the four attribute tables (In: their directory; Out: name -> Table)."""
    d = Path(data_dir)
    with open(d / "first_names.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    first = Table(tuple(r["first_name"] for r in rows), _weights([float(r["count"]) for r in rows]),
                  tuple(r["gender"] for r in rows))
    with open(d / "last_names.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    last = Table(tuple(r["last_name"] for r in rows), _weights([float(r["count"]) for r in rows]))
    with open(d / "locations.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    loc = Table(tuple(r["location"] for r in rows), _weights([float(r["population_2010"]) for r in rows]))
    # user agents: tab separated, the UA string kept raw (with its literal quotes)
    ua_vals, ua_w = [], []
    with open(d / "user_agents.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            weight, ua, *_ = line.split("\t")
            ua_vals.append(ua)
            ua_w.append(float(weight))
    ua = Table(tuple(ua_vals), _weights(ua_w))
    return {"first_name": first, "last_name": last, "location": loc, "user_agent": ua}


@dataclass(frozen=True)
class UserAttributes:
    """Per-user indices into the tables (arrays of length n)."""

    first_name: np.ndarray
    last_name: np.ndarray
    location: np.ndarray
    user_agent: np.ndarray


def sample_attributes(rng: np.random.Generator, n: int, tables: dict[str, Table] | None = None) -> UserAttributes:
    """Draw each user's first name (gender follows it), last name, location and user
    agent with eventsim's weights. In: generator, n. Out: :class:`UserAttributes`."""
    t = tables or load_tables()
    return UserAttributes(
        first_name=t["first_name"].sample(rng, n),
        last_name=t["last_name"].sample(rng, n),
        location=t["location"].sample(rng, n),
        user_agent=t["user_agent"].sample(rng, n),
    )
