"""Offline training of every model: configs, datasets, loops, checkpoints, evaluation. Imports no ROS."""
