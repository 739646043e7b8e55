"""N-way K-shot episodes (paper §4.2, Table 1; the protocol of Frozen and SPAE §4.2).

An episode draws N classes, `max_shots` distinct support images per class and one query image of one of them (never
one of the support images). The Table 1 cells reuse each episode (common random numbers: the cells differ only in
what the prompt shows, which makes their differences less noisy):

- shots `k` shows the first `k` *rounds*; a round is one support image of every class, in an order shuffled per round;
- repeats `r` shows round 1 again `r` more times (each example appears 1 + r times), in the same order;
- task induction states the class list before the examples.

So every prompt of an episode starts with the same instruction and first round, and the prompts share their KV cache
(see `fewshot.py`). Episodes are fixed by their seed and saved as JSON lists that a later run can load.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, V2LError
from ..paths import write_json_atomic


@dataclass(frozen=True)
class Cell:
    """One column of Table 1."""

    induction: bool
    shots: int
    repeats: int

    @property
    def name(self) -> str:
        return f"{'ind' if self.induction else 'no-ind'}-{self.shots}shot-r{self.repeats}"


TABLE1_CELLS = (
    Cell(False, 1, 0),
    Cell(True, 1, 0),
    Cell(True, 3, 0),
    Cell(True, 5, 0),
    Cell(True, 1, 1),
    Cell(True, 1, 3),
    Cell(True, 1, 5),
)
REPEATS = (0, 1, 3, 5)


@dataclass
class Episode:
    """`classes`: the N class names (in the order the instruction lists them); `rounds[r][j]` = (class index, item)
    is the j-th example of round r; `query` = (class index, item). Items are keys of a feature store."""

    classes: list[str]
    rounds: list[list[tuple[int, str]]]
    query: tuple[int, str]
    seed: int

    @property
    def ways(self) -> int:
        return len(self.classes)

    def samples(self, cell: Cell) -> list[tuple[int, str]]:
        """The support examples a cell shows, in prompt order."""
        if cell.shots > len(self.rounds):
            raise ConfigError(
                f"A {cell.shots}-shot cell needs {cell.shots} rounds; the episode has {len(self.rounds)}."
            )
        if cell.repeats:
            return [s for _ in range(1 + cell.repeats) for s in self.rounds[0]]
        return [s for r in self.rounds[: cell.shots] for s in r]

    def support_items(self, cell: Cell) -> set[str]:
        return {item for _, item in self.samples(cell)}

    def to_json(self) -> dict:
        return {
            "classes": self.classes,
            "rounds": [[list(s) for s in r] for r in self.rounds],
            "query": list(self.query),
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, d: dict) -> Episode:
        return cls(
            list(d["classes"]),
            [[(int(c), str(i)) for c, i in r] for r in d["rounds"]],
            (int(d["query"][0]), str(d["query"][1])),
            int(d["seed"]),
        )


def sample_episodes(
    pool: dict[str, list[str]], ways: int, count: int, seed: int = 0, max_shots: int = 5
) -> list[Episode]:
    """`count` episodes of `ways` classes from `pool` (class name -> item keys), each with `max_shots` rounds."""
    if ways < 2:
        raise ConfigError(f"--ways {ways} is invalid: classification needs at least 2 classes.")
    usable = sorted(c for c, items in pool.items() if len(set(items)) >= max_shots + 1)
    if len(usable) < ways:
        raise V2LError(
            f"{ways}-way episodes need {ways} classes with at least {max_shots + 1} images each; only "
            f"{len(usable)} qualify: use fewer ways or shots, or more images per class."
        )
    episodes = []
    for e in range(count):
        rng = random.Random(f"v2l-episode:{seed}:{ways}:{max_shots}:{e}")
        classes = rng.sample(usable, ways)
        picks = {c: rng.sample(sorted(set(pool[c])), max_shots + 1) for c in classes}
        q = rng.randrange(ways)
        query = (q, picks[classes[q]][max_shots])  # the extra image: never in the support set
        rounds = []
        for r in range(max_shots):
            order = list(range(ways))
            rng.shuffle(order)
            rounds.append([(c, picks[classes[c]][r]) for c in order])
        episodes.append(Episode(classes, rounds, query, seed * 1_000_003 + e))
    return episodes


def save_episodes(path: str | Path, episodes: list[Episode], meta: dict | None = None) -> Path:
    write_json_atomic(Path(path), {"meta": meta or {}, "episodes": [e.to_json() for e in episodes]})
    return Path(path)


def load_episodes(path: str | Path) -> list[Episode]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        episodes = [Episode.from_json(d) for d in data["episodes"]]
        if not episodes:
            raise ValueError("it holds no episodes")
        return episodes
    except FileNotFoundError:
        raise V2LError(f"Episode file {path} does not exist: check the path.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise V2LError(
            f"Episode file {path} is not a v2l episode list ({type(e).__name__}: {e}): write it with "
            "`v2l fewshot --save-episodes`."
        ) from None


def cell_from_json(d: dict) -> Cell:
    return Cell(bool(d["induction"]), int(d["shots"]), int(d["repeats"]))


def cell_to_json(c: Cell) -> dict:
    return asdict(c)
