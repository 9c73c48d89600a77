"""CLRNet lane detection (Zheng et al., CVPR 2022): priors, Line IoU, label assignment, lane NMS and decoding."""
