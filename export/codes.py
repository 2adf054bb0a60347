"""Class codes for the results an engine reports: which coded concept each class name stands for (e.g.
``malignant=SCT:21594007``), given at export and bound into the engine's facts, so a DICOM SR names the finding
in a standard terminology and an edited mapping is refused at load like edited class names."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import cast

from dcube_edge.errors import UserError
from dcube_edge.runtimes.sections import ClassCode

PRIVATE_SCHEME = "99DCUBE"  # what an unmapped class is coded in (a private coding scheme designator, PS3.16 8.2)
SPEC = re.compile(r"^(?P<scheme>[A-Za-z0-9][A-Za-z0-9_.-]{0,15}):(?P<value>[^:]{1,64})(?::(?P<meaning>.{1,64}))?$")


def known_meaning(scheme: str, value: str) -> str | None:
    """The code's meaning from pydicom's table of DICOM-registered concepts (PS3.16), if it lists the code."""
    try:
        from pydicom.sr._concepts_dict import concepts
    except ImportError:
        return None
    for entries in concepts.get(scheme, {}).values():  # keyword → {code: (meaning, context group ids)}
        found = cast("dict[str, tuple[str, list[int]]]", entries).get(value)
        if found:
            return found[0]
    return None


def parse(text: str | None, classes: list[str]) -> dict[str, ClassCode]:
    """``--class-codes``: ``NAME=SCHEME:VALUE[:MEANING]`` pairs, comma-separated, or a JSON file of
    ``{"NAME": "SCHEME:VALUE[:MEANING]"}``. A meaning left out is taken from the DICOM concept table where the
    code is listed there. Returns ``{class: ClassCode}``; classes not named are unmapped."""
    if not text:
        return {}
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        try:
            pairs = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"--class-codes {text}: not a readable JSON file of NAME: SCHEME:VALUE ({e})") from None
        if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
            raise UserError(f"--class-codes {text}: expected a JSON object of NAME: \"SCHEME:VALUE[:MEANING]\"")
    else:
        pairs = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, code = item.partition("=")
            if not sep:
                raise UserError(f"--class-codes {item!r}: expected NAME=SCHEME:VALUE, e.g. malignant=SCT:21594007")
            pairs[name.strip()] = code.strip()
    unknown = sorted(set(pairs) - set(classes))
    if unknown:
        raise UserError(f"--class-codes names {unknown}, which the model does not have (classes: {', '.join(classes)})")
    mapped: dict[str, ClassCode] = {}
    for name, code in pairs.items():
        found = SPEC.match(code)
        if not found:
            raise UserError(f"--class-codes {name}={code!r}: expected SCHEME:VALUE[:MEANING], e.g. SCT:21594007")
        scheme, value = found["scheme"], found["value"]
        meaning = found["meaning"] or known_meaning(scheme, value)
        if not meaning:
            raise UserError(f"--class-codes {name}={code}: {scheme} {value} is not in the DICOM concept table; "
                            f"give its meaning: {name}={scheme}:{value}:MEANING")
        mapped[name] = ClassCode(scheme, value, meaning)
    return mapped
