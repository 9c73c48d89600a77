"""SpatialEmbeddings instance segmentation (Neven et al., CVPR 2019): ERFNet, loss, seed clustering, model files."""
