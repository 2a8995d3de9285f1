"""The four variants the research group compares, sized to their published parameter counts.

Seed counts at the defaults (base_channels=64, latent_channels=16, in_channels=1) and ours:
baseline 2.3M (2.36M), resnet_lite 5.6M (5.45M), residual 23.8M (23.05M),
attention 24.0M (23.51M; 13.25M at base_channels=48). tests/test_models.py holds them to +-10 %.
All downsample by 8 (three stride-2 levels), so inputs need sides divisible by 8.
"""

from __future__ import annotations

from models.autoencoder import ConvAutoencoder
from models.blocks import AttentionResidualBlock, ResidualBlock, SelfAttention2d, conv_bn_act
from models.registry import register_model


def _widths(base: int, multipliers: tuple[int, ...]) -> list[int]:
    return [base * m for m in multipliers]


@register_model
def baseline(base_channels: int = 64, latent_channels: int = 16, in_channels: int = 1) -> ConvAutoencoder:
    """Plain conv-BN-ReLU encoder/decoder; extra convs only on the two deepest levels."""
    return ConvAutoencoder(
        _widths(base_channels, (1, 2, 2, 4)), latent_channels, in_channels,
        block=conv_bn_act, blocks_per_level=(0, 0, 1, 1), decoder_blocks=(0, 0, 1, 0),
    )


@register_model
def resnet_lite(base_channels: int = 64, latent_channels: int = 16, in_channels: int = 1) -> ConvAutoencoder:
    """A residual block per level (two at the deepest) at moderate widths."""
    return ConvAutoencoder(
        _widths(base_channels, (1, 1, 2, 4)), latent_channels, in_channels,
        block=ResidualBlock, blocks_per_level=(0, 1, 1, 2), decoder_blocks=(0, 1, 1, 1),
    )


@register_model
def residual(base_channels: int = 64, latent_channels: int = 16, in_channels: int = 1) -> ConvAutoencoder:
    """Deep residual encoder (two blocks per level, widths up to 8x base), lighter decoder."""
    return ConvAutoencoder(
        _widths(base_channels, (1, 2, 4, 8)), latent_channels, in_channels,
        block=ResidualBlock, blocks_per_level=(1, 2, 2, 2), decoder_blocks=(1, 1, 1, 1),
    )


@register_model
def attention(base_channels: int = 64, latent_channels: int = 16, in_channels: int = 1) -> ConvAutoencoder:
    """Residual blocks gated by channel+spatial attention, self-attention at the bottleneck."""
    return ConvAutoencoder(
        _widths(base_channels, (1, 2, 4, 8)), latent_channels, in_channels,
        block=AttentionResidualBlock, blocks_per_level=(1, 2, 2, 2), decoder_blocks=(1, 1, 1, 1),
        bottleneck=SelfAttention2d,
    )
