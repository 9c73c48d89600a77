"""Datasets: synthetic generators with exact ground truth, and readers/writers of official formats."""
