"""The Label Refinement Network (Islam et al. 2017) for street scenes, with a discriminative-loss embedding
branch for car and person instances."""
