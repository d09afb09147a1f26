"""Each rule a builder once restated (runtime's precision, data's partition, the trimming policy's shape,
the W&B mirror's mode) is refused with the config, in one line, before anything is built; the public
sampler API, which no config check sees, refuses a bad shape with the same rule."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, compose_config
from hardsamples.config_checks.settings import check_settings
from hardsamples.errors import ConfigError
from hardsamples.sampler import trimmed_mean

ONCE_RESTATED = {
    "precision": (["precision=fp16"], r"^precision=fp16 is not one of its choices: use auto, bf16, fp32$"),
    "fidelity.precision": (["fidelity.precision=half"],
                           r"^fidelity.precision=half is not one of its choices: use auto, bf16, fp32$"),
    "fidelity.partition": (["fidelity.partition=random"],
                           r"^fidelity.partition=random is not one of its choices: use dataset_order, shuffled$"),
    "method.shape": (["method=trimming", "method.shape=exponential"],
                     r"^method.shape=exponential is not one of its choices: use linear, cosine, step$"),
    "logger.wandb.mode": (["logger.wandb.mode=onlin"],
                          r"^logger.wandb.mode=onlin is unknown: use auto, online, offline, disabled$"),
}


@pytest.mark.parametrize("overrides, message", ONCE_RESTATED.values(), ids=ONCE_RESTATED.keys())
def test_a_rule_the_builders_trust_is_refused_with_the_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_settings(compose_config([*TINY, *overrides]))


def test_trimmed_mean_refuses_an_unknown_shape_with_the_configs_rule():
    with pytest.raises(ConfigError, match=r"^method.shape=exponential is not one of its choices: use linear, cosine"):
        trimmed_mean(torch.ones(4), 0, 2, shape="exponential")
