"""Training loops: encoder, GAN, image classifier, and what they share (strategy, checkpoints, signals)."""
