"""Training: the loop, one PAN step, the run directory, its lock and log, fine-tuning, torchrun."""
