"""Scoring what the running nodes publish (recorded in a bag, or computed offline from one) against the
ground truth recorded with the input, and the report of a replay."""
