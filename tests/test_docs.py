"""The docs match the code: every HTTP route is written down as ``METHOD /path`` in the README or
in docs/, and every setting has its row in the README's configuration table, with its limits."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pixelmill.app import create_app
from pixelmill.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_is_documented_with_its_method() -> None:
    docs = _shape(DOCS)
    schema = create_app(Settings(workers=0)).openapi()
    routes = [(method.upper(), path) for path, methods in schema["paths"].items() for method in methods]
    assert len(routes) > 60
    missing = []
    for method, path in routes:
        # "PUT /v1/x", or "GET`/`PUT /v1/x" for several methods of one path.
        pattern = rf"\b{method}\b[`/A-Z ]*?{re.escape(_shape(path))}(?![\w/{{])"
        if not re.search(pattern, docs):
            missing.append(f"{method} {path}")
    assert missing == []


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else f"{value:g}"


def allowed(field: str) -> str | None:
    """A setting's limits in the words of the README's "allowed" column, from its declaration:
    ranges, choices, lengths. None for values whose rules are written by hand (JSON, files)."""
    info = Settings.model_fields[field]
    bounds = {type(m).__name__: m for m in info.metadata}
    annotation = info.annotation
    choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
    if choices:
        return ", ".join(f"`{c}`" for c in choices)
    if annotation is bool:
        return "`true`, `false`"
    if "MinLen" in bounds:
        return f"≥ {bounds['MinLen'].min_length} characters"
    low = (f"≥ {_number(bounds['Ge'].ge)}" if "Ge" in bounds else f"> {_number(bounds['Gt'].gt)}" if "Gt" in bounds else None)
    high = f"≤ {_number(bounds['Le'].le)}" if "Le" in bounds else None
    if "Ge" in bounds and high:
        return f"{_number(bounds['Ge'].ge)}–{_number(bounds['Le'].le)}"
    if low or high:
        return ", ".join(x for x in (low, high) if x)
    return None


def test_every_setting_has_a_row_with_its_limits() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        if line.startswith("| `PIXELMILL_"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    for field in Settings.model_fields:
        name = "PIXELMILL_" + field.upper()
        assert name in rows, f"README: no row for {name}"
        _, default, rule, meaning = rows[name]
        assert default and meaning and rule, f"README: {name} needs a default, its limits and a meaning"
        expected = allowed(field)
        if expected is not None:
            assert rule == expected, f"README: {name} allows {expected!r}, the table says {rule!r}"


def test_the_output_profile_limits_are_the_ones_the_code_checks() -> None:
    from pixelmill.media.output import MAX_EDGE, MIN_BYTES, MIN_EDGE, Profile

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quality = {type(m).__name__: m for m in Profile.model_fields["quality"].metadata}
    assert f"| `quality` | {quality['Ge'].ge}–{quality['Le'].le} " in readme
    assert f"| `long_edge` | {MIN_EDGE}–{MAX_EDGE}:" in readme and f"each {MIN_EDGE}–{MAX_EDGE}" in readme
    assert f"| `max_bytes` | ≥ {MIN_BYTES} |" in readme
    for field in Profile.model_fields:
        assert field == "name" or f"| `{field}` |" in readme, f"README: the profile setting {field} is not documented"
