"""Prompt text: parsing parameters, normalising, mapping aspect ratios to pixel sizes."""
