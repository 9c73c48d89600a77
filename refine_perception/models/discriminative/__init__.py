"""Discriminative-loss instance embeddings (De Brabandere, Neven, Van Gool 2017): the network, the loss, the
fast mean-shift clustering that turns embeddings back into instances, and model files."""
