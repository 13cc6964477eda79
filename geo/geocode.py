"""Placing a citizen's street address offline, from the city's own OpenStreetMap extract.

**The index.** One pass of pyosmium over ``data/osm/<city>.osm.pbf`` (``read_extract``)
collects:

- *named streets*: ways with ``highway`` (any kind a person can name: roads, footways,
  pedestrian streets; not proposed or razed ones) and ``name``, ``alt_name``,
  ``official_name``, ``old_name`` or ``short_name``, with their nodes (OSM id and
  position). A street is usually many ways, and one name is often several streets in
  different places: ways with the same normalised name are grouped into one *street*
  when they share a node or come within ``SAME_STREET_GAP_M`` of each other, so a
  "Rua da Igreja" in each parish stays a separate street;
- *address points*: nodes, and the centroids of ways, with ``addr:street`` and
  ``addr:housenumber`` (a number that is no number, such as ``S/N``, is skipped);
- *locality names* (``place=*``, ``addr:city`` and the like, admin boundaries) and
  postcodes, only so that ", Porto" or "4000-123" in a query can be recognised and
  dropped.

For every street the build also finds its *middle*: the node or segment midpoint whose
farthest node is nearest (the street's discrete 1-centre), and that distance, its
*extent*. Everything becomes flat numpy arrays in
``{cache_dir}/{sha256 of the extract}/addresses-v{FORMAT}-{config}.npz``, next to the
road graph's cache (``config`` hashes the normalisation tables and constants below, so
changing them rebuilds). A cache miss builds it (about 4 s on Porto, 8,300 streets); a
hit only reads the arrays and makes the lookup tables (about 0.05 s). ``load_geocoder``
memoises the result per process. Positions are projected for distances with a local
equirectangular projection around the extract's centre (under 0.5 % error over a city).

**Names.** ``normalise`` casefolds, strips accents and punctuation, collapses spaces and
expands the abbreviations of the extract's language (detected at build time from the
street-type words its names start or end with: Portuguese, Spanish, French, else
English), so "R. Dr. António Sousa" and "Rua Doutor Antonio Sousa" are one name, and
"Av. Convención de 1914 Sur" is "Avenida Convencion de 1914 Sur". A name's *key* also
drops its street-type word (rua, calle, avenue, ..., or a trailing English "street") and
the particles (de, da, del, la, of, ...), so "Cisne" finds "Calle Cisne" and
"Rua Santa Catarina" finds "Rua de Santa Catarina". Matching tries, in turn:

1. the normalised name exactly (a street's name or an address's street);
2. the key exactly, keeping the candidates of the same street type as the query when
   the query gives one;
3. ``rapidfuzz``: the best of ``fuzz.ratio`` and ``fuzz.token_sort_ratio`` between keys,
   accepted at ``MIN_FUZZY_SCORE`` (85 of 100: one wrong letter in an 8-letter key
   still passes, two do not) and only for keys of at least ``MIN_FUZZY_KEY_CHARS``
   letters whose numbers are the same ("Rua 5 de Outubro" never matches "Rua 15 de
   Outubro"). No street below the threshold is ever returned. Several names equally
   best are all kept (and may make the answer ambiguous).

**Queries**, most precise first (``Geocoder.geocode``):

- *a house address* ("Rua de Santa Catarina 120", "120 Main Street", "Calle X #12",
  with or without commas, a postcode, a locality): the address point of the extract,
  among the addresses of the matched street(s) with that number. Two or more such
  points far apart are ambiguous; a number is allowed to pick one street among several
  of the same name;
- *an intersection* ("A / B", "A & B", "A and B", "corner of A and B",
  "esquina A y B", "A x B", ...): a node both streets share, else the closest pair of
  their nodes when within ``NEAR_CROSSING_M``. Two streets meeting in several places
  far apart are ambiguous;
- *a street alone*, or with a number the extract lacks: placed at its middle only if
  its extent is at most ``max_street_radius_m`` (``geo.geocode_street_radius_m``),
  otherwise refused ("give a house number on the map or a cross street");
- several different streets matching equally (the same name in distant places) are
  refused as ambiguous, with their count.

Separators that may be part of a name (" y ", " e ", " x ", " and ") are tried only
when the whole text is not itself a known name: "Pasaje Agustín Loera y Chávez" is one
street. For an intersection, names matched exactly are tried first, then the names
sharing their key ("Rua Fernandes Tomás" meets Rua de Santa Catarina as "Rua de
Fernandes Tomás"); the answer names the streets that meet. Each query is bounded
(``MAX_QUERY_CHARS``, ``MAX_NAME_WORDS``, ``MAX_SPLITS``) and takes milliseconds.

Limits: named places (schools, churches, parks) are not landmarks here, only squares
mapped as streets; house numbers are not interpolated along a street; a bridge passing
within ``NEAR_CROSSING_M`` of a street it does not meet counts as meeting it (layers
are not read).

Street and address data © OpenStreetMap contributors, ODbL 1.0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from rapidfuzz import fuzz, process
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from core.errors import GeoError
from core.settings import GeoSettings
from geo._cache import memo_key, read_npz, sha256_of, write_npz

_log = logging.getLogger(__name__)

FORMAT = 2
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"

#: Fuzzy matches below this ``rapidfuzz`` score (0-100) are never returned.
MIN_FUZZY_SCORE = 85.0
#: A fuzzy match of another street type than the query's ("Praça X" for "Avenida Y")
#: needs at least this score.
MIN_FUZZY_OTHER_TYPE_SCORE = 95.0
#: Keys shorter than this are matched exactly only (a wrong letter in "Sol" is "Sal").
MIN_FUZZY_KEY_CHARS = 5
#: Ways of one name closer than this are one street; farther apart, different streets.
SAME_STREET_GAP_M = 150.0
#: Two streets without a shared node meet where their nodes come this close.
NEAR_CROSSING_M = 30.0
#: Meeting points of two streets closer than this are one crossing (dual carriageways).
SAME_CROSSING_M = 60.0
#: Address points of one number closer than this are one place (entrances of a building).
SAME_ADDRESS_M = 80.0
#: An address point belongs to a matched street when it is this close to one of its nodes.
ADDRESS_NEAR_STREET_M = 300.0
#: Longer address strings are refused before any matching.
MAX_QUERY_CHARS = 200
#: Readings of more words than this are not matched (the longest names have about 9).
MAX_NAME_WORDS = 12
#: At most this many separators are tried as the split of an intersection.
MAX_SPLITS = 6
#: Streets spanning more than this are measured from the node nearest their bounding
#: box's centre instead of their exact 1-centre (they are far too long to place anyway).
_EXACT_CENTRE_SPAN_M = 5000.0
_EARTH_M_PER_DEG = math.pi / 180.0 * 6_371_008.8

Precision = Literal["address", "intersection", "street"]
RefusalReason = Literal[
    "empty", "too_long", "unknown_street", "ambiguous", "too_vague", "no_crossing"
]


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """An address placed on the map (WGS84).

    ``matched`` is what was found, spelled as the map spells it; ``score`` is 100 for
    exact names and the fuzzy score otherwise; ``note`` says what was not used (a house
    number the map lacks).
    """

    lat: float
    lon: float
    precision: Precision
    matched: str
    score: float = 100.0
    note: str = ""


@dataclass(frozen=True)
class Refused:
    """An address that cannot be placed, and why (``description`` is for the citizen)."""

    reason: RefusalReason
    description: str


GeocodeResult = Placed | Refused


# --- names ---------------------------------------------------------------------------------

_PARTICLES = frozenset(
    {"de", "da", "do", "das", "dos", "del", "la", "las", "los", "el", "le", "les", "du",
     "des", "d", "of", "the",
     # Portuguese titles, written out or not ("D. João I", "Dom João I", "João I")
     "dom", "dona"}
)  # fmt: skip
#: Street-type words a name starts with (after expansion).
_PREFIX_TYPES = frozenset(
    {
        # Portuguese
        "rua", "avenida", "travessa", "largo", "praca", "praceta", "alameda", "estrada",
        "calcada", "beco", "viela", "rotunda", "caminho", "urbanizacao",
        # Spanish
        "calle", "privada", "prolongacion", "cerrada", "andador", "retorno", "pasaje",
        "boulevard", "callejon", "calzada", "carretera", "circuito", "peatonal",
        # French
        "rue", "avenue", "chemin", "impasse", "allee", "quai", "route", "promenade",
    }
)  # fmt: skip
#: Street-type words an English name ends with.
_SUFFIX_TYPES = frozenset(
    {"street", "road", "avenue", "lane", "drive", "court", "way", "boulevard", "place",
     "terrace", "crescent", "close", "square", "highway", "parkway", "alley"}
)  # fmt: skip
#: Words whose share among a language's street names detects the extract's language.
_LANGUAGE_WORDS: dict[str, frozenset[str]] = {
    "pt": frozenset({"rua", "travessa", "largo", "praca", "beco", "viela", "calcada",
                     "alameda", "estrada", "praceta", "rotunda"}),
    "es": frozenset({"calle", "privada", "andador", "cerrada", "retorno", "pasaje",
                     "prolongacion", "callejon", "calzada", "carretera", "circuito"}),
    "fr": frozenset({"rue", "boulevard", "avenue", "chemin", "impasse", "allee", "quai",
                     "route"}),
}  # fmt: skip
_ENGLISH_LAST = frozenset({"street", "road", "avenue", "lane", "drive", "court", "way"})

# Abbreviations per language: token -> (as the first word, in the middle, as the last).
# None leaves the token as it is in that position.
_Forms = tuple[str | None, str | None, str | None]


def _all(word: str) -> _Forms:
    return (word, word, word)


def _first(word: str) -> _Forms:
    return (word, None, None)


ABBREVIATIONS: dict[str, dict[str, _Forms]] = {
    "pt": {
        "r": _first("rua"), "av": _all("avenida"), "avd": _all("avenida"),
        "avda": _all("avenida"), "pc": _all("praca"), "pca": _all("praca"),
        "prc": _all("praca"), "pct": _all("praceta"), "pcta": _all("praceta"),
        "tv": _all("travessa"), "trav": _all("travessa"), "tr": _first("travessa"),
        "lg": _all("largo"), "lgo": _all("largo"), "al": _first("alameda"),
        "est": _first("estrada"), "estr": _all("estrada"), "cc": _first("calcada"),
        "calc": _all("calcada"), "bc": _all("beco"), "bco": _all("beco"),
        "rot": _all("rotunda"), "urb": _all("urbanizacao"), "dr": _all("doutor"),
        "dra": _all("doutora"), "eng": _all("engenheiro"), "engo": _all("engenheiro"),
        "prof": _all("professor"), "gen": _all("general"), "gal": _all("general"),
        "cap": _all("capitao"), "cons": _all("conselheiro"), "sta": _all("santa"),
        "sto": _all("santo"), "s": (None, "sao", "sao"), "sr": _all("senhor"),
        "sra": _all("senhora"), "d": (None, "dom", None),
    },
    "es": {
        "c": _first("calle"), "cll": _all("calle"), "av": _all("avenida"),
        "ave": _all("avenida"), "avda": _all("avenida"), "avd": _all("avenida"),
        "blvd": _all("boulevard"), "blv": _all("boulevard"), "bvd": _all("boulevard"),
        "bulevar": _all("boulevard"), "priv": _all("privada"), "pvda": _all("privada"),
        "prol": _all("prolongacion"), "prolong": _all("prolongacion"),
        "cda": _all("cerrada"), "cerr": _all("cerrada"), "and": _first("andador"),
        "ret": _all("retorno"), "pje": _all("pasaje"), "psje": _all("pasaje"),
        "cjon": _all("callejon"), "calz": _all("calzada"), "carr": _all("carretera"),
        "cto": _all("circuito"), "circ": _all("circuito"), "gral": _all("general"),
        "ing": _all("ingeniero"), "lic": _all("licenciado"), "dr": _all("doctor"),
        "prof": _all("profesor"), "profr": _all("profesor"),
        "pdte": _all("presidente"), "pte": ("presidente", "presidente", "poniente"),
        "ote": (None, None, "oriente"), "nte": (None, None, "norte"),
        "sta": _all("santa"), "sto": _all("santo"), "fco": _all("francisco"),
        "ma": (None, "maria", "maria"),
    },
    "fr": {
        "r": _first("rue"), "av": _all("avenue"), "bd": _all("boulevard"),
        "boul": _all("boulevard"), "bld": _all("boulevard"), "pl": _all("place"),
        "ch": _first("chemin"), "imp": _all("impasse"), "all": _first("allee"),
        "rte": _all("route"), "sq": _all("square"), "prom": _all("promenade"),
        "st": _all("saint"), "ste": _all("sainte"), "gen": _all("general"),
        "mal": _all("marechal"), "pdt": _all("president"),
    },
    "en": {
        "st": ("saint", "saint", "street"), "ave": _all("avenue"), "av": _all("avenue"),
        "rd": _all("road"), "blvd": _all("boulevard"), "dr": ("doctor", "doctor", "drive"),
        "ln": _all("lane"), "ct": _all("court"), "pl": _all("place"), "sq": _all("square"),
        "hwy": _all("highway"), "pkwy": _all("parkway"), "ter": _all("terrace"),
        "terr": _all("terrace"), "cres": _all("crescent"), "mt": _all("mount"),
        "ft": _all("fort"),
    },
}  # fmt: skip

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_QUERY_SPLIT = re.compile(r"[^0-9a-z#]+")
_NUMBER_TOKEN = re.compile(r"^\d+[a-z]?$")
#: "1º" (folded "1o") is an ordinal, never a house number; "1a" only at a name's start.
_ORDINAL = re.compile(r"^\d+o$")
_LEADING_ORDINAL = re.compile(r"^\d+[oa]$")
#: A standalone comma part after the street that is a postcode, not a house number.
_POSTCODE_PART = re.compile(r"^\d{5}$")
#: Roman numerals up to 39 ("D. João I", "Papa João XXI"): numbers in a name.
_ROMAN = re.compile(r"^(?=[ivx])x{0,3}(?:ix|iv|v?i{0,3})$")
_HOUSE_NUMBERS = re.compile(r"\d+(?:-?[a-z](?![a-z0-9]))?")
_DIGITS = re.compile(r"\d+")
_PT_POSTCODE = re.compile(r"\b\d{4}\s*-\s*\d{3}\b")
_CP_POSTCODE = re.compile(r"\b(?:cp|c\s*p|zip|codigo postal)\s*\d{4,6}\b")
#: Separators of an intersection that are never part of a name ("S/N" has no name after).
_STRONG_SPLIT = re.compile(r"\s*[/&@][\s/&@]*")
_CORNER = re.compile(
    r"\b(?:on the corner of|corner of|corner|esquina|esq|cruce|cruzamento|interseccion"
    r"|intersection of|intersection|junction of|junction|crossing of)\b"
    r"\.?(?:\s+(?:de|da|do|con|com|with|of|entre|between)\b)?"
)
#: Separators of an intersection that may also be part of a name.
_WEAK_SPLIT = re.compile(r"\b(?:and|y|e|x|con|com|with|at)\b")
#: After a leading number, words making it a date or a name ("1 de Maio", "5 de Mayo").
_DATE_WORDS = frozenset({"de", "del", "da", "do", "das", "dos", "of"})
_ARTICLES = frozenset({"a", "o", "as", "os", "la", "el", "las", "los", "the", "de", "da", "do"})
_NUMBER_MARKERS = frozenset({"#", "no", "n", "nr", "num", "numero", "number", "nro"})
_COUNTRIES = frozenset(
    {"portugal", "mexico", "espana", "spain", "france", "monaco", "brasil", "brazil",
     "usa", "united states", "united kingdom", "uk"}
)  # fmt: skip


def fold(text: str) -> str:
    """Casefolded text without accents (``"Ávila"`` -> ``"avila"``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """The folded words of ``text`` (punctuation and spaces are separators)."""
    return [t for t in _NON_ALNUM.split(fold(text)) if t]


def expand(words: Sequence[str], lang: str) -> list[str]:
    """``words`` with the abbreviations of ``lang`` written out (see ``ABBREVIATIONS``)."""
    table = ABBREVIATIONS.get(lang, {})
    out = []
    last = len(words) - 1
    for i, word in enumerate(words):
        forms = table.get(word)
        if forms is None:
            out.append(word)
            continue
        form = forms[0] if i == 0 else forms[2] if i == last else forms[1]
        out.append(form or word)
    return out


def normalise(text: str, lang: str = "en") -> str:
    """A name as matched: folded words, abbreviations of ``lang`` expanded, one space apart."""
    return " ".join(expand(tokens(text), lang))


def _street_type(words: Sequence[str]) -> str:
    if len(words) > 1 and words[0] in _PREFIX_TYPES:
        return words[0]
    if len(words) > 1 and words[-1] in _SUFFIX_TYPES:
        return words[-1]
    return ""


def key_of(words: Sequence[str]) -> str:
    """A normalised name's key: without its street-type word and particles."""
    core = list(words)
    if len(core) > 1 and core[0] in _PREFIX_TYPES:
        core = core[1:]
    elif len(core) > 1 and core[-1] in _SUFFIX_TYPES:
        core = core[:-1]
    kept = [w for w in core if w not in _PARTICLES]
    return " ".join(kept or core)


def house_numbers(text: str) -> list[str]:
    """The house numbers a ``addr:housenumber`` value gives (``"12-14"`` -> 12 and 14).

    Values that do not start with a digit (``S/N``, ``SN``) give none.
    """
    folded = fold(text).strip()
    if not folded[:1].isdigit():
        return []
    found = [m.replace("-", "") for m in _HOUSE_NUMBERS.findall(folded)]
    return list(dict.fromkeys(found))


def detect_language(names: Iterable[str]) -> str:
    """``pt``, ``es``, ``fr`` or ``en``: whose street-type words the names use most."""
    counts: Counter[str] = Counter()
    for name in names:
        words = tokens(name)
        if not words:
            continue
        for lang, vocab in _LANGUAGE_WORDS.items():
            if words[0] in vocab:
                counts[lang] += 1
        if words[-1] in _ENGLISH_LAST:
            counts["en"] += 1
    if not counts:
        return "en"
    return max(sorted(counts), key=lambda lang: counts[lang])


def config_fingerprint() -> str:
    """A short hash of everything that shapes the cached index."""
    doc = {
        "format": FORMAT,
        "abbreviations": ABBREVIATIONS,
        "particles": sorted(_PARTICLES),
        "prefix_types": sorted(_PREFIX_TYPES),
        "suffix_types": sorted(_SUFFIX_TYPES),
        "languages": {k: sorted(v) for k, v in _LANGUAGE_WORDS.items()},
        "same_street_gap_m": SAME_STREET_GAP_M,
        "exact_centre_span_m": _EXACT_CENTRE_SPAN_M,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


# --- reading the extract -------------------------------------------------------------------

_NAME_TAGS = ("name", "alt_name", "official_name", "old_name", "short_name")
_LOCALITY_TAGS = (
    "addr:city", "addr:suburb", "addr:municipality", "addr:district", "addr:county",
    "addr:state", "addr:province", "is_in:city",
)  # fmt: skip
_NOT_STREETS = frozenset(
    {"proposed", "planned", "abandoned", "razed", "disused", "platform", "elevator",
     "corridor", "no", "bus_stop"}
)  # fmt: skip


@dataclass(frozen=True)
class RawWay:
    """A named highway way: its names, and its nodes' OSM ids and positions."""

    way_id: int
    names: tuple[str, ...]
    node_ids: tuple[int, ...]
    lons: tuple[float, ...]
    lats: tuple[float, ...]


@dataclass(frozen=True)
class RawAddress:
    """An address point: ``addr:street``, ``addr:housenumber`` and a position."""

    street: str
    housenumber: str
    lon: float
    lat: float
    osm_id: str


@dataclass
class RawExtract:
    """What ``read_extract`` collects."""

    ways: list[RawWay] = field(default_factory=list)
    addresses: list[RawAddress] = field(default_factory=list)
    localities: set[str] = field(default_factory=set)
    postcodes: set[str] = field(default_factory=set)


def _split_values(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def read_extract(src: Path) -> RawExtract:
    """Named streets, address points, locality names and postcodes of the extract ``src``."""
    import osmium  # only needed while building

    out = RawExtract()
    keys = ("highway", "addr:housenumber", "addr:postcode", "place", "boundary", *_LOCALITY_TAGS)
    processor = (
        osmium.FileProcessor(str(src)).with_locations().with_filter(osmium.filter.KeyFilter(*keys))
    )
    for obj in processor:
        tags = obj.tags
        for key in _LOCALITY_TAGS:
            out.localities.update(_split_values(tags.get(key)))
        out.postcodes.update(_split_values(tags.get("addr:postcode")))
        name = tags.get("name")
        if name and ("place" in tags or tags.get("boundary") == "administrative"):
            out.localities.add(name)
        if isinstance(obj, osmium.osm.Relation):
            continue
        is_way = isinstance(obj, osmium.osm.Way)
        try:
            if isinstance(obj, osmium.osm.Way):
                refs = [(n.ref, n.lon, n.lat) for n in obj.nodes]
            elif isinstance(obj, osmium.osm.Node):
                refs = [(obj.id, obj.location.lon, obj.location.lat)]
            else:
                continue
        except osmium.InvalidLocationError:
            continue
        if not refs:
            continue
        highway = tags.get("highway")
        if is_way and highway is not None and highway not in _NOT_STREETS:
            names = [v for key in _NAME_TAGS for v in _split_values(tags.get(key))]
            if names:
                ids, lons, lats = zip(*refs, strict=True)
                out.ways.append(RawWay(obj.id, tuple(dict.fromkeys(names)), ids, lons, lats))
        street, number = tags.get("addr:street"), tags.get("addr:housenumber")
        if street and number:
            points = refs[:-1] if len(refs) > 2 and refs[0][0] == refs[-1][0] else refs
            lon = float(np.mean([p[1] for p in points]))
            lat = float(np.mean([p[2] for p in points]))
            kind = "w" if is_way else "n"
            out.addresses.append(RawAddress(street, number, lon, lat, f"{kind}{obj.id}"))
    return out


# --- building the index --------------------------------------------------------------------


def _project(
    lon: NDArray[np.float64], lat: NDArray[np.float64], lon0: float, lat0: float
) -> NDArray[np.float64]:
    x = (lon - lon0) * _EARTH_M_PER_DEG * math.cos(math.radians(lat0))
    y = (lat - lat0) * _EARTH_M_PER_DEG
    return np.column_stack([x, y])


def one_centre(nodes: NDArray[np.float64], candidates: NDArray[np.float64]) -> tuple[int, float]:
    """The candidate whose farthest node is nearest, and that distance (m).

    Over ``_EXACT_CENTRE_SPAN_M`` of bounding-box diagonal, the candidate nearest the
    box's centre instead (an upper bound of at most twice the exact extent).
    """
    lo, hi = nodes.min(axis=0), nodes.max(axis=0)
    if float(np.hypot(*(hi - lo))) > _EXACT_CENTRE_SPAN_M:
        centre = (lo + hi) / 2
        best = int(np.argmin(np.hypot(*(candidates - centre).T)))
        return best, float(np.hypot(*(nodes - candidates[best]).T).max())
    chunk = max(1, 2_000_000 // max(1, len(nodes)))
    best, best_extent = 0, math.inf
    for start in range(0, len(candidates), chunk):
        part = candidates[start : start + chunk]
        diff = part[:, None, :] - nodes[None, :, :]
        extent = np.sqrt((diff**2).sum(axis=2)).max(axis=1)
        i = int(np.argmin(extent))
        if float(extent[i]) < best_extent:
            best, best_extent = start + i, float(extent[i])
    return best, best_extent


def _clean_address_street(street: str, numbers: Sequence[str]) -> str:
    """``addr:street`` without what some mappers append: ", 301", " 110", ", S/N"."""
    head = street.split(",")[0].strip()
    words = head.split()
    if len(words) > 1 and numbers and fold(words[-1]) in numbers:
        head = " ".join(words[:-1])
    return head or street


def _text(values: Sequence[str]) -> NDArray[np.str_]:
    """Strings as one newline-joined array (fixed-width arrays pad every row to the longest)."""
    return np.array("\n".join(v.replace("\n", " ") for v in values))


def _lines(array: NDArray[Any]) -> list[str]:
    text = str(array)
    return text.split("\n") if text else []


def build_arrays(raw: RawExtract, *, source: str = "", sha256: str = "") -> dict[str, NDArray[Any]]:
    """Every array of the cached index (see the module docstring)."""
    lang = detect_language(n for w in raw.ways for n in w.names[:1])
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    ways_of: dict[str, list[int]] = defaultdict(list)
    for i, way in enumerate(raw.ways):
        for name in way.names:
            full = normalise(name, lang)
            if full:
                spellings[full][name] += 1
                if not ways_of[full] or ways_of[full][-1] != i:
                    ways_of[full].append(i)
    address_rows: list[tuple[str, str, RawAddress]] = []
    for addr in raw.addresses:
        numbers = house_numbers(addr.housenumber)
        street = _clean_address_street(addr.street, numbers)
        full = normalise(street, lang)
        if not full or not numbers:
            continue
        spellings[full][street] += 1
        address_rows.extend((full, n, addr) for n in numbers)

    names = sorted(spellings)
    index = {n: i for i, n in enumerate(names)}
    all_lon = [lon for w in raw.ways for lon in w.lons] or [a.lon for a in raw.addresses] or [0.0]
    all_lat = [lat for w in raw.ways for lat in w.lats] or [a.lat for a in raw.addresses] or [0.0]
    lon0 = float((min(all_lon) + max(all_lon)) / 2)
    lat0 = float((min(all_lat) + max(all_lat)) / 2)

    street_rows: list[tuple[int, NDArray[np.int64], NDArray[np.float64], NDArray[np.float64],
                            float, float, float, int]] = []  # fmt: skip
    for full in names:
        way_ids = ways_of.get(full)
        if not way_ids:
            continue
        for group in _cluster_ways([raw.ways[i] for i in way_ids], lon0, lat0):
            street_rows.append((index[full], *_street_geometry(group, lon0, lat0)))
    street_rows.sort(key=lambda r: (r[0], int(r[1].min())))

    offsets = np.zeros(len(street_rows) + 1, dtype=np.int64)
    for i, row in enumerate(street_rows):
        offsets[i + 1] = offsets[i] + len(row[1])
    address_rows.sort(key=lambda r: (index[r[0]], r[1], r[2].osm_id))
    meta = {
        "format": FORMAT,
        "config": config_fingerprint(),
        "source": source,
        "sha256": sha256,
        "lang": lang,
        "lon0": lon0,
        "lat0": lat0,
        "attribution": ATTRIBUTION,
        "streets": len(street_rows),
        "names": len(names),
        "addresses": len(address_rows),
    }
    empty_i = np.zeros(0, dtype=np.int64)
    empty_f = np.zeros(0, dtype=np.float64)
    return {
        "meta_json": np.array(json.dumps(meta, sort_keys=True)),
        "name_full": _text(names),
        "name_display": _text([spellings[n].most_common(1)[0][0] for n in names]),
        "street_name": np.array([r[0] for r in street_rows], dtype=np.int32),
        "street_offsets": offsets,
        "node_id": np.concatenate([r[1] for r in street_rows]) if street_rows else empty_i,
        "node_lon": np.concatenate([r[2] for r in street_rows]) if street_rows else empty_f,
        "node_lat": np.concatenate([r[3] for r in street_rows]) if street_rows else empty_f,
        "street_mid_lon": np.array([r[4] for r in street_rows], dtype=np.float64),
        "street_mid_lat": np.array([r[5] for r in street_rows], dtype=np.float64),
        "street_extent_m": np.array([r[6] for r in street_rows], dtype=np.float64),
        "street_ways": np.array([r[7] for r in street_rows], dtype=np.int32),
        "addr_name": np.array([index[r[0]] for r in address_rows], dtype=np.int32),
        "addr_number": _text([r[1] for r in address_rows]),
        "addr_housenumber": _text([r[2].housenumber for r in address_rows]),
        "addr_lon": np.array([r[2].lon for r in address_rows], dtype=np.float64),
        "addr_lat": np.array([r[2].lat for r in address_rows], dtype=np.float64),
        "addr_osm_id": _text([r[2].osm_id for r in address_rows]),
        "locality": _text(sorted({" ".join(tokens(x)) for x in raw.localities} - {""})),
        "postcode": _text(sorted({" ".join(tokens(x)) for x in raw.postcodes} - {""})),
    }


def _cluster_ways(ways: list[RawWay], lon0: float, lat0: float) -> list[list[RawWay]]:
    """Ways of one name, grouped into streets (shared node or within the gap)."""
    if len(ways) == 1:
        return [ways]
    owner = np.concatenate([np.full(len(w.node_ids), i) for i, w in enumerate(ways)])
    lon = np.concatenate([np.asarray(w.lons) for w in ways])
    lat = np.concatenate([np.asarray(w.lats) for w in ways])
    pairs = cKDTree(_project(lon, lat, lon0, lat0)).query_pairs(
        SAME_STREET_GAP_M, output_type="ndarray"
    )
    links: Any = np.column_stack([owner[pairs[:, 0]], owner[pairs[:, 1]]]) if len(pairs) else []
    return [[ways[i] for i in group] for group in _components(len(ways), links)]


def _components(n: int, links: Any) -> list[list[int]]:
    """Items ``0..n-1`` grouped by the ``(i, j)`` pairs linking them (connected components).

    Each group lists its items in order, and the groups come in the order of their first
    item.
    """
    pairs = np.asarray(links, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(label.tolist()):
        groups.setdefault(g, []).append(i)
    return list(groups.values())


def _street_geometry(
    ways: list[RawWay], lon0: float, lat0: float
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], float, float, float, int]:
    """Unique nodes (sorted by id), middle point, extent and way count of one street."""
    ids = np.concatenate([np.asarray(w.node_ids, dtype=np.int64) for w in ways])
    lon = np.concatenate([np.asarray(w.lons, dtype=np.float64) for w in ways])
    lat = np.concatenate([np.asarray(w.lats, dtype=np.float64) for w in ways])
    uniq, first = np.unique(ids, return_index=True)
    u_lon, u_lat = lon[first], lat[first]
    mid_lon = np.concatenate([(np.asarray(w.lons[:-1]) + np.asarray(w.lons[1:])) / 2 for w in ways])
    mid_lat = np.concatenate([(np.asarray(w.lats[:-1]) + np.asarray(w.lats[1:])) / 2 for w in ways])
    cand_lon = np.concatenate([u_lon, mid_lon])
    cand_lat = np.concatenate([u_lat, mid_lat])
    best, extent = one_centre(
        _project(u_lon, u_lat, lon0, lat0), _project(cand_lon, cand_lat, lon0, lat0)
    )
    return uniq, u_lon, u_lat, float(cand_lon[best]), float(cand_lat[best]), extent, len(ways)


# --- the runtime index ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Match:
    """Names matched by a street text: tier 3 exact, 2 exact key, 1 fuzzy."""

    tier: int
    score: float
    names: tuple[int, ...]
    #: For an exact name, also the names sharing its key (tried for crossings when the
    #: exact names do not meet: "Rua Fernandes Tomás" for "Rua de Fernandes Tomás").
    wider: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Reading:
    """One way of reading a street text: its words, a house number, what was dropped."""

    words: tuple[str, ...]
    number: str | None
    dropped: int


class Geocoder:
    """Address lookups over the cached index of one extract (see the module docstring)."""

    def __init__(
        self, arrays: Mapping[str, NDArray[Any]], *, localities: Iterable[str] = ()
    ) -> None:
        meta = json.loads(str(arrays["meta_json"]))
        self.meta: dict[str, Any] = meta
        self.lang: str = meta["lang"]
        self._lon0, self._lat0 = float(meta["lon0"]), float(meta["lat0"])
        self.names: list[str] = _lines(arrays["name_full"])
        self.display: list[str] = _lines(arrays["name_display"])
        self._words = [tuple(n.split()) for n in self.names]
        self._keys = [key_of(w) for w in self._words]
        self._types = [_street_type(w) for w in self._words]
        self._by_full = {n: i for i, n in enumerate(self.names)}
        self._by_key: dict[str, list[int]] = defaultdict(list)
        for i, k in enumerate(self._keys):
            self._by_key[k].append(i)
        self._fuzzy_keys = [k for k in self._by_key if len(k) >= MIN_FUZZY_KEY_CHARS]
        self._key_digits = {k: _name_numbers(k) for k in self._fuzzy_keys}

        self._street_name = arrays["street_name"].astype(np.int64)
        self._offsets = arrays["street_offsets"]
        self._node_id = arrays["node_id"]
        self._node_lon = arrays["node_lon"]
        self._node_lat = arrays["node_lat"]
        self._node_xy = self._xy(self._node_lon, self._node_lat)
        self._mid_lon = arrays["street_mid_lon"]
        self._mid_lat = arrays["street_mid_lat"]
        self._extent = arrays["street_extent_m"]
        self._streets_of: dict[int, list[int]] = defaultdict(list)
        for s, n in enumerate(self._street_name.tolist()):
            self._streets_of[n].append(s)
        n_streets = len(self._street_name)
        if n_streets:
            starts = self._offsets[:-1]
            self._bbox = np.column_stack(
                [
                    np.minimum.reduceat(self._node_xy[:, 0], starts),
                    np.minimum.reduceat(self._node_xy[:, 1], starts),
                    np.maximum.reduceat(self._node_xy[:, 0], starts),
                    np.maximum.reduceat(self._node_xy[:, 1], starts),
                ]
            )
        else:
            self._bbox = np.zeros((0, 4))
        self._trees: dict[int, cKDTree] = {}

        self._addr_name = arrays["addr_name"].astype(np.int64)
        self._addr_number: list[str] = _lines(arrays["addr_number"])
        self._addr_lon = arrays["addr_lon"]
        self._addr_lat = arrays["addr_lat"]
        self._addr_xy = self._xy(self._addr_lon, self._addr_lat)
        self._addresses_of: dict[tuple[str, str], list[int]] = defaultdict(list)
        for a, (n, num) in enumerate(zip(self._addr_name.tolist(), self._addr_number, strict=True)):
            self._addresses_of[(self._keys[n], num)].append(a)

        self._localities = set(_lines(arrays["locality"])) | set(_COUNTRIES)
        self._localities |= {" ".join(tokens(x)) for x in localities} - {""}
        self._postcodes = set(_lines(arrays["postcode"]))
        self._memo: dict[tuple[str, ...], _Match | None] = {}
        self._memo_lock = threading.Lock()

    # --- sizes -----------------------------------------------------------------------------

    @property
    def street_count(self) -> int:
        """How many streets (one name in one place) the index has."""
        return len(self._street_name)

    @property
    def name_count(self) -> int:
        """How many distinct normalised names (streets' and addresses')."""
        return len(self.names)

    @property
    def address_count(self) -> int:
        """How many (address point, house number) rows."""
        return len(self._addr_name)

    def streets_named(self, name: str) -> list[int]:
        """The streets whose normalised name is ``normalise(name)``."""
        i = self._by_full.get(normalise(name, self.lang))
        return [] if i is None else list(self._streets_of.get(i, []))

    def street_nodes(
        self, street: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """OSM ids, longitudes and latitudes of a street's nodes."""
        sl = self._slice(street)
        return self._node_id[sl], self._node_lon[sl], self._node_lat[sl]

    def street_extent_m(self, street: int) -> float:
        """How far a street's farthest node is from its middle (m)."""
        return float(self._extent[street])

    def street_display(self, street: int) -> str:
        """A street's name as the map spells it."""
        return self.display[int(self._street_name[street])]

    def addresses(self) -> Iterator[tuple[str, str, float, float]]:
        """Every address row as (street as mapped, house number, lat, lon)."""
        for a in range(self.address_count):
            yield (
                self.display[int(self._addr_name[a])],
                self._addr_number[a],
                float(self._addr_lat[a]),
                float(self._addr_lon[a]),
            )

    # --- geometry helpers ------------------------------------------------------------------

    def _xy(self, lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.float64]:
        return _project(np.asarray(lon), np.asarray(lat), self._lon0, self._lat0)

    def _slice(self, street: int) -> slice:
        return slice(int(self._offsets[street]), int(self._offsets[street + 1]))

    def _tree(self, street: int) -> cKDTree:
        tree = self._trees.get(street)
        if tree is None:
            tree = cKDTree(self._node_xy[self._slice(street)])
            self._trees[street] = tree
        return tree

    def _bbox_gap(self, a: int, b: int) -> float:
        ax0, ay0, ax1, ay1 = self._bbox[a]
        bx0, by0, bx1, by1 = self._bbox[b]
        dx = max(0.0, float(bx0 - ax1), float(ax0 - bx1))
        dy = max(0.0, float(by0 - ay1), float(ay0 - by1))
        return math.hypot(dx, dy)

    def _near(self, a: int, b: int, limit_m: float) -> bool:
        if self._bbox_gap(a, b) > limit_m:
            return False
        dist, _ = self._tree(b).query(self._node_xy[self._slice(a)], distance_upper_bound=limit_m)
        return bool(np.isfinite(dist).any())

    def _to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """WGS84 (lat, lon) of a projected point."""
        lon = self._lon0 + x / (_EARTH_M_PER_DEG * math.cos(math.radians(self._lat0)))
        return self._lat0 + y / _EARTH_M_PER_DEG, lon

    # --- name matching ---------------------------------------------------------------------

    def match(self, text: str) -> _Match | None:
        """The names a street text matches, best tier first (None: no street matches)."""
        return self._resolve(tuple(tokens(text)))

    def _resolve(self, words: tuple[str, ...]) -> _Match | None:
        with self._memo_lock:
            if words in self._memo:
                return self._memo[words]
        found = self._resolve_uncached(words)
        with self._memo_lock:
            if len(self._memo) > 10_000:
                self._memo.clear()
            self._memo[words] = found
        return found

    def _resolve_uncached(self, words: tuple[str, ...]) -> _Match | None:
        expanded = expand(words, self.lang)
        if not expanded:
            return None
        full = " ".join(expanded)
        key, kind = key_of(expanded), _street_type(expanded)
        same_key = self._by_key.get(key, [])
        typed = tuple(i for i in same_key if kind and self._types[i] == kind) or tuple(same_key)
        exact = self._by_full.get(full)
        if exact is not None:
            return _Match(3, 100.0, (exact,), tuple(sorted({exact, *typed})))
        if same_key:
            return _Match(2, 100.0, typed, typed)
        if len(key) < MIN_FUZZY_KEY_CHARS or not self._fuzzy_keys:
            return None
        digits = _name_numbers(key)
        scores: dict[str, float] = {}
        for scorer in (fuzz.ratio, fuzz.token_sort_ratio):
            hits = process.extract(
                key, self._fuzzy_keys, scorer=scorer, score_cutoff=MIN_FUZZY_SCORE, limit=25
            )
            for choice, score, _ in hits:
                if self._key_digits[choice] == digits:
                    scores[choice] = max(scores.get(choice, 0.0), float(score))
        if not scores:
            return None
        best = max(scores.values())
        keys = sorted(k for k, s in scores.items() if s >= best - 1e-9)
        candidates = [i for k in keys for i in self._by_key[k]]
        fuzzy_typed = tuple(i for i in candidates if kind and self._types[i] == kind)
        if kind and not fuzzy_typed and best < MIN_FUZZY_OTHER_TYPE_SCORE:
            return None  # "Praça D. João I" is no "Avenida de João XXI"
        names = fuzzy_typed or tuple(candidates)
        return _Match(1, best, names, names)

    # --- reading the query -----------------------------------------------------------------

    def _is_locality(self, words: Sequence[str]) -> bool:
        return " ".join(words) in self._localities

    def _drop_postcodes(self, text: str) -> str:
        text = _PT_POSTCODE.sub(" ", text)
        return _CP_POSTCODE.sub(" ", text)

    def _readings(self, text: str) -> list[_Reading]:
        """The ways of reading a (folded) address text as a street and a house number."""
        parts = [p for p in re.split(r"[,;\n]+", self._drop_postcodes(text)) if p.strip()]
        number: str | None = None
        streets: list[list[str]] = []
        places: list[list[str]] = []
        for part in parts:
            words = [w for w in _QUERY_SPLIT.split(part.replace("#", " # ")) if w]
            words = [w for w in words if w not in self._postcodes or not w.isdigit()]
            if not words:
                continue
            bare = [w for w in words if w not in _NUMBER_MARKERS]
            if len(bare) == 1 and _is_house_number(bare[0]):
                # After the street, five digits alone are a postcode ("..., 20290, Ags.").
                if not (streets and _POSTCODE_PART.match(bare[0]) and bare == words):
                    number = number or bare[0]
            elif self._is_locality([w for w in words if w != "#"]):
                places.append(words)
            else:
                streets.append(words)
        out: list[_Reading] = []
        for words in streets or places:
            out.extend(self._street_readings(words, number))
        return out

    def _street_readings(self, words: list[str], number: str | None) -> Iterator[_Reading]:
        # A marked number ("#12", "no. 12", "nº 12", "n.º 12"): what follows is not the street.
        for i, w in enumerate(words):
            if w in _NUMBER_MARKERS and i > 0:
                j = i + 1
                if w == "n" and j < len(words) and words[j] == "o":
                    j += 1
                if j < len(words) and _is_house_number(words[j]):
                    head = [x for x in words[:i] if x != "#"]
                    if head:
                        yield _Reading(tuple(head), words[j], len(words) - j - 1)
                        return
        words = [w for w in words if w != "#"]
        bases = [(words, 0)]
        if len(words) > 1 and words[0] in _ARTICLES:  # "com a Rua X", "y la Calle X"
            bases.append((words[1:], 1))
        trimmed = list(words)
        while len(trimmed) > 1:
            for size in (3, 2, 1):
                if len(trimmed) > size and self._is_locality(trimmed[-size:]):
                    trimmed = trimmed[:-size]
                    break
            else:
                break
            bases.append((list(trimmed), len(words) - len(trimmed)))
        # A number in the street part is the house number, before one in a part of its
        # own ("Calle Cisne 102, 20001": 20001 is a postcode).
        for base, dropped in list(bases):
            yield _Reading(tuple(base), number, dropped)
            if len(base) > 1 and _is_house_number(base[-1]):
                yield _Reading(tuple(base[:-1]), base[-1], dropped)
            # Not "1º de Maio", "1a. Nayarit", "5 de Outubro": ordinals and dates.
            if (
                len(base) > 1
                and _is_house_number(base[0])
                and not _LEADING_ORDINAL.match(base[0])
                and base[1] not in _DATE_WORDS
            ):
                yield _Reading(tuple(base[1:]), base[0], dropped)

    def _best_reading(self, text: str) -> tuple[_Reading, _Match] | None:
        best: tuple[_Reading, _Match] | None = None
        best_rank: tuple[int, float, int, int] | None = None
        for reading in self._readings(text):
            if not reading.words or len(reading.words) > MAX_NAME_WORDS:
                continue
            found = self._resolve(reading.words)
            if found is None:
                continue
            # On a tie the whole text is a name: "Estrada Municipal 513-3" is no number 3.
            rank = (found.tier, found.score, -reading.dropped, reading.number is None)
            if best_rank is None or rank > best_rank:
                best, best_rank = (reading, found), rank
        return best

    def _first_street_text(self, text: str) -> str:
        """The street part of a text that matched nothing, for the refusal."""
        readings = self._readings(text)
        numbered = [r for r in readings if r.number is not None and r.words]
        words = (numbered or readings)[0].words if readings else tuple(tokens(text))
        return " ".join(words)

    # --- answering -------------------------------------------------------------------------

    def geocode(self, text: str, *, max_street_radius_m: float = 150.0) -> GeocodeResult:
        """Place an address string, or say why it cannot be placed (see the module docstring)."""
        raw = " ".join(text.split())
        if not raw:
            return Refused("empty", "the address is empty")
        if len(raw) > MAX_QUERY_CHARS:
            return Refused("too_long", f"the address is longer than {MAX_QUERY_CHARS} characters")
        q = fold(raw)
        parts = _STRONG_SPLIT.split(q)  # "/", "&", "@" are never part of a name
        if len(parts) == 2 and all(_has_name(p) for p in parts):
            return self._crossing([(parts[0], parts[1])], strong=True) or self._unknown(q)
        single = self._best_reading(q)
        corner = self._corner_splits(q)
        if single is not None and single[1].tier == 3 and (
            corner is None or _corner_word(q) in single[0].words
        ):  # a name, even "Rua da Esquina"; but "Calle A, esq. Calle B" is a corner
            return self._place_street(single[0], single[1], max_street_radius_m)
        if corner is not None:
            return self._crossing(corner, strong=True) or self._unknown(q)
        if single is not None and single[1].tier >= 2:
            return self._place_street(single[0], single[1], max_street_radius_m)
        # " y ", " e ", " and ", " x " may be part of a name: an intersection only when
        # both sides are streets, matched at least as well as the whole text.
        weak = [(q[: m.start()], q[m.end() :]) for m in _WEAK_SPLIT.finditer(q)]
        weak = [(a, b) for a, b in weak if _has_name(a) and _has_name(b)][:MAX_SPLITS]
        crossing = self._crossing(weak, strong=False, at_least=single[1].tier if single else 0)
        if crossing is not None:
            return crossing
        if single is not None:
            return self._place_street(single[0], single[1], max_street_radius_m)
        return self._unknown(q)

    def _unknown(self, q: str) -> Refused:
        return Refused(
            "unknown_street", f"no street on the map matches {self._first_street_text(q)!r}"
        )

    def _corner_splits(self, q: str) -> list[tuple[str, str]] | None:
        """Intersection readings marked by a corner word ("corner of", "esquina")."""
        corner = _CORNER.search(q)
        if corner is None:
            return None
        before, after = q[: corner.start()], q[corner.end() :]
        if _has_name(before) and _has_name(after):
            return [(before, after)]
        rest = after if not _has_name(before) else before
        splits = [(rest[: m.start()], rest[m.end() :]) for m in _WEAK_SPLIT.finditer(rest)]
        splits = [(a, b) for a, b in splits if _has_name(a) and _has_name(b)][:MAX_SPLITS]
        return splits or None

    def _crossing(
        self, splits: list[tuple[str, str]], *, strong: bool, at_least: int = 0
    ) -> GeocodeResult | None:
        """The intersection of the best split whose sides are both streets.

        None when no split has two streets (or, for separators that may be part of a
        name, when the best is matched worse than ``at_least``); a refusal naming the
        unknown side when one side of a split is a street and the other is not.
        """
        best: tuple[tuple[int, float], _Match, _Match] | None = None
        unknown: str | None = None
        for left, right in splits:
            a, b = self._best_reading(left), self._best_reading(right)
            if a is None or b is None:
                if unknown is None and (strong or a is not None or b is not None):
                    unknown = self._first_street_text(left if a is None else right)
                continue
            rank = (min(a[1].tier, b[1].tier), a[1].score + b[1].score)
            if best is None or rank > best[0]:
                best = (rank, a[1], b[1])
        if best is None:
            if unknown is None or (not strong and at_least > 0):
                return None
            return Refused("unknown_street", f"no street on the map matches {unknown!r}")
        if best[0][0] < at_least:
            return None
        return self._place_crossing(best[1], best[2])

    def _label(self, match: _Match) -> str:
        labels = list(dict.fromkeys(self.display[i] for i in match.names))
        return labels[0] if len(labels) == 1 else " or ".join(labels[:3])

    def _streets(self, match: _Match, *, wider: bool = False) -> list[int]:
        """The streets of the matched names (or of ``match.wider``).

        For names known only from addresses ("Cisne"), the streets sharing their key
        ("Calle Cisne").
        """
        names = match.wider if wider and match.wider else match.names
        found = {s for n in names for s in self._streets_of.get(n, [])}
        if not found:
            keys = {self._keys[n] for n in match.names}
            found = {s for k in keys for n in self._by_key[k] for s in self._streets_of.get(n, [])}
        return sorted(found)

    def _place_crossing(self, a: _Match, b: _Match) -> GeocodeResult:
        label_a, label_b = self._label(a), self._label(b)
        if set(a.names) & set(b.names):
            return Refused("no_crossing", f"{label_a!r} and {label_b!r} are the same street")
        streets_a, streets_b = self._streets(a), self._streets(b)
        for streets, label in ((streets_a, label_a), (streets_b, label_b)):
            if not streets:
                return Refused("unknown_street", f"no street named {label!r} on the map")
        points = self._meeting_points(streets_a, streets_b)
        wide_a, wide_b = self._streets(a, wider=True), self._streets(b, wider=True)
        if not points and (wide_a != streets_a or wide_b != streets_b):
            points = self._meeting_points(wide_a, wide_b)
        if not points:
            if set(wide_a) & set(wide_b):
                return Refused("no_crossing", f"{label_a!r} and {label_b!r} are the same street")
            return Refused("no_crossing", f"{label_a!r} and {label_b!r} do not meet on the map")
        clusters = _cluster_points(np.array([p[:2] for p in points]), SAME_CROSSING_M)
        if len(clusters) > 1:
            return Refused(
                "ambiguous",
                f"{label_a!r} and {label_b!r} meet in {len(clusters)} places on the map: "
                "give a house number on the map instead",
            )
        members = [points[i] for i in clusters[0]]
        shared = [p for p in members if p[2]] or members
        centre = np.mean([p[:2] for p in shared], axis=0)
        x, y, _, sa, sb = min(shared, key=lambda p: math.hypot(p[0] - centre[0], p[1] - centre[1]))
        lat, lon = self._to_latlon(x, y)
        matched = f"{self.street_display(sa)} / {self.street_display(sb)}"
        return Placed(lat, lon, "intersection", matched, min(a.score, b.score))

    def _meeting_points(
        self, streets_a: list[int], streets_b: list[int]
    ) -> list[tuple[float, float, bool, int, int]]:
        """Where streets of A meet streets of B: (x, y, at a shared node, street A, B)."""
        points: list[tuple[float, float, bool, int, int]] = []
        for sa in streets_a:
            xy_a = self._node_xy[self._slice(sa)]
            for sb in streets_b:
                if sa == sb or self._bbox_gap(sa, sb) > NEAR_CROSSING_M:
                    continue
                ids_a, ids_b = self._node_id[self._slice(sa)], self._node_id[self._slice(sb)]
                shared, ia, _ = np.intersect1d(ids_a, ids_b, return_indices=True)
                if len(shared):
                    points.extend((float(x), float(y), True, sa, sb) for x, y in xy_a[ia])
                    continue
                dist, j = self._tree(sb).query(xy_a)
                i = int(np.argmin(dist))
                if float(dist[i]) <= NEAR_CROSSING_M:
                    p = (xy_a[i] + self._node_xy[self._slice(sb)][j[i]]) / 2
                    points.append((float(p[0]), float(p[1]), False, sa, sb))
        return points

    def _groups(self, streets: list[int]) -> list[list[int]]:
        """Streets grouped by place: within ``SAME_STREET_GAP_M`` of each other."""
        n = len(streets)
        near = [
            (i, j)
            for i in range(n)
            for j in range(i + 1, n)
            if self._near(streets[i], streets[j], SAME_STREET_GAP_M)
        ]
        return [[streets[i] for i in g] for g in _components(n, near)]

    def _address_hits(self, match: _Match, number: str, streets: list[int]) -> list[int]:
        """The address points of ``number`` on the matched street(s).

        Addresses are found by key, but only those whose street is a matched name, or
        has the same street type, or none ("Cisne 102" for "Calle Cisne"): "Privada
        Arqueros 509" is not "Avenida Arqueros 509". With the matched streets on the
        map, only the points near them count, else those naming a matched street
        exactly (a point mapped away from its street); none is a number the map lacks.
        """
        keys = {self._keys[n] for n in match.names}
        names = set(match.names)
        kinds = {self._types[n] for n in match.names} | {""}
        hits = sorted(
            a
            for k in keys
            for a in self._addresses_of.get((k, number), [])
            if int(self._addr_name[a]) in names or self._types[int(self._addr_name[a])] in kinds
        )
        if not hits or not streets:
            return hits
        near = []
        for a in hits:
            xy = self._addr_xy[a]
            for s in streets:
                x0, y0, x1, y1 = self._bbox[s]
                if x0 - ADDRESS_NEAR_STREET_M <= xy[0] <= x1 + ADDRESS_NEAR_STREET_M and (
                    y0 - ADDRESS_NEAR_STREET_M <= xy[1] <= y1 + ADDRESS_NEAR_STREET_M
                ):
                    dist, _ = self._tree(s).query(xy)
                    if float(dist) <= ADDRESS_NEAR_STREET_M:
                        near.append(a)
                        break
        # Far from every matched street, only an address naming the street exactly.
        return near or [a for a in hits if int(self._addr_name[a]) in names]

    def _place_street(self, reading: _Reading, match: _Match, radius_m: float) -> GeocodeResult:
        label = self._label(match)
        streets = self._streets(match)
        number = reading.number
        if number is not None:
            hits = self._address_hits(match, number, streets)
            if hits:
                clusters = _cluster_points(self._addr_xy[hits], SAME_ADDRESS_M)
                if len(clusters) > 1:
                    return Refused(
                        "ambiguous",
                        f"{label} {number} is in {len(clusters)} places on the map: "
                        "give a cross street",
                    )
                a = hits[clusters[0][0]]
                named = int(self._addr_name[a])
                street = self.display[named] if self._streets_of.get(named) else label
                if not self._streets_of.get(named) and streets:  # "Cisne" -> "Calle Cisne"
                    near = {int(self._street_name[s]) for s in streets}
                    street = self.display[near.pop()] if len(near) == 1 else label
                matched = f"{street} {number}"
                return Placed(
                    float(self._addr_lat[a]), float(self._addr_lon[a]), "address", matched,
                    match.score,
                )  # fmt: skip
        if not streets:
            what = f"house number {number} of {label!r}" if number else repr(label)
            return Refused("unknown_street", f"{what} is not on the map")
        groups = self._groups(streets)
        missing = f"house number {number} is not on the map; " if number else ""
        if len(groups) > 1:
            return Refused(
                "ambiguous",
                f"{missing}{len(groups)} different streets match {label!r}: "
                "give a house number on the map or a cross street",
            )
        lat, lon, extent = self._middle(groups[0])
        if extent > radius_m:
            return Refused(
                "too_vague",
                f"{missing}{label!r} is too long to place a crew ({extent:.0f} m from its "
                f"middle to its farthest end, at most {radius_m:g} m): give a house number "
                "on the map or a cross street",
            )
        note = (
            f"house number {number} is not on the map; placed at the street's middle"
            if number
            else ""
        )
        return Placed(lat, lon, "street", label, match.score, note)

    def _middle(self, group: list[int]) -> tuple[float, float, float]:
        """(lat, lon, extent) of one street, or of adjacent streets taken together."""
        if len(group) == 1:
            s = group[0]
            return float(self._mid_lat[s]), float(self._mid_lon[s]), float(self._extent[s])
        nodes = np.concatenate([self._node_xy[self._slice(s)] for s in group])
        mids = self._xy(self._mid_lon[group], self._mid_lat[group])
        candidates = np.concatenate([nodes, mids])
        best, extent = one_centre(nodes, candidates)
        lat, lon = self._to_latlon(float(candidates[best, 0]), float(candidates[best, 1]))
        return lat, lon, extent


def _is_house_number(word: str) -> bool:
    return _NUMBER_TOKEN.match(word) is not None and _ORDINAL.match(word) is None


def _name_numbers(key: str) -> list[str]:
    """The numbers of a key, Arabic and Roman ("joao xxi" -> ["xxi"])."""
    return _DIGITS.findall(key) + [w for w in key.split() if _ROMAN.match(w)]


def _corner_word(q: str) -> str:
    """The first word of the corner marker in ``q`` ("esq" of "esq. con"), or ""."""
    found = _CORNER.search(q)
    words = tokens(found.group(0)) if found else []
    return words[0] if words else ""


def _has_name(text: str) -> bool:
    return sum(c.isalpha() for c in text) >= 2


def _cluster_points(xy: NDArray[np.float64], gap_m: float) -> list[list[int]]:
    """Indices of points grouped by single linkage within ``gap_m``, in first-index order."""
    return _components(len(xy), cKDTree(xy).query_pairs(gap_m, output_type="ndarray"))


# --- the cache -----------------------------------------------------------------------------

_memo: dict[tuple[Any, ...], Geocoder] = {}
_memo_lock = threading.Lock()


def cache_path(osm_path: Path, cache_dir: Path) -> Path:
    """Where the address index of ``osm_path`` is cached."""
    return cache_dir / sha256_of(osm_path) / f"addresses-v{FORMAT}-{config_fingerprint()}.npz"


def build_index(osm_path: Path, cache_dir: Path, *, force: bool = False) -> Path:
    """The cached index of ``osm_path``, built when missing (or ``force``); its path."""
    if not osm_path.is_file():
        raise GeoError(f"OSM extract not found: {osm_path}")
    path = cache_path(osm_path, cache_dir)
    if path.exists() and not force:
        return path
    t0 = time.perf_counter()
    raw = read_extract(osm_path)
    t1 = time.perf_counter()
    arrays = build_arrays(raw, source=osm_path.name, sha256=path.parent.name)
    write_npz(path, arrays)
    _log.info(
        "address index built: %s, %d streets, %d addresses, read %.2f s, built %.2f s",
        osm_path.name, len(arrays["street_name"]), len(arrays["addr_name"]),
        t1 - t0, time.perf_counter() - t1, extra={"path": str(path)},
    )  # fmt: skip
    return path


def load_geocoder(settings: GeoSettings, name: str | None = None) -> Geocoder:
    """The geocoder of city ``name`` (default ``settings.city``): cached, else built.

    Memoised per process, keyed by the extract's path, size and modification time. The
    words of the city's name ("porto_portugal": porto, portugal) count as localities.
    """
    from geo.build import city_path

    osm_path = city_path(settings, name)
    city = name or settings.city
    key = memo_key(osm_path, settings.cache_dir)
    with _memo_lock:
        geocoder = _memo.get(key)
        if geocoder is None:
            path = build_index(osm_path, settings.cache_dir)
            t0 = time.perf_counter()
            localities = city.replace("_", " ").split()
            try:
                geocoder = Geocoder(read_npz(path), localities=localities)
            except Exception as exc:  # any unreadable cache is a miss
                # Truncated, empty, not a zip, an array missing: build it again.
                _log.warning(
                    "address index unreadable, rebuilding",
                    extra={"path": str(path), "err": f"{type(exc).__name__}: {exc}"},
                )
                path = build_index(osm_path, settings.cache_dir, force=True)
                geocoder = Geocoder(read_npz(path), localities=localities)
            _log.info(
                "address index loaded: %s, %d streets, %d addresses in %.3f s",
                city, geocoder.street_count, geocoder.address_count, time.perf_counter() - t0,
            )  # fmt: skip
            _memo[key] = geocoder
    return geocoder
