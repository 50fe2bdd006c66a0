"""Dataset readers, joint transforms and the synthetic street world."""
