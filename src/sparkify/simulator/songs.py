"""A synthetic song catalogue standing in for eventsim's ``listen_counts.txt.gz``.

eventsim draws each song weighted by its Million-Song-Dataset listen count (385 k
tracks, heavy-tailed). That file is not shipped, so we build a catalogue of 170 k
tracks (its effective size) with Zipf-like popularity ``w_r = (r + q) ** -s``
(r = popularity rank), calibrated so that the number of distinct songs played grows
like the real logs' (228 k plays -> ~58 k distinct songs, 433 k -> ~80 k,
2.1 M -> ~149 k). Lengths are lognormal with the real
mean (~249 s) and sd (~99 s), clipped to the real range [0.52, 3024.66567] s.

Titles and artist names are made of English words and the name tables; a few artists
carry accented letters written with the real log's double-encoded mojibake
(``Björk`` -> ``BjÃÂ¶rk``).

In: a seed (fixed by default: the catalogue plays the part of a fixed data file).
Out: :class:`Catalogue`: popularity, lengths, and names/JSON tails made on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import orjson

N_SONGS = 170_000
ZIPF_S = 1.0
ZIPF_Q = 20.0
ARTIST_SHARE = 0.30  # artists per song in the catalogue
LENGTH_MEAN, LENGTH_SD = 249.1, 99.2
LENGTH_MIN, LENGTH_MAX = 0.52245, 3024.66567
CATALOGUE_SEED = 20181001

WORDS = (
    "love heart night day time life world girl boy baby dream fire rain sun moon star sky blue red black "
    "white gold silver golden summer winter spring autumn home road river ocean sea wind storm light dark "
    "shadow soul mind eyes hands face kiss dance song music rhythm beat blues soul rock roll city town "
    "street highway train car ride run fly fall rise down up away back forever never always tonight "
    "tomorrow yesterday morning evening midnight paradise heaven hell angel devil ghost king queen prince "
    "lady man woman child friend lover stranger hero fool wild free lost found broken sweet bitter young "
    "old new last first little big crazy lonely happy sad beautiful secret hidden silent loud electric "
    "magic mystery wonder miracle memory story letter word promise lie truth hope faith fear pain "
    "tears smile laugh cry scream whisper call wait stay leave go come walk talk dream sleep wake "
    "burn shine glow fade break hold touch feel believe remember forget need want miss keep let give "
    "take open close window door wall house garden island mountain valley desert forest field flower "
    "rose tree leaf stone glass mirror diamond paper fire water earth air ice snow thunder lightning "
    "canada california texas paris london tokyo berlin rio brooklyn memphis dixie alabama georgia "
    "rockpools miracles echo pulse signal static radio satellite rocket planet galaxy orbit universe "
    "zero one two three four five seven nine hundred thousand million number chance luck fortune "
    "dollar money gun knife blood bone skin body hunger thirst poison medicine cure fever sugar honey "
    "wine whiskey coffee cigarette party holiday weekend sunday monday friday saturday birthday wedding"
).split()
ARTIST_SUFFIX = ("Band", "Project", "Orchestra", "Trio", "Quartet", "Collective", "Experience", "Sound",
                 "Brothers", "Sisters", "Boys", "Girls", "Kids", "Crew", "Club", "Machine", "Society")
ACCENTED = (("o", "ö"), ("u", "ü"), ("a", "á"), ("e", "é"), ("o", "ó"), ("n", "ñ"), ("i", "í"), ("a", "å"))


def mojibake(text: str) -> str:
    """Double-encode non-ASCII text the way the real log does (``ö`` -> ``Ã\\x83Â¶``)."""
    return text.encode("utf-8").decode("latin-1").encode("utf-8").decode("latin-1")


@dataclass
class Catalogue:
    """Songs by popularity rank (0 = most popular).

    ``cum``: cumulative play probability (float64, for ``searchsorted`` sampling);
    ``length``: seconds (5 decimals); ``length_s``: whole seconds a play lasts
    (``int(length)``, eventsim's rule); names are made on demand by :meth:`tails`.
    """

    cum: np.ndarray
    length: np.ndarray
    length_s: list[int]
    artist_of: np.ndarray  # artist id per song
    title_words: np.ndarray  # (n, 5) word ids
    title_len: np.ndarray  # words per title
    title_pre: np.ndarray  # prefix id per title
    artist_names: list[str]

    def __len__(self) -> int:
        return len(self.length)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` song ids weighted by popularity."""
        return np.searchsorted(self.cum, rng.random(n), side="right")

    def title(self, i: int) -> str:
        words = _WORDS_CAP
        k = int(self.title_len[i])
        return TITLE_PREFIX[int(self.title_pre[i])] + " ".join(words[j] for j in self.title_words[i, :k].tolist())

    def artist(self, i: int) -> str:
        return self.artist_names[int(self.artist_of[i])]

    def tails(self, ids) -> list[bytes]:
        """Pre-encoded JSON tails ``,"artist":..,"song":..,"length":..`` of songs ``ids``
        (titles are plain ASCII words, so they are assembled as bytes directly)."""
        words = _WORDS_BYTES
        prefixes = _PREFIX_BYTES
        art_cache: dict[int, bytes] = {}
        dumps = orjson.dumps
        ids = np.asarray(ids, dtype=np.int64)
        arts = self.artist_of[ids].tolist()
        pres = self.title_pre[ids].tolist()
        lens = self.title_len[ids].tolist()
        rows = self.title_words[ids].tolist()
        lengths = self.length[ids].tolist()
        out = []
        for a, p, k, row, ln in zip(arts, pres, lens, rows, lengths):
            ea = art_cache.get(a)
            if ea is None:
                ea = art_cache[a] = b',"artist":' + dumps(self.artist_names[a]) + b',"song":"'
            out.append(ea + prefixes[p] + b" ".join([words[j] for j in row[:k]]) + b'","length":'
                       + repr(ln).encode())
        return out


_WORDS_CAP = [w.capitalize() for w in WORDS]
TITLE_PREFIX = ("", "The ", "A ", "My ", "In The ", "For ", "")
_WORDS_BYTES = [w.encode() for w in _WORDS_CAP]
_PREFIX_BYTES = [p.encode() for p in TITLE_PREFIX]


def _artists(rng: np.random.Generator, n: int, first: tuple[str, ...], last: tuple[str, ...]) -> list[str]:
    words = [w.capitalize() for w in WORDS]
    out = []
    kind = rng.integers(0, 6, size=n).tolist()
    a = rng.integers(0, len(first), size=n).tolist()
    b = rng.integers(0, len(last), size=n).tolist()
    w1 = rng.integers(0, len(words), size=n).tolist()
    w2 = rng.integers(0, len(words), size=n).tolist()
    suf = rng.integers(0, len(ARTIST_SUFFIX), size=n).tolist()
    accent = (rng.random(n) < 0.02).tolist()
    acc_kind = rng.integers(0, len(ACCENTED), size=n).tolist()
    for i in range(n):
        k = kind[i]
        if k == 0:
            name = f"{first[a[i]]} {last[b[i]]}"
        elif k == 1:
            name = f"The {words[w1[i]]}s"
        elif k == 2:
            name = f"{words[w1[i]]} {words[w2[i]]}"
        elif k == 3:
            name = last[b[i]]
        elif k == 4:
            name = f"{last[b[i]]} {ARTIST_SUFFIX[suf[i]]}"
        else:
            name = f"{first[a[i]]} {last[b[i]]} & The {words[w1[i]]}s"
        if accent[i]:
            plain, acc = ACCENTED[acc_kind[i]]
            pos = name.find(plain, 1)
            if pos > 0:
                name = mojibake(name[:pos] + acc + name[pos + 1:])
        out.append(name)
    return out


def _lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    s2 = np.log1p((LENGTH_SD / LENGTH_MEAN) ** 2)
    mu = np.log(LENGTH_MEAN) - s2 / 2
    x = rng.lognormal(mu, np.sqrt(s2), size=n)
    # the most played songs get stratified quantiles (their lengths dominate the plays'
    # mean and sd), the long tail independent draws
    top = min(n, 4000)
    u = (rng.permutation(top) + 0.5) / top
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf(v) for v in u.tolist()])
    x[:top] = np.exp(mu + np.sqrt(s2) * z)
    x = np.clip(x, 10.0, LENGTH_MAX)
    x = np.round(x, 5)
    # the real extremes, on unpopular tracks
    x[-1] = LENGTH_MAX
    x[-2] = LENGTH_MIN
    x[-3] = 0.78322
    return x


@lru_cache(maxsize=2)
def build_catalogue(n_songs: int = N_SONGS, seed: int = CATALOGUE_SEED) -> Catalogue:
    """Build the catalogue (deterministic for a given ``n_songs`` and ``seed``)."""
    from sparkify.simulator.attributes import load_tables

    tables = load_tables()
    rng = np.random.default_rng(seed)
    n_artists = max(1, int(n_songs * ARTIST_SHARE))
    first = tables["first_name"].values[:3000]
    last = tuple(v.capitalize() for v in tables["last_name"].values)
    artists = _artists(rng, n_artists, first, last)
    # popular songs tend to belong to popular artists: artist rank ~ song rank with noise
    ranks = np.arange(n_songs, dtype=np.float64)
    art = np.minimum((ranks * ARTIST_SHARE * rng.lognormal(0.0, 1.0, n_songs)).astype(np.int64), n_artists - 1)
    lengths = _lengths(rng, n_songs)
    w = (ranks + ZIPF_Q) ** -ZIPF_S
    cum = np.cumsum(w)
    cum /= cum[-1]
    return Catalogue(
        cum=cum,
        length=lengths,
        length_s=lengths.astype(np.int64).tolist(),
        artist_of=art,
        title_words=rng.integers(0, len(WORDS), size=(n_songs, 5)),
        title_len=rng.choice(np.array([1, 2, 2, 3, 3, 4, 5]), size=n_songs),
        title_pre=rng.integers(0, len(TITLE_PREFIX), size=n_songs),
        artist_names=artists,
    )
