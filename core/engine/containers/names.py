"""Docker-style random container names: ``adjective_surname``."""

from __future__ import annotations

import random
from typing import Callable

LEFT = ("admiring", "brave", "busy", "clever", "eager", "elated", "focused", "gallant",
        "happy", "jolly", "keen", "lucid", "nifty", "quirky", "serene", "sharp", "stoic",
        "tender", "vibrant", "wizardly", "zealous", "upbeat", "silly", "pensive")
RIGHT = ("archimedes", "babbage", "curie", "darwin", "euler", "feynman", "galileo",
         "hopper", "hypatia", "kepler", "lamarr", "lovelace", "meitner", "noether",
         "pasteur", "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath")


def generate(is_free: Callable[[str], bool]) -> str:
    """Return a random name for which ``is_free(name)`` is true."""
    for attempt in range(100):
        name = f"{random.choice(LEFT)}_{random.choice(RIGHT)}"
        if attempt > 5:
            name += str(random.randint(0, 99))
        if is_free(name):
            return name
    raise RuntimeError("could not find a free container name")
