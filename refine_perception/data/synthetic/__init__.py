"""Synthetic scenes rendered from 3D models, deterministic for a seed."""
