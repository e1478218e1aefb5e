"""One cattrs converter for the model: records to the JSON the store holds and back.

Field names are stored as written in the classes (snake_case); a record stored by a
newer Dockyard with fields this one does not know is refused rather than silently
stripped (``forbid_extra_keys``), as is a missing field that has no default.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import cattrs

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True, omit_if_default=False)


def dumps(record: Any) -> str:
    """The store's JSON text of ``record``."""
    return json.dumps(converter.unstructure(record))


def loads(text: str | bytes, cls: type[T]) -> T:
    """The ``cls`` record stored as ``text``."""
    return converter.structure(json.loads(text), cls)
