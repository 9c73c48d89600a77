"""Boundary patch refinement as a stage of the segmentation nodes (models/bpr holds the method)."""
