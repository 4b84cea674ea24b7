"""Image post-processing: grids, crops, encoding."""
