"""The tile plan: which latent cells each tile computes (window) and which it keeps (core).

Pure functions of shapes and tensors. Coordinates are latent cells of the padded image
(one cell = `scale` x `scale` pixels); windows are cores grown by the halo, clamped to the grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    core_y: Span
    core_x: Span
    window_y: Span
    window_x: Span

    @property
    def origin(self) -> tuple[int, int]:
        """The window's first cell in global coordinates (seeds the stochastic update mask)."""
        return self.window_y.start, self.window_x.start


def _spans(length: int, core: int, halo: int) -> list[tuple[Span, Span]]:
    """Split [0, length) into cores of at most `core` cells, each with its window."""
    count = max(1, -(-length // core))
    bounds = [round(i * length / count) for i in range(count + 1)]  # equal cores, no thin last tile
    return [
        (Span(a, b), Span(max(0, a - halo), min(length, b + halo)))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


def plan_tiles(height: int, width: int, core: int, halo: int) -> list[Tile]:
    """Tiles covering a (height x width) latent grid; core <= 0 means one tile for the whole grid."""
    if core <= 0:
        core = max(height, width)
    return [
        Tile(cy, cx, wy, wx)
        for cy, wy in _spans(height, core, halo)
        for cx, wx in _spans(width, core, halo)
    ]


def window_pixels(tile: Tile, scale: int, height: int, width: int) -> tuple[slice, slice]:
    """The image pixels a tile's window reads, clipped to the unpadded image (height x width)."""
    return (slice(tile.window_y.start * scale, min(tile.window_y.stop * scale, height)),
            slice(tile.window_x.start * scale, min(tile.window_x.stop * scale, width)))


def paste_core(output: torch.Tensor, window_result: torch.Tensor, tile: Tile, scale: int) -> None:
    """Copy the core of a window's result (..., H, W) into the full output, clipped to its size."""
    height, width = output.shape[-2:]
    y0, y1 = tile.core_y.start * scale, min(tile.core_y.stop * scale, height)
    x0, x1 = tile.core_x.start * scale, min(tile.core_x.stop * scale, width)
    oy, ox = y0 - tile.window_y.start * scale, x0 - tile.window_x.start * scale
    output[..., y0:y1, x0:x1] = window_result[..., oy:oy + y1 - y0, ox:ox + x1 - x0]
