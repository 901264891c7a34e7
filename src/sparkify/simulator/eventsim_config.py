"""Load, validate and compile an eventsim configuration file (JSON).

In:  a path to a config in eventsim's format (``configs/<Instrument>-config.json``:
     ``alpha``, ``beta``, ``damping``, ``weekend-damping*``, ``session-gap``,
     ``churned-state``, ``show-user-details``, ``levels``, ``auths``,
     ``new-user-auth``, ``new-user-level``, ``new-session``, ``transitions``, ...).
Out: an :class:`EventsimConfig` (the scalar parameters) and, per cohort, a
     :class:`Model`: the page-transition chain compiled into plain Python lists
     (integer state ids, cumulative probabilities per source state) that the engine
     walks quickly.

Errors in the file (unknown keys, unknown auth/level, a state whose outgoing
probabilities sum to more than 1, a transition out of a state that no session can
reach...) raise :class:`ConfigError` (a ``ValueError``) with a message that names
the offending entry, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkify.config import DEFAULT_EVENTSIM_CONFIG


class ConfigError(ValueError):
    """A config file that eventsim would reject (or that we cannot simulate)."""


KNOWN_KEYS = {
    "seed", "alpha", "beta", "damping", "weekend-damping", "weekend-damping-offset",
    "weekend-damping-scale", "session-gap", "churned-state", "show-user-details",
    "levels", "auths", "new-session", "new-user-auth", "new-user-level", "upgrades",
    "downgrades", "transitions", "start-date", "end-date", "n-users", "first-user-id",
    "growth-rate", "tag", "attrition-rate",
}
REQUIRED_KEYS = ("alpha", "beta", "session-gap", "new-session", "transitions", "levels", "auths",
                 "show-user-details")
STATE_KEYS = ("page", "method", "status", "auth", "level")

# A state is (page, auth, level, method, status).
State = tuple[str, str, str, str, int]
_Edges = dict[State, list[tuple[State, float]]]  # each source state's (dest, p) edges, in file order
_Starts = dict[tuple[str, str], list[tuple[State, float]]]  # each (auth, level) group's weighted start states


@dataclass(frozen=True)
class EventsimConfig:
    """The scalar parameters and raw tables of one eventsim config file."""

    alpha: float
    beta: float
    damping: float
    weekend_damping: float
    weekend_damping_offset: float  # minutes
    weekend_damping_scale: float  # minutes
    session_gap: float  # seconds
    churned_state: str
    show_user_details: dict[str, bool]
    levels: dict[str, float]
    auths: dict[str, float]
    new_user_auth: str
    new_user_level: str
    new_session: list[dict[str, Any]]
    transitions: list[dict[str, Any]]
    growth_rate: float | None = None
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _state(d: dict[str, Any], where: str) -> State:
    missing = [k for k in STATE_KEYS if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    extra = set(d) - set(STATE_KEYS) - {"weight", "p"}
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    try:
        status = int(d["status"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: status {d['status']!r} is not an integer") from None
    for k in ("page", "method", "auth", "level"):
        if not isinstance(d[k], str) or not d[k]:
            raise ConfigError(f"{where}: {k} must be a non-empty string")
    return (d["page"], d["auth"], d["level"], d["method"], status)


def _number(raw: dict[str, Any], key: str, default: float | None, src: str, minimum: float = 0.0) -> float:
    if key not in raw:
        if default is None:
            raise ConfigError(f"{src}: missing required key {key!r}")
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{src}: {key!r} must be a number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{src}: {key!r} must be >= {minimum}, got {value!r}")
    return float(value)


def parse_config(raw: dict[str, Any], source: str = "<config>") -> EventsimConfig:
    """Validate a decoded config dict and return an :class:`EventsimConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s): {', '.join(unknown)}")
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise ConfigError(f"{source}: missing required key {key!r}")

    def weights(key: str, name: str) -> dict[str, float]:
        entries = raw[key]
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{source}: {key!r} must be a non-empty list")
        out: dict[str, float] = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or name not in e or "weight" not in e:
                raise ConfigError(f"{source}: {key}[{i}] needs {name!r} and 'weight'")
            w = e["weight"]
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ConfigError(f"{source}: {key}[{i}] weight must be a number >= 0")
            out[e[name]] = float(w)
        if sum(out.values()) <= 0:
            raise ConfigError(f"{source}: {key!r} weights sum to 0")
        return out

    levels = weights("levels", "level")
    auths = weights("auths", "auth")
    show = {}
    for i, e in enumerate(raw["show-user-details"]):
        if not isinstance(e, dict) or "auth" not in e or not isinstance(e.get("show"), bool):
            raise ConfigError(f"{source}: show-user-details[{i}] needs 'auth' and a boolean 'show'")
        show[e["auth"]] = e["show"]

    churned = raw.get("churned-state", "Cancelled")
    new_user_auth = raw.get("new-user-auth", "Guest")
    new_user_level = raw.get("new-user-level", next(iter(levels)))
    if not isinstance(raw["transitions"], list) or not raw["transitions"]:
        raise ConfigError(f"{source}: 'transitions' must be a non-empty list")
    if not isinstance(raw["new-session"], list) or not raw["new-session"]:
        raise ConfigError(f"{source}: 'new-session' must be a non-empty list")
    growth = raw.get("growth-rate")
    cfg = EventsimConfig(
        alpha=_number(raw, "alpha", None, source, minimum=1e-9),
        beta=_number(raw, "beta", None, source, minimum=1e-9),
        damping=_number(raw, "damping", 0.0, source),
        weekend_damping=_number(raw, "weekend-damping", 0.0, source),
        weekend_damping_offset=_number(raw, "weekend-damping-offset", 0.0, source),
        weekend_damping_scale=_number(raw, "weekend-damping-scale", 0.0, source),
        session_gap=_number(raw, "session-gap", None, source),
        churned_state=churned,
        show_user_details=show,
        levels=levels,
        auths=auths,
        new_user_auth=new_user_auth,
        new_user_level=new_user_level,
        new_session=list(raw["new-session"]),
        transitions=list(raw["transitions"]),
        growth_rate=None if growth is None else _number(raw, "growth-rate", 0.0, source),
        source=source,
        raw=raw,
    )
    if cfg.weekend_damping > 1:
        raise ConfigError(f"{source}: 'weekend-damping' must be between 0 and 1")
    if cfg.damping > 0.5:
        raise ConfigError(f"{source}: 'damping' must be between 0 and 0.5")
    compile_model(cfg)  # validates the chain
    return cfg


def load_config(path: str | Path | None = None) -> EventsimConfig:
    """Read and validate an eventsim config file (default: the Accordion template)."""
    p = Path(path) if path is not None else DEFAULT_EVENTSIM_CONFIG
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    return parse_config(raw, source=str(p))


@dataclass
class Model:
    """A page-transition chain compiled for the engine (all plain lists, indexed by state id).

    - ``states[i]``: (page, auth, level, method, status)
    - ``cum[i]`` / ``dest[i]``: cumulative probabilities and destination ids of state
      i's outgoing edges in file order (the session ends when u >= cum[i][-1])
    - ``kind[i]``: 1 = status 3xx (+1 s), 2 = NextSong, 0 = other page
    - ``churn[i]``: auth is the churned state (the user leaves after the session)
    - ``show[i]``: user details are shown (userId and user fields)
    - ``group[i]``: id of (auth, level), the key of the new-session start table
    - ``start_cum[g]`` / ``start_dest[g]``: weighted session start states per group
    """

    states: list[State]
    cum: list[list[float]]
    dest: list[list[int]]
    kind: list[int]
    churn: list[bool]
    show: list[bool]
    group: list[int]
    groups: list[tuple[str, str]]
    start_cum: list[list[float]]
    start_dest: list[list[int]]
    dest_end: list[list[int]] = field(default_factory=list)  # dest + [-1] (session end)

    def __post_init__(self) -> None:
        if not self.dest_end:
            self.dest_end = [d + [-1] for d in self.dest]

    def state_id(self, page: str, auth: str, level: str) -> int:
        for i, s in enumerate(self.states):
            if s[0] == page and s[1] == auth and s[2] == level:
                return i
        raise KeyError((page, auth, level))

    def group_id(self, auth: str, level: str) -> int:
        try:
            return self.groups.index((auth, level))
        except ValueError:
            raise ConfigError(f"no new-session states for auth {auth!r}, level {level!r}") from None


def _scaled_edges(edges: list[tuple[State, float]], scale: dict[str, float]) -> list[tuple[State, float]]:
    """Multiply the probability of edges into the pages of ``scale``; take the extra
    mass from the other edges (proportionally) so the session-end probability stays."""
    if not scale:
        return edges
    total = sum(p for _, p in edges)
    new = [(d, p * scale.get(d[0], 1.0)) for d, p in edges]
    scaled_sum = sum(p for (d, p) in new if d[0] in scale)
    rest_sum = sum(p for (d, p) in new if d[0] not in scale)
    if rest_sum > 0 and scaled_sum <= total:
        factor = (total - scaled_sum) / rest_sum
        new = [(d, p if d[0] in scale else p * factor) for d, p in new]
    else:  # nothing to take from: renormalise to the old total
        s = sum(p for _, p in new)
        if s > 0:
            new = [(d, p * total / s) for d, p in new]
    return new


def _end_scaled(edges: list[tuple[State, float]], end_scale: float) -> list[tuple[State, float]]:
    """Multiply the probability that the session ends after this state by ``end_scale``
    (capped at 1), shrinking the outgoing edges in proportion."""
    total = sum(p for _, p in edges)
    end = 1.0 - total
    if end_scale == 1.0 or end <= 1e-12 or total <= 0:
        return edges
    new_end = min(1.0, end * end_scale)
    f = (1.0 - new_end) / total
    return [(d, p * f) for d, p in edges]


def compile_model(cfg: EventsimConfig, page_scale: dict[str, float] | None = None,
                  end_scale: float = 1.0) -> Model:
    """Compile the transitions of ``cfg`` into a :class:`Model`.

    ``end_scale`` multiplies each state's session-end probability (shorter sessions).
    ``page_scale`` (a cohort override) multiplies the probability of moving into the
    named pages, e.g. ``{"Cancel": 3, "Thumbs Down": 1.5}``; the increase is taken from
    the other destinations of the same state, so session lengths barely change.
    Raises :class:`ConfigError` for invalid chains.
    """
    page_scale = dict(page_scale or {})
    for page, f in page_scale.items():
        if not isinstance(f, (int, float)) or isinstance(f, bool) or f < 0 or not math.isfinite(f):
            raise ConfigError(f"page scale for {page!r} must be a number >= 0, got {f!r}")
    src = cfg.source or "<config>"
    states = _StateIndex()
    out_edges = _read_transitions(cfg, src, states)
    groups, starts = _read_starts(cfg, src, states)
    _check_states(cfg, src, states.states)
    unknown_pages = sorted(set(page_scale) - {s[0] for s in states.states})
    if unknown_pages:
        raise ConfigError(f"{src}: page_scale names page(s) not in the config: {', '.join(unknown_pages)}")
    cum, dest = _edge_tables(src, states, out_edges, page_scale, end_scale)
    _check_starts(cfg, src, states.states, cum, groups, starts)
    start_cum, start_dest = _start_tables(states, groups, starts)
    group_ids = {g: i for i, g in enumerate(groups)}
    return Model(
        states=states.states,
        cum=cum,
        dest=dest,
        kind=[1 if 300 <= s[4] <= 399 else (2 if s[0] == "NextSong" else 0) for s in states.states],
        churn=[s[1] == cfg.churned_state for s in states.states],
        show=[bool(cfg.show_user_details.get(s[1], False)) for s in states.states],
        group=[group_ids.get((s[1], s[2]), -1) for s in states.states],
        groups=groups,
        start_cum=start_cum,
        start_dest=start_dest,
    )


class _StateIndex:
    """State ids in order of first appearance: ``states[i]`` is state i, ``index[s]`` its id."""

    def __init__(self) -> None:
        self.index: dict[State, int] = {}
        self.states: list[State] = []

    def add(self, s: State) -> int:
        """The id of ``s``, a new one the first time it is seen."""
        if s not in self.index:
            self.index[s] = len(self.states)
            self.states.append(s)
        return self.index[s]


def _read_transitions(cfg: EventsimConfig, src: str, states: _StateIndex) -> _Edges:
    """In: the config's ``transitions``. Out: each source state's (dest, p) edges in file
    order; every state named is added to ``states``. Raises ConfigError for a malformed entry."""
    out_edges: _Edges = {}
    for i, tr in enumerate(cfg.transitions):
        where = f"{src}: transitions[{i}]"
        if not isinstance(tr, dict) or set(tr) != {"source", "dest", "p"}:
            raise ConfigError(f"{where}: needs exactly 'source', 'dest' and 'p'")
        s = _state(tr["source"], where + ".source")
        d = _state(tr["dest"], where + ".dest")
        p = tr["p"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 <= p <= 1):
            raise ConfigError(f"{where}: p must be a number in [0, 1], got {p!r}")
        out_edges.setdefault(s, []).append((d, float(p)))
        states.add(s)
        states.add(d)
    return out_edges


def _read_starts(cfg: EventsimConfig, src: str,
                 states: _StateIndex) -> tuple[list[tuple[str, str]], _Starts]:
    """In: the config's ``new-session`` entries. Out: the (auth, level) groups in order of
    first appearance and each group's weighted start states; every state is added to
    ``states``. Raises ConfigError for a malformed entry."""
    groups: list[tuple[str, str]] = []
    starts: _Starts = {}
    for i, e in enumerate(cfg.new_session):
        where = f"{src}: new-session[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: must be an object")
        s = _state(e, where)
        w = e.get("weight")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"{where}: weight must be a number >= 0")
        key = (s[1], s[2])
        if key not in starts:
            groups.append(key)
            starts[key] = []
        starts[key].append((s, float(w)))
        states.add(s)
    return groups, starts


def _check_states(cfg: EventsimConfig, src: str, states: list[State]) -> None:
    """Raise ConfigError for a state whose auth or level the config does not declare, or
    whose auth is missing from show-user-details."""
    known_auths = set(cfg.auths) | set(cfg.show_user_details) | {cfg.new_user_auth, cfg.churned_state}
    known_levels = set(cfg.levels) | {cfg.new_user_level}
    for s in states:
        if s[1] not in known_auths:
            raise ConfigError(f"{src}: state {s[0]!r} uses unknown auth {s[1]!r} "
                              f"(known: {', '.join(sorted(known_auths))})")
        if s[2] not in known_levels:
            raise ConfigError(f"{src}: state {s[0]!r} uses unknown level {s[2]!r} "
                              f"(known: {', '.join(sorted(known_levels))})")
        if s[1] not in cfg.show_user_details:
            raise ConfigError(f"{src}: auth {s[1]!r} is missing from show-user-details")


def _edge_tables(src: str, states: _StateIndex, out_edges: _Edges,
                 page_scale: dict[str, float], end_scale: float) -> tuple[list[list[float]], list[list[int]]]:
    """Per state id: the cumulative probabilities and destination ids of its outgoing
    edges (after ``page_scale`` and ``end_scale``). Raises ConfigError when a state's
    probabilities sum to more than 1."""
    cum: list[list[float]] = []
    dest: list[list[int]] = []
    for s in states.states:
        edges = _scaled_edges(out_edges.get(s, []), page_scale)
        total = sum(p for _, p in edges)
        if total <= 1 + 1e-9:
            edges = _end_scaled(edges, end_scale)
            total = sum(p for _, p in edges)
        if total > 1 + 1e-9:
            detail = ", ".join(f"{d[0]} {p:g}" for d, p in out_edges.get(s, []))
            raise ConfigError(f"{src}: probabilities out of state ({s[0]}, {s[1]}, {s[2]}, {s[3]}, {s[4]}) "
                              f"sum to {total:.6g} > 1 ({detail})")
        c, acc = [], 0.0
        for _, p in edges:
            acc += p
            c.append(min(acc, 1.0))
        cum.append(c)
        dest.append([states.index[d] for d, _ in edges])
    return cum, dest


def _check_starts(cfg: EventsimConfig, src: str, states: list[State], cum: list[list[float]],
                  groups: list[tuple[str, str]], starts: _Starts) -> None:
    """Raise ConfigError unless every session can start: each group's weights are
    positive, every initial and new user's (auth, level) and every (auth, level) a session
    can end in (other than churned) has new-session states."""
    for auth, level in groups:
        if sum(w for _, w in starts[(auth, level)]) <= 0:
            raise ConfigError(f"{src}: new-session weights for ({auth}, {level}) sum to 0")
    for auth in cfg.auths:
        for level in cfg.levels:
            if cfg.auths[auth] > 0 and cfg.levels[level] > 0 and (auth, level) not in starts:
                raise ConfigError(f"{src}: no new-session state for initial users with auth {auth!r}, level {level!r}")
    for i, s in enumerate(states):
        if s[1] == cfg.churned_state:
            continue
        if (s[1], s[2]) not in starts and (not cum[i] or cum[i][-1] < 1 - 1e-12):
            raise ConfigError(f"{src}: a session can end in ({s[0]}, {s[1]}, {s[2]}) but new-session has no "
                              f"start state for auth {s[1]!r}, level {s[2]!r}")
    if (cfg.new_user_auth, cfg.new_user_level) not in starts:
        raise ConfigError(f"{src}: no new-session state for new users ({cfg.new_user_auth}, {cfg.new_user_level})")


def _start_tables(states: _StateIndex, groups: list[tuple[str, str]],
                  starts: _Starts) -> tuple[list[list[float]], list[list[int]]]:
    """Per group: the cumulative (normalised) weights and state ids of its start states."""
    start_cum, start_dest = [], []
    for g in groups:
        entries = starts[g]
        tot = sum(w for _, w in entries)
        c, acc = [], 0.0
        for _, w in entries:
            acc += w / tot
            c.append(acc)
        c[-1] = 1.0
        start_cum.append(c)
        start_dest.append([states.index[s] for s, _ in entries])
    return start_cum, start_dest
