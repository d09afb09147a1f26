"""The authors' training pipeline (DyBAT, commit 402a3b5), rebuilt for timing only: part 3 of `make bench`.

What makes it slow is kept as they had it: a torchvision-style dataset that hands out PIL images, CPU
transforms per sample every time a batch is loaded (Resize, ToTensor, Normalize), a DataLoader with
shuffle=False, drop_last=True and no workers, float32 weights in the default layout, the default
cuDNN settings, and for delta < 1 a round loop that walks the whole loader to train the k chosen
batches, reading each loss back with `.item()`. The data are synthetic arrays in CIFAR's (or STL-10's)
shape, so nothing is downloaded; the CPU work per sample is the one their CIFAR10 loader does.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from hardsamples.data import IMAGENET_MEAN, IMAGENET_STD


class PILImageDataset(Dataset):
    """uint8 (n, H, W, C) arrays served like torchvision's CIFAR10: a PIL image per sample, then transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def authors_loader(images_chw: np.ndarray, labels: np.ndarray, image_size: int, batch_size: int) -> DataLoader:
    transform = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor(),
                                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    images_hwc = np.ascontiguousarray(images_chw.transpose(0, 2, 3, 1))
    if images_hwc.shape[-1] == 1:
        images_hwc = images_hwc[..., 0]
    dataset = PILImageDataset(images_hwc, labels, transform)
    return DataLoader(dataset, batch_size, shuffle=False, drop_last=True, pin_memory=False)


@contextmanager
def torch_default_backends():
    """Their script sets no backend flag: cuDNN autotuning off, no TF32 matmuls (cuDNN convs: TF32 by default)."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


class AuthorsTraining:
    """Their `normal_train` (delta = 1.0) and `turbo_train` (delta < 1) loops, one call per timing window."""

    def __init__(self, model: torch.nn.Module, loader: DataLoader, device: torch.device, lr: float, momentum: float):
        self.model, self.loader, self.device = model, loader, device
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)  # their defaults
        self.num_batches = len(loader)
        self.retrain_batches: list[tuple[int, float]] = []

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        inputs, labels = inputs.to(self.device), labels.to(self.device)
        loss = F.cross_entropy(self.model(inputs), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss

    def epoch(self) -> int:
        """delta = 1.0: every batch of the loader, in order. Returns the number of updates."""
        with torch_default_backends():
            for inputs, labels in self.loader:
                self.step(inputs, labels)
        return self.num_batches

    def first_epoch(self) -> int:
        """delta < 1, epoch 0: every batch, storing each loss with `.item()`."""
        with torch_default_backends():
            self.retrain_batches = [(i, self.step(x, y).item()) for i, (x, y) in enumerate(self.loader)]
        return self.num_batches

    def round(self, delta: float) -> int:
        """delta < 1, one round: sort on the host, then walk the whole loader and train the k chosen batches."""
        k = int(delta * self.num_batches)
        self.retrain_batches = sorted(self.retrain_batches, key=lambda pair: pair[1], reverse=True)
        order = [i for i, _ in self.retrain_batches]
        chosen = sorted(order[:k])
        j = 0
        with torch_default_backends():
            for i, (inputs, labels) in enumerate(self.loader):  # every batch is loaded and transformed
                if j < len(chosen) and chosen[j] == i:
                    loss = self.step(inputs, labels)
                    self.retrain_batches[order.index(i)] = (i, loss.item())
                    j += 1
        return k
