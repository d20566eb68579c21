"""Training on Ray Train: the neural models' loops, checkpoints and resume."""
