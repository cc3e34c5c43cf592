"""Serving a trained network: prediction CSVs, uint8 inference wrappers and export."""
