"""r2c_core: R2C-GAN models, training, inference, lung segmentation and metrics (no UI code)."""

__version__ = "0.1.0"
