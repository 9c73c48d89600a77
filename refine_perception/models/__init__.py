"""Neural network models (backbones, necks, heads), kept free of ROS so they train and export offline."""
