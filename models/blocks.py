"""Building blocks shared by the autoencoder variants: conv units, residual blocks, attention."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU; stride 2 halves the spatial size."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def up_bn_act(c_in: int, c_out: int) -> nn.Sequential:
    """Learned 2x upsampling (transposed conv, kernel 4 avoids checkerboard gaps) + BN + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a 1x1 projection when the width changes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ChannelSpatialAttention(nn.Module):
    """CBAM-style gate: squeeze-excite over channels, then a 7x7 spatial mask."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        # At narrow widths a single hidden ReLU unit can die and silence the gate: keep 4.
        hidden = max(channels // reduction, 4)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.spatial(pooled)


class AttentionResidualBlock(ResidualBlock):
    """Residual block whose residual branch passes through a channel+spatial attention gate."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out)
        self.attention = ChannelSpatialAttention(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.attention(self.body(x)) + self.skip(x))


class SelfAttention2d(nn.Module):
    """SAGAN-style non-local attention: queries and keys at C/8, a learned gate starting at 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        # Zero gate: the block starts as identity, so attention cannot destabilise early training.
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)
