from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pixelmill.billing.prices import PriceMissing, PriceTable, read_price_file
from pixelmill.clock import ManualClock


def test_video_is_billed_per_clip(db: Engine, clock: ManualClock) -> None:
    table = PriceTable(db, clock)
    table.seed({})
    assert table.units("midjourney@video", 4) == 4 * table.units("midjourney@video")
    assert table.units("midjourney@video-720p", 1) == 2


def test_file_overrides_defaults_and_unknown_keys_are_an_error(db: Engine, clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"midjourney@imagine": 5, "midjourney@imagine-turbo": 9}))
    table = PriceTable(db, clock)
    table.seed(read_price_file(path))
    table.seed({})  # a restart without the file keeps what was set
    assert table.units("midjourney@imagine") == 5 and table.units("midjourney@imagine-turbo") == 9
    with pytest.raises(PriceMissing, match="no price is configured for midjourney@nothing"):
        table.units("midjourney@nothing")


@pytest.mark.parametrize("content", ['{"midjourney@imagine": -1}', '{"midjourney@imagine": "2"}', "[1, 2]", "{"])
def test_a_bad_price_file_is_refused_at_start(tmp_path: Path, content: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="price file"):
        read_price_file(path)
