"""The LNCA model in one file: config, autoencoder, NAFCA update rule, pixel-space NCA, and the
few facts about the model that the restore engine needs (LNCA's `halo`, `multiple_of`, ...).

Pure PyTorch, no I/O. docs/METHOD.md describes the method (Menta et al., 2024):

    degraded image --encoder--> latent (H/4 x W/4 x C) --NCA, T steps--> restored latent --decoder--> image

The skip connection comes from the degraded input; the NCA only ever sees the latent grid.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


PERCEPTIONS = ("gate", "depthwise")
MAX_STEPS = 10_000  # NCA steps of a restore, at most
MAX_WIDTH = 1024  # channels of any layer, at most: the shipped models use 16 to 128
MAX_DECODER_BLOCKS = 16


@dataclass(frozen=True)
class LNCAConfig:
    """Everything needed to rebuild a model; saved in the weights file's metadata."""

    image_channels: int = 3
    ae_channels: int = 8  # autoencoder width, also the skip's width
    latent_channels: int = 16  # C: the NCA's "in" and "out" parts are C channels each
    hidden_channels: int = 32  # the NCA's private state per cell
    embed_dim: int = 128  # NAFCA width (the paper's d -> 128 -> 256 expansion)
    steps: int = 64  # default NCA steps at inference
    update_rate: float = 1.0  # probability that a cell updates at a step
    downsample: int = 4  # pixels per latent cell, per side (two stride-2 stages)
    dropout: float = 0.1
    perception: str = "gate"  # how a cell sees its neighbours: "gate" (the paper) or "depthwise"
    residual: bool = False  # the decoder gives a correction added to the degraded input, not the image
    decoder_blocks: int = 0  # residual 3x3 conv blocks at half resolution in the decoder, after the merge
    refine_expand: int = 1  # a decoder block's inner width, in multiples of ae_channels

    def __post_init__(self) -> None:
        if self.image_channels != 3:
            raise ValueError(f"image_channels must be 3 (grayscale images go through as RGB), got "
                             f"{self.image_channels}")
        if self.downsample != 4:
            raise ValueError(f"downsample must be 4 (two stride-2 stages), got {self.downsample}")
        if not 0.0 < self.update_rate <= 1.0:  # (also false for NaN)
            raise ValueError(f"update_rate must be in (0, 1], got {self.update_rate}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.perception not in PERCEPTIONS:
            raise ValueError(f"perception must be one of {', '.join(PERCEPTIONS)}, got {self.perception!r}")
        for field in ("ae_channels", "latent_channels", "hidden_channels", "embed_dim"):
            if not 1 <= getattr(self, field) <= MAX_WIDTH:
                raise ValueError(f"{field} must be between 1 and {MAX_WIDTH}, got {getattr(self, field)}")
        if not 0 <= self.decoder_blocks <= MAX_DECODER_BLOCKS:
            raise ValueError(f"decoder_blocks must be between 0 and {MAX_DECODER_BLOCKS}, got {self.decoder_blocks}")
        if not 1 <= self.refine_expand * self.ae_channels <= MAX_WIDTH:
            raise ValueError(f"refine_expand x ae_channels must be between 1 and {MAX_WIDTH}, got "
                             f"{self.refine_expand} x {self.ae_channels}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")

    @property
    def cell_channels(self) -> int:
        """Channels of one NCA cell: [in C | out C | hidden H]."""
        return 2 * self.latent_channels + self.hidden_channels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LNCAConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**{k: type(known[k].default)(v) for k, v in values.items()})


PRESETS = {
    "paper": LNCAConfig(),  # the paper's exact sizes: 3.7k autoencoder + 47k NAFCA
    "wide": LNCAConfig(ae_channels=16, latent_channels=48),  # wider latent and skip: see weights/README.md
    "wide-dw": LNCAConfig(ae_channels=16, latent_channels=48, perception="depthwise"),  # ... and NAFNet's 3x3
    "wide-dw-256": LNCAConfig(ae_channels=16, latent_channels=48, perception="depthwise", embed_dim=256),  # wider rule
    "wide-dw-deep": LNCAConfig(ae_channels=16, latent_channels=48, perception="depthwise", decoder_blocks=2),  # deeper decoder
    "wide-dw-deep6": LNCAConfig(ae_channels=16, latent_channels=48, perception="depthwise", decoder_blocks=6),  # deeper still
    "wide-dw-deep6x4": LNCAConfig(ae_channels=16, latent_channels=48, perception="depthwise", decoder_blocks=6,
                                  refine_expand=4),  # ... and each block 4x wider inside
    "wide-dw-deep6-ae32": LNCAConfig(ae_channels=32, latent_channels=48, perception="depthwise", decoder_blocks=6,
                                     refine_expand=2),  # the half-resolution stream twice as wide, 64 inside
    "wide-dw-deep8-ae64": LNCAConfig(ae_channels=64, latent_channels=48, perception="depthwise", decoder_blocks=8),
    # ... and twice as wide again, with two blocks more (each 64 -> 64 -> 64)
}


def pad_to_multiple(x: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """Pad the bottom/right of an (N, C, H, W) tensor up to a multiple, by reflection.

    Reflection needs the side to be longer than the pad; tiny images fall back to replication.
    """
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if x.shape[-2] > pad_h and x.shape[-1] > pad_w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """The encoder and decoder run in channels_last memory: the NCA's cells are views of it."""
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def grow_layer(layer: nn.Module, narrower: nn.Module) -> None:
    """Copy a Conv2d, ConvTranspose2d or BatchNorm2d of fewer channels into the first channels of
    this one, so that its old outputs compute exactly what they did: they read none of the new
    inputs (those weights are zero). New outputs keep their random init; whoever reads them starts
    with zero weights for them too, so a model grown layer by layer restores as before, and training
    gives the new channels their use (the widening of Net2Net, Chen et al. 2016, with zeros)."""
    if type(layer) is not type(narrower):
        raise ValueError(f"a {type(layer).__name__} can only grow from another")
    if isinstance(layer, nn.BatchNorm2d):
        pairs = [(layer.weight, narrower.weight), (layer.bias, narrower.bias),
                 (layer.running_mean, narrower.running_mean), (layer.running_var, narrower.running_var)]
        layer.num_batches_tracked.copy_(narrower.num_batches_tracked)
    else:  # a ConvTranspose2d keeps its weight as (in, out, ...): seen transposed, every weight is (out, in, ...)
        turn = (lambda w: w.transpose(0, 1)) if isinstance(layer, nn.ConvTranspose2d) else (lambda w: w)
        weight, theirs = turn(layer.weight), turn(narrower.weight)
        if weight.shape[2:] != theirs.shape[2:] or layer.groups != narrower.groups:
            raise ValueError("a layer can only grow from one of the same kernel")
        pairs = [(weight, theirs), (layer.bias, narrower.bias)]
    for mine, old in pairs:
        if any(a < b for a, b in zip(mine.shape, old.shape)):
            raise ValueError(f"a layer can only grow from a narrower one, not from {tuple(old.shape)} "
                             f"to {tuple(mine.shape)}")
    if not isinstance(layer, nn.BatchNorm2d):
        weight[:theirs.shape[0], theirs.shape[1]:] = 0.0
    for mine, old in pairs:
        mine[tuple(slice(0, n) for n in old.shape)] = old


def _block(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """The paper's block: 3x3 conv (no activation) -> BatchNorm -> swish."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, 1), nn.BatchNorm2d(out_ch), nn.SiLU())


def _up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Transposed 3x3 conv that exactly doubles H and W -> BatchNorm -> swish."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 3, 2, 1, output_padding=1), nn.BatchNorm2d(out_ch), nn.SiLU()
    )


class Encoder(nn.Module):
    def __init__(self, cfg: LNCAConfig):
        super().__init__()
        self.skip = _block(cfg.image_channels, cfg.ae_channels, 2)  # c1
        self.path = _block(cfg.image_channels, cfg.ae_channels, 2)  # p1
        self.down = _block(cfg.ae_channels, cfg.latent_channels, 2)  # z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image (N, 3, H, W), H and W multiples of 4 -> (latent (N, C, H/4, W/4), skip (N, A, H/2, W/2))."""
        skip = self.skip(x)
        return self.down(skip + self.path(x)), skip


class RefineBlock(nn.Module):
    """x + conv(swish(conv(x))), 3x3 convs at the skip's resolution: more depth where the decoder
    turns the latent and the (degraded) skip into detail. The second conv starts at zero, so a new
    block passes its input through unchanged: a model grown with more blocks (LNCA.grow_from)
    restores exactly as before, and training gives the blocks their use."""

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, inner, 3, 1, 1)
        self.conv2 = nn.Conv2d(inner, channels, 3, 1, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(x)))


class Decoder(nn.Module):
    """Latent and skip -> the image (sigmoid), or with `residual` a correction to add to the input
    (unbounded: LNCA adds it and clips)."""

    def __init__(self, cfg: LNCAConfig):
        super().__init__()
        self.up = _up_block(cfg.latent_channels, cfg.ae_channels)  # t2
        self.merge = _block(cfg.ae_channels, cfg.ae_channels, 1)  # m
        self.refine = nn.Sequential(*(RefineBlock(cfg.ae_channels, cfg.refine_expand * cfg.ae_channels)
                                      for _ in range(cfg.decoder_blocks)))
        self.out = nn.Sequential(
            nn.ConvTranspose2d(cfg.ae_channels, cfg.image_channels, 3, 2, 1, output_padding=1),
            nn.BatchNorm2d(cfg.image_channels),
            nn.Identity() if cfg.residual else nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.out(self.refine(self.merge(self.up(z) + skip)))

    def start_as_identity(self) -> None:
        """Make a residual decoder's correction zero whatever its input (the last BatchNorm's scale
        and shift to 0): the model then starts by returning its input unchanged, and training
        starts from "do no harm"."""
        norm = self.out[1]
        nn.init.zeros_(norm.weight)
        nn.init.zeros_(norm.bias)


class CellConv(nn.Conv2d):
    """A conv over channels-last cells (N, h, w, C) -> (N, h, w, out).

    Its parameters are an ordinary Conv2d's, so weights files are unchanged. A 1x1 conv is a
    matmul on the last dimension (faster on a CPU than an NCHW conv, and no layout change); a 3x3
    or grouped conv runs on a permuted view, which is NCHW in `channels_last` memory, so neither
    permute copies.
    """

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == (1, 1) and self.groups == 1:
            return F.linear(cells, self.weight.flatten(1), self.bias)
        multiplier = self.out_channels // self.groups
        if cells.dtype == torch.bfloat16 and self.groups == self.in_channels and multiplier > 1:
            # The same conv as one channel per group, each input repeated: oneDNN's bf16 kernel for
            # that is several times faster than the one for a channel multiplier.
            repeated = cells.repeat_interleave(multiplier, dim=-1).permute(0, 3, 1, 2)
            return F.conv2d(repeated, self.weight, self.bias, self.stride, self.padding,
                            groups=self.out_channels).permute(0, 2, 3, 1)
        return super().forward(cells.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """NAFNet's gate: the two halves of the channels (last dimension), multiplied."""
    a, b = x.chunk(2, dim=-1)
    return a * b


class NAFCA(nn.Module):
    """The NAFNet-style update rule on channels-last cells. A cell sees its 3x3 neighbours
    through one conv per step:

    - "gate" (the paper): a 3x3 conv to a 1-channel spatial gate, so neighbours reach a cell only
      through one scalar; the channel split is 1x1.
    - "depthwise": NAFNet's own depthwise 3x3 conv in the split, so every channel sees its
      neighbours, and the gate becomes 1x1. Still one cell of reach per step (same halo).
    """

    def __init__(self, cell_channels: int, update_channels: int, embed_dim: int, dropout: float,
                 perception: str = "gate"):
        super().__init__()
        d, e = cell_channels, embed_dim
        split_k, gate_k = (3, 1) if perception == "depthwise" else (1, 3)
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.expand = CellConv(d, e, 1)
        self.split = CellConv(e, 2 * e, split_k, padding=split_k // 2, groups=e)
        self.spatial_gate = CellConv(e, 1, gate_k, padding=gate_k // 2)
        self.project = CellConv(e, d, 1)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.ffn_in = CellConv(d, 2 * e, 1)
        self.ffn_out = CellConv(e, d, 1)
        self.norm3 = nn.LayerNorm(d, eps=1e-6)
        self.update = CellConv(d, update_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.beta = nn.Parameter(torch.zeros(1, d, 1, 1))  # NCHW-shaped, as in the weights files
        self.gamma = nn.Parameter(torch.zeros(1, d, 1, 1))

    @torch.no_grad()
    def grow_from(self, narrower: "NAFCA") -> None:
        """Take a rule of the same cells but a smaller embed_dim, so that this wider one computes
        exactly what it did: its weights go where its channels meet in the gates, and the new
        channels start as this rule's random init, read by no one (their columns in the spatial
        gate, project and ffn_out are zero) until training gives them a use."""
        e0, e1 = narrower.expand.out_channels, self.expand.out_channels
        same_cells = narrower.norm1.normalized_shape == self.norm1.normalized_shape
        if e0 > e1 or e0 % 2 or e1 % 2 or not same_cells:
            raise ValueError(f"a rule of {e1} channels can only grow from a narrower one of the same cells "
                             "(even widths)")
        # simple_gate multiplies channel i by channel e + i; the split's channel j reads expand's j // 2
        gated = [*range(e0), *range(e1, e1 + e0)]  # where the narrower rule's 2 * e0 gated channels go
        expanded = [*range(e0 // 2), *range(e1 // 2, e1 // 2 + e0 // 2)]  # ... and its e0 expanded ones
        for mine, theirs, rows in ((self.expand, narrower.expand, expanded), (self.split, narrower.split, gated),
                                   (self.ffn_in, narrower.ffn_in, gated)):
            mine.weight[rows] = theirs.weight
            mine.bias[rows] = theirs.bias
        for mine, theirs in ((self.spatial_gate, narrower.spatial_gate), (self.project, narrower.project),
                             (self.ffn_out, narrower.ffn_out)):
            mine.weight.zero_()
            mine.weight[:, :e0] = theirs.weight
            mine.bias.copy_(theirs.bias)
        for name in ("norm1", "norm2", "norm3", "update"):
            getattr(self, name).load_state_dict(getattr(narrower, name).state_dict())
        self.beta.copy_(narrower.beta)
        self.gamma.copy_(narrower.gamma)

    def flops_per_cell(self) -> int:
        """Multiply-adds (x2) of one step of one cell: the convs' weights, each used once per cell.
        The element-wise work (norms, gates, residuals) is not counted: the physical floor."""
        return 2 * sum(m.weight.numel() for m in self.modules() if isinstance(m, CellConv))

    def forward(self, cells: torch.Tensor, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Cells (N, h, w, D) -> the update of rows [start, stop) for the out and hidden channels,
        (N, stop - start, w, D - C), reading one row more on each side: the rule's reach. `rows`
        None: every row, with no slicing, so that a traced graph holds no constant of the grid's shape."""
        window, core, keep = cells, cells, slice(None)
        if rows is not None:
            start, stop = rows
            lo, hi = max(start - 1, 0), min(stop + 1, cells.shape[1])
            window, core, keep = cells[:, lo:hi], cells[:, start:stop], slice(start - lo, stop - lo)
        x = simple_gate(self.split(self.expand(self.norm1(window))))
        x = (x * self.spatial_gate(x))[:, keep]
        y = core + self.beta.flatten() * self.dropout(self.project(x))
        x = self.ffn_out(simple_gate(self.ffn_in(self.norm2(y))))
        x = y + self.gamma.flatten() * self.dropout(x)
        return self.update(self.norm3(x))


def _hash31(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer mix (int64 in, int64 out); products stay below 2**63, so nothing overflows."""
    x = x & 0x7FFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0x7FFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0x7FFFFFFF
    return x ^ (x >> 16)


def update_mask(
    seeds: torch.Tensor, step: int, origin: tuple[int, int], size: tuple[int, int], rate: float
) -> torch.Tensor:
    """Which cells update at this step: (N, h, w, 1) of 0/1, a pure function of (seed, step, global cell).

    Hashing global coordinates (not drawing from an RNG) makes a tile's mask equal to the
    whole image's mask over the same cells, so tiled and untiled runs agree even when rate < 1.
    """
    device = seeds.device
    ys = torch.arange(origin[0], origin[0] + size[0], device=device)[:, None]
    xs = torch.arange(origin[1], origin[1] + size[1], device=device)[None, :]
    h = _hash31(seeds.long()[:, None, None] * 1_000_003 + step)
    h = _hash31(h ^ _hash31(ys + 0x2545F491))
    h = _hash31(h ^ _hash31(xs + 0x1B873593))
    return ((h.float() / 2**31) < rate).float()[..., None]


#: Cells updated together on a CPU: a band of rows this large keeps one step's working set (about
#: 4 kB a cell) in the CPU's cache instead of streaming every intermediate through memory (what it
#: buys: docs/BENCHMARKS.md). A GPU takes the whole grid at once.
BAND_CELLS = 4096


class NCA(nn.Module):
    """A cellular automaton of cells [in | out | hidden] updated by NAFCA; `in` is never updated.

    Cells live channels-last, (N, h, w, D), for the whole run: the rule's 1x1 convs are matmuls
    on the last dimension, and no step changes the layout. Images and latents stay (N, C, H, W):
    `seed` and `output` are the only crossings.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, embed_dim: int, dropout: float,
                 update_rate: float, perception: str = "gate"):
        super().__init__()
        self.in_channels, self.out_channels, self.update_rate = in_channels, out_channels, update_rate
        self.rule = NAFCA(in_channels + out_channels + hidden_channels, out_channels + hidden_channels,
                          embed_dim, dropout, perception)
        self.hidden_channels = hidden_channels
        #: Steps on a CPU run in row bands (BAND_CELLS). False: the whole grid at once, as on a GPU;
        #: what a traced graph (export.py) needs, since the bands depend on the grid's shape.
        self.banded = True

    def seed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Initial cells (N, h, w, D) from inputs (N, C, h, w): in = inputs, out = 0.5, hidden = 0."""
        inputs = inputs.permute(0, 2, 3, 1)
        n, h, w, _ = inputs.shape
        out = inputs.new_full((n, h, w, self.out_channels), 0.5)
        hidden = inputs.new_zeros((n, h, w, self.hidden_channels))
        return torch.cat([inputs, out, hidden], dim=-1)

    def step(self, cells: torch.Tensor, step: int = 0, origin: tuple[int, int] = (0, 0),
             seeds: torch.Tensor | None = None) -> torch.Tensor:
        """One update of every cell: a band of rows at a time on a CPU (see BAND_CELLS) when `banded`,
        else the whole grid at once."""
        n, h, w, _ = cells.shape
        if not self.banded or cells.device.type != "cpu":
            return self._step_rows(cells, None, step, origin, seeds)
        rows = max(1, BAND_CELLS // (n * w))
        bands = [self._step_rows(cells, (start, min(start + rows, h)), step, origin, seeds)
                 for start in range(0, h, rows)]
        return bands[0] if len(bands) == 1 else torch.cat(bands, dim=1)

    def _step_rows(self, cells: torch.Tensor, rows: tuple[int, int] | None, step: int, origin: tuple[int, int],
                   seeds: torch.Tensor | None) -> torch.Tensor:
        """The updated cells of rows [start, stop), or of the whole grid for rows None."""
        update = self.rule(cells, rows)
        if self.update_rate < 1.0:
            if seeds is None:
                seeds = torch.zeros(cells.shape[0], dtype=torch.long, device=cells.device)
            first_row = origin[0] + (rows[0] if rows else 0)
            mask = update_mask(seeds, step, (first_row, origin[1]), update.shape[1:3], self.update_rate)
            update = update * mask.to(update.dtype)
        band = cells if rows is None else cells[:, rows[0]:rows[1]]
        return torch.cat([band[..., : self.in_channels], band[..., self.in_channels:] + update], dim=-1)

    def run(self, cells: torch.Tensor, steps: int, origin: tuple[int, int] = (0, 0),
            seeds: torch.Tensor | None = None, on_step: Callable[[], None] | None = None) -> torch.Tensor:
        """`steps` updates; on_step() after each (progress for a long restore)."""
        for t in range(steps):
            cells = self.step(cells, t, origin, seeds)
            if on_step:
                on_step()
        return cells

    def output(self, cells: torch.Tensor) -> torch.Tensor:
        """The out channels as (N, C, h, w), in channels_last memory (a view, no copy)."""
        return cells[..., self.in_channels: self.in_channels + self.out_channels].permute(0, 3, 1, 2)

    def hidden(self, cells: torch.Tensor) -> torch.Tensor:
        return cells[..., self.in_channels + self.out_channels:]


class LNCA(nn.Module):
    """Latent NCA: encoder -> NCA on the latent grid -> decoder (with the degraded input's skip).

    What the engine asks of an architecture is its face: `arch`, `multiple_of`, `halo(steps)`,
    `bytes_per_cell()`, `supports_half` and `restore_padded`; nothing else of the model's insides.
    """

    arch = "lnca"  # the weights files' name for this architecture (hub.ARCH_KEY)
    supports_half = True  # bf16 autocast keeps its quality (docs/BENCHMARKS.md section 0); fp16 runs on GPUs

    def __init__(self, config: LNCAConfig = LNCAConfig()):
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.nca = NCA(c.latent_channels, c.latent_channels, c.hidden_channels, c.embed_dim, c.dropout, c.update_rate,
                       c.perception)

    # -- the face the engine sees

    @property
    def multiple_of(self) -> int:
        """Pixels per side of one grid cell: restore_padded takes sides that are multiples of it, and
        the engine plans tiles in these cells."""
        return self.config.downsample

    def halo(self, steps: int) -> int:
        """Grid cells a tile must extend past its core for the core to match an untiled run.

        Each NCA step reaches one cell; the encoder reaches one more and the decoder (with the
        skip) two more, and one more per refine block (two 3x3 convs at half resolution); one spare
        cell for safety.
        """
        return steps + 4 + self.config.decoder_blocks

    def bytes_per_cell(self) -> int:
        """Rough peak working memory per grid cell of one tile, float32 (whole-grid NCA steps, as
        on a GPU; the CPU's banded steps need less)."""
        c = self.config
        refine = 4 * (c.refine_expand + 1) * c.ae_channels if c.decoder_blocks else 0  # a block's inner, output
        return 4 * (4 * c.cell_channels + 6 * c.embed_dim + 16 * c.ae_channels + refine)

    def restore_padded(self, x: torch.Tensor, steps: int, origin: tuple[int, int] = (0, 0),
                       seeds: torch.Tensor | None = None, on_step: Callable[[], None] | None = None) -> torch.Tensor:
        """Restore (N, 3, H, W) with H, W multiples of 4; origin is the first latent cell's global
        position; on_step() is called after each NCA step."""
        z, skip = self.encoder(_channels_last(x))
        cells = self.nca.run(self.nca.seed(z), steps, origin, seeds, on_step)
        return self._image(self.decoder(self.nca.output(cells), skip), x)

    def _image(self, decoded: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        """The image in [0, 1], as the sigmoid decoder gives it: a residual output is clipped."""
        return (decoded + degraded).clamp(0.0, 1.0) if self.config.residual else decoded

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Restore a batch of images (N, 3, H, W) in [0, 1]; any H, W (padded and cropped back)."""
        height, width = x.shape[-2:]
        out = self.restore_padded(pad_to_multiple(x, self.config.downsample), steps or self.config.steps)
        return out[..., :height, :width]

    #: The config fields that LNCA.grow_from may grow.
    GROWABLE = ("embed_dim", "decoder_blocks", "refine_expand", "ae_channels")

    def widths(self) -> tuple[int, ...]:
        """The sizes LNCA.grow_from may grow: the rule's width, the decoder's blocks, their inner
        width and the autoencoder's (the half-resolution stream of skip and decoder)."""
        c = self.config
        return c.embed_dim, c.decoder_blocks, c.refine_expand * c.ae_channels, c.ae_channels

    def grow_from(self, smaller: "LNCA") -> None:
        """Take a model that differs only by a narrower rule (a smaller embed_dim; NAFCA.grow_from),
        fewer or narrower decoder blocks or a narrower autoencoder (grow_layer, layer by layer): this
        one then restores exactly as that one does, and can train on with the room it has gained."""
        grown = {field: getattr(self.config, field) for field in (*self.GROWABLE, "steps")}
        if (dataclasses.replace(smaller.config, **grown) != self.config
                or any(theirs > mine for theirs, mine in zip(smaller.widths(), self.widths()))):
            raise ValueError("only the rule's width (embed_dim), the decoder's blocks and the autoencoder's "
                             "width may differ from the model it grows from, and only grow")
        layers = dict(self.named_modules())
        for name, layer in smaller.named_modules():
            if name.startswith(("encoder.", "decoder.")) and isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d,
                                                                             nn.BatchNorm2d)):
                grow_layer(layers[name], layer)
        self.nca.rule.grow_from(smaller.nca.rule)

    def oracle(self, clean: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        """The ceiling of any NCA on this autoencoder: decode the CLEAN latent with the DEGRADED skip."""
        height, width = clean.shape[-2:]
        z_clean, _ = self.encoder(_channels_last(pad_to_multiple(clean, self.config.downsample)))
        degraded = _channels_last(pad_to_multiple(degraded, self.config.downsample))
        _, skip = self.encoder(degraded)
        return self._image(self.decoder(z_clean, skip), degraded)[..., :height, :width]


class PixelNCA(nn.Module):
    """The baseline the paper compares against: the same NAFCA rule with one cell per pixel.

    Cells are [in 3 | out 3 | hidden H], as in ViTCA; the out channels are the restored image.
    """

    def __init__(self, config: LNCAConfig = LNCAConfig()):
        super().__init__()
        self.config = config
        c = config.image_channels
        self.nca = NCA(c, c, config.hidden_channels, config.embed_dim, config.dropout, config.update_rate,
                       config.perception)

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        cells = self.nca.run(self.nca.seed(x), steps or self.config.steps)
        return self.nca.output(cells).clamp(0, 1).contiguous()


#: The architectures a weights file may name (its metadata's hub.ARCH_KEY), each with its config.
ARCHITECTURES = {LNCA.arch: (LNCA, LNCAConfig)}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
