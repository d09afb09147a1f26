"""timm models, trained from scratch, with classes and channels taken from the dataset."""

from __future__ import annotations

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from hardsamples.errors import ConfigError


def build_model(name: str, num_classes: int, in_chans: int) -> torch.nn.Module:
    if not timm.is_model(name):
        raise ConfigError(f"unknown model '{name}': pass model=<one of conf/model/> or model.name=<any timm model name>"
                          " (timm.list_models() lists them)")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, image_size: int, in_chans: int = 3) -> int:
    """FLOPs of one forward pass of one image (2 x multiply-adds, as the paper's Table 2 counts)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_chans, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops()
