"""The built loop, checked before anything is written: what only a built model and optimizer can tell,
each tried on a copy so the run trains exactly as without the probe."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, OmegaConf

from hardsamples.errors import ConfigError, last_line


def check_loop(cfg: DictConfig, loop) -> None:
    """What only a built model and optimizer can tell, tried on copies before anything is written: the model
    takes the run's images, the user's optimizer can step on it, and BatchNorm can evaluate the last batch."""
    check_model_takes_images(cfg, loop.model, loop.data)
    check_users_optimizer_steps(cfg, loop)
    check_single_sample_batches(cfg, loop.model, loop.data)


def check_model_takes_images(cfg: DictConfig, model: torch.nn.Module, data) -> None:
    """One forward pass of two test images through a copy in eval mode: a model built for another input (a
    ViT made for 224 px at image_size=16) fails here in one line, not at the first update."""
    probe = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            probe(data.normalise(data.test_images[:2]))
    except Exception as err:  # noqa: BLE001 - timm's models raise many kinds for an input they cannot take
        shape = tuple(data.test_images.shape[1:])
        raise ConfigError(f"model.name={cfg.model.name} cannot take images of shape {shape} (C, H, W)"
                          f" ({last_line(err)[:300]}): pick the image_size it is built for (e.g."
                          " image_size=224 for a *_224 model) or another model") from None
    finally:
        del probe


def check_users_optimizer_steps(cfg: DictConfig, loop) -> None:
    """A user's optimizer (optimizer._target_) takes one step on a copy of the model: an optimizer whose step
    needs a closure (LBFGS) or sparse gradients (SparseAdam) fails here in one line, not in the loop. The
    RNG state is restored afterwards, so the run trains exactly as without the probe."""
    if OmegaConf.select(cfg, "optimizer._target_") is None:
        return
    from hardsamples.loop import user_optimizer

    model = copy.deepcopy(loop.model)
    devices = [loop.device] if loop.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            optimizer = user_optimizer(cfg.optimizer, model)
            x, y = loop.stage(loop.batches[0])
            torch.nn.functional.cross_entropy(model(x).float(), y).backward()
            optimizer.step()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's optimizer class raises what it raises
        raise ConfigError(f"optimizer._target_={cfg.optimizer._target_} cannot train this model"
                          f" ({last_line(err)[:300]}): use an optimizer whose step() needs no closure and"
                          " takes dense gradients, e.g. ++optimizer._target_=torch.optim.AdamW") from None
    finally:
        del model


def check_single_sample_batches(cfg: DictConfig, model: torch.nn.Module, data) -> None:
    """Under eval_batchnorm=train every evaluation batch goes through BatchNorm's batch statistics; a
    last batch of one sample fails there when a BatchNorm layer then sees a single value per channel
    (a small image at a deep stage). Tried once on a copy of the model, before anything is written."""
    if cfg.fidelity.eval_batchnorm != "train":
        return
    size = cfg.batch_size
    splits = [("test split", int(data.test_labels.shape[0])), ("training set", data.num_train)]
    if cfg.eval.train_subset is not None and cfg.eval.train_subset < data.num_train:
        splits.append(("eval.train_subset", int(cfg.eval.train_subset)))
    ones = [name for name, n in splits if n % size == 1]
    if not ones:
        return
    probe = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            probe(data.normalise(data.test_images[:1]))
    except ValueError as err:
        if "Expected more than 1 value per channel" not in str(err):
            raise
        raise ConfigError(f"the {ones[0]}'s last evaluation batch holds 1 sample, which BatchNorm in train mode"
                          f" (fidelity.eval_batchnorm=train) cannot evaluate at image_size={cfg.image_size}:"
                          f" use a batch_size that leaves more than one sample in the last batch, a larger"
                          f" image_size, or fidelity.eval_batchnorm=eval") from None
    finally:
        del probe
