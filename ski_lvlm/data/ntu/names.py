"""NTU RGB+D sample names, class names, benchmark splits and the packaged class lists.

Sample names are ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer/subject, replication, action; 1-based).
NTU60 is setups 1-17 and actions 1-60; NTU120 adds setups 18-32 and actions 61-120.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# Official NTU RGB+D 120 action names; index = action id - 1 (A001 = index 0).
NTU120_CLASS_NAMES: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe", "wear on glasses",
    "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up", "hand waving",
    "kicking something", "reach into pocket", "hopping (one foot jumping)", "jump up",
    "make a phone call/answer phone", "playing with phone/tablet", "typing on a keyboard",
    "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache/heart pain)", "touch back (backache)", "touch neck (neckache)",
    "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    # A061-A120 (NTU120)
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball", "tennis bat swing",
    "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up", "thumb down", "make ok sign",
    "make victory sign", "staple book", "counting money", "cutting nails", "cutting paper (using scissors)",
    "snapping fingers", "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag",
    "take off bag", "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms",
    "arm circles", "arm swings", "running on the spot", "butt kicks (kick backward)", "cross toe touch",
    "side kick", "yawn", "stretch oneself", "blow nose", "hit other person with something",
    "wield knife towards other person", "knock over other person (hit with body)",
    "grab other person's stuff", "shoot at other person with a gun", "step on foot", "high-five",
    "cheers and drink", "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear", "exchange things with other person",
    "support somebody with hand", "finger-guessing game (playing rock-paper-scissors)",
)
NTU60_CLASS_NAMES: tuple[str, ...] = NTU120_CLASS_NAMES[:60]

# Cross-subject training performers (original-system.md §2.2 for NTU60; the NTU120 paper's list extends it).
NTU60_XSUB_TRAIN_SUBJECTS: frozenset[int] = frozenset(
    {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
)
NTU120_XSUB_TRAIN_SUBJECTS: frozenset[int] = NTU60_XSUB_TRAIN_SUBJECTS | frozenset(
    {45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92,
     93, 94, 95, 97, 98, 100, 103}
)
XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset({2, 3})
BENCHMARKS = ("xsub", "xview", "xset")
# split -> (number of classes of the dataset it belongs to)
ZSL_SPLITS: dict[str, int] = {"55-5": 60, "48-12": 60, "110-10": 120, "96-24": 120}

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True)
class NtuName:
    setup: int
    camera: int
    performer: int
    replication: int
    action: int  # 1-based, as in the name

    @property
    def label(self) -> int:
        """0-based class index (A001 -> 0)."""
        return self.action - 1


def parse_ntu_name(name: str | Path) -> NtuName:
    """``"S001C002P003R002A013"`` (or a path/file name containing it) -> :class:`NtuName`."""
    m = _NAME_RE.search(Path(str(name)).name)
    if not m:
        raise ValueError(f"{name}: not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    return NtuName(*(int(g) for g in m.groups()))


def is_ntu60(n: NtuName) -> bool:
    return n.setup <= 17 and n.action <= 60


def is_train_sample(n: NtuName, benchmark: str) -> bool:
    """Training side of a benchmark: ``xsub`` by performer (NTU60 list for NTU60 samples, NTU120 list
    otherwise; the NTU120 list contains the NTU60 one), ``xview`` cameras 2 and 3, ``xset`` even setups."""
    if benchmark == "xsub":
        subjects = NTU60_XSUB_TRAIN_SUBJECTS if is_ntu60(n) else NTU120_XSUB_TRAIN_SUBJECTS
        return n.performer in subjects
    if benchmark == "xview":
        return n.camera in XVIEW_TRAIN_CAMERAS
    if benchmark == "xset":
        return n.setup % 2 == 0
    raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")


# ----------------------------------------------------------------------------------------------------------
# Class names and packaged resources


def _norm_name(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).replace("\u2019", "'").lower()
    s = s.replace("'s ", "s ").replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s).split())


def _name_table() -> dict[str, int]:
    table: dict[str, int] = {}
    short: dict[str, list[int]] = {}
    for i, n in enumerate(NTU120_CLASS_NAMES):
        table[_norm_name(n)] = i
        short.setdefault(_norm_name(re.sub(r"\(.*?\)", "", n)), []).append(i)
    for k, ids in short.items():  # "touch head" for "touch head (headache)" when unambiguous
        if len(ids) == 1:
            table.setdefault(k, ids[0])
    # spellings used by the published zero-shot split files
    aliases = {
        "put something inside pocket / take out something from pocket": 24,
        "touch person's pocket": 56,
        "touch other persons pocket": 56,
    }
    for k, v in aliases.items():
        table[_norm_name(k)] = v
    return table


_NAME_TABLE = _name_table()


def class_id(name: str) -> int:
    """0-based NTU class index of an action name; tolerant to the spellings used in published split files
    (curly apostrophes, missing parentheticals, ``touch person's pocket``)."""
    key = _norm_name(name)
    if key not in _NAME_TABLE:
        raise KeyError(f"unknown NTU action name {name!r}")
    return _NAME_TABLE[key]


def resource_path(name: str):
    """A packaged file under ``ski_lvlm/resources/`` (a ``Traversable`` with ``read_text``).

    Uses ``importlib.resources`` (works from wheels and zips); falls back to the source tree when
    ``ski_lvlm`` is imported as a namespace package (no ``__init__.py``), where Python 3.11's resource
    reader cannot list an editable install's path hook.
    """
    try:
        res = resources.files("ski_lvlm").joinpath("resources")
        for part in name.split("/"):
            res = res.joinpath(part)
        if res.is_file():
            return res
    except (NotADirectoryError, TypeError, ModuleNotFoundError, AttributeError):
        pass
    return Path(__file__).resolve().parent.parent.parent.joinpath("resources", *name.split("/"))


def load_missing_list(path: str | Path | None = None) -> set[str]:
    """Sample names from a missing-skeleton list (one per line); the packaged NTU60 list when ``None``."""
    text = (resource_path("ntu60_samples_with_missing_skeletons.txt").read_text() if path is None
            else Path(path).read_text())
    out = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.add(Path(line).name.split(".")[0])
    return out


def load_zsl_classes(split: str) -> tuple[list[str], list[str]]:
    """Base and novel class names (CSV order = label ids) of a packaged zero-shot split."""
    if split not in ZSL_SPLITS:
        raise ValueError(f"split must be one of {list(ZSL_SPLITS)}, got {split!r}")
    out = []
    for part in ("base", "novel"):
        res = resource_path(f"ntu_zsl/zsl_{split}_{part}_class_labels.csv")
        rows = list(csv.DictReader(res.read_text(encoding="utf-8").splitlines()))
        if [int(r["id"]) for r in rows] != list(range(len(rows))):
            raise ValueError(f"{res}: ids must be 0..K-1 in order")
        out.append([r["name"] for r in rows])
    return out[0], out[1]
