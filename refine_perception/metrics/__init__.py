"""Metrics computed exactly as the official evaluators compute them."""
