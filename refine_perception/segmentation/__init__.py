"""Street-scene semantic segmentation (coarse-to-fine label maps) and its car / person instances."""
