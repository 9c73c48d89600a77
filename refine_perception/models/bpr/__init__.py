"""Boundary Patch Refinement (Tang et al., CVPR 2021): small patches along each instance mask's boundary,
refined by a patch network from the image and the coarse mask, pasted back."""
