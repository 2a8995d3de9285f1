"""The encoder/decoder skeleton every variant is built from.

A variant fixes the widths per level, the block type and how many blocks each level has; the
skeleton wires them into: stem -> [downsample, blocks] x levels -> latent (1x1 conv to
`latent_channels`) -> [blocks, upsample] x levels -> head (conv + sigmoid, inputs live in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from errors import ModelError
from models.blocks import conv_bn_act, up_bn_act

BlockFactory = Callable[[int, int], nn.Module]


def _stage(block: BlockFactory | None, channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(block(channels, channels) for _ in range(count if block else 0)))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder with `len(widths) - 1` stride-2 levels."""

    def __init__(
        self,
        widths: Sequence[int],
        latent_channels: int,
        in_channels: int,
        block: BlockFactory | None = None,
        blocks_per_level: Sequence[int] | None = None,
        decoder_blocks: Sequence[int] | None = None,
        bottleneck: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("latent_channels", latent_channels), ("in_channels", in_channels)):
            if not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if min(widths) < 1:
            raise ModelError(f"base_channels too small: level widths would be {list(widths)}")
        counts = list(blocks_per_level or [0] * len(widths))
        # A decoder lighter than its encoder is how the seed variants hit their sizes.
        dec_counts = list(decoder_blocks or counts)
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.downsample_factor = 2 ** (len(widths) - 1)

        self.stem = conv_bn_act(in_channels, widths[0])
        self.down = nn.ModuleList()
        for level in range(1, len(widths)):
            self.down.append(nn.Sequential(
                conv_bn_act(widths[level - 1], widths[level], stride=2),
                _stage(block, widths[level], counts[level]),
            ))
        deepest = widths[-1]
        self.encoder_neck = bottleneck(deepest) if bottleneck else nn.Identity()
        self.to_latent = nn.Conv2d(deepest, latent_channels, 1)
        self.from_latent = conv_bn_act(latent_channels, deepest)
        self.up = nn.ModuleList()
        for level in range(len(widths) - 1, 0, -1):
            self.up.append(nn.Sequential(
                _stage(block, widths[level], dec_counts[level]),
                up_bn_act(widths[level], widths[level - 1]),
            ))
        self.head = nn.Sequential(
            _stage(block, widths[0], dec_counts[0]),
            nn.Conv2d(widths[0], in_channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Reject inputs the network cannot map back to their own shape, naming the rule."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ModelError(
                f"expected input of shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        f = self.downsample_factor
        if h % f or w % f:
            raise ModelError(
                f"input size {h}x{w} is not divisible by the downsampling factor {f}; "
                f"use a patch size that is a multiple of {f}"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)
        for level in self.down:
            x = level(x)
        return self.to_latent(self.encoder_neck(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.from_latent(z)
        for level in self.up:
            x = level(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count, the figure the research group's tables quote."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
