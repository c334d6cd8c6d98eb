"""R2C-GAN training: config, unpaired A/B data, history pools, LR schedule and the resumable trainer."""

from .config import TrainConfig, config_from_dict, load_config, parse_overrides
from .pool import ImagePool
from .schedule import linear_decay_lr
from .trainer import TrainData, Trainer, state_config, train

__all__ = [
    "ImagePool", "TrainConfig", "TrainData", "Trainer", "config_from_dict", "linear_decay_lr", "load_config",
    "parse_overrides", "state_config", "train",
]
