from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pixelmill.media.grid import compose_grid, crop_quadrant


def test_crop_quadrant_returns_each_source_image() -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)) for _ in range(4)]
    grid = compose_grid(images)
    assert grid.size == (160, 96)
    for i, im in enumerate(images, start=1):
        assert np.array_equal(np.asarray(crop_quadrant(grid, i)), np.asarray(im))


def test_grid_needs_four_equal_images() -> None:
    with pytest.raises(ValueError, match="4 images"):
        compose_grid([Image.new("RGB", (8, 8))] * 3)
    with pytest.raises(ValueError, match="one size"):
        compose_grid([Image.new("RGB", (8, 8))] * 3 + [Image.new("RGB", (16, 8))])
