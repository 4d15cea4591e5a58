"""pan: Perceptual Adversarial Networks for paired image-to-image work."""

__version__ = "0.1.0"
