"""Readers and writers for the official dataset formats (TuSimple, CULane, CurveLanes, Cityscapes, COCO)."""
