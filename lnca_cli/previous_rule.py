"""The NAFCA rule as first written: NCHW cells, every 1x1 as a Conv2d, the whole grid at each step.

Kept for two readers only: the tests, which check that the fast channels-last rule in
lnca_cli.model computes the same, and `lnca bench speed` / `lnca bench train`, which time the two
side by side. It reads the parameters of a model's own rule, so both run the same weights. The
restore path never imports it."""
import torch
import torch.nn.functional as F

from lnca_cli.model import LNCA, NCA, NAFCA, update_mask


def _layer_norm_2d(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + norm.eps)
    return x * norm.weight[:, None, None] + norm.bias[:, None, None]


def _conv(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, groups=conv.groups)


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return a * b


def rule(r: NAFCA, cells: torch.Tensor) -> torch.Tensor:
    """Cells (N, D, h, w) -> update (N, D - C, h, w)."""
    x = _gate(_conv(_conv(_layer_norm_2d(cells, r.norm1), r.expand), r.split))
    x = x * _conv(x, r.spatial_gate)
    y = cells + r.beta * r.dropout(_conv(x, r.project))
    x = _conv(_gate(_conv(_layer_norm_2d(y, r.norm2), r.ffn_in)), r.ffn_out)
    x = y + r.gamma * r.dropout(x)
    return _conv(_layer_norm_2d(x, r.norm3), r.update)


def run(nca: NCA, cells: torch.Tensor, steps: int, origin=(0, 0), seeds=None) -> torch.Tensor:
    c = nca.in_channels
    for t in range(steps):
        update = rule(nca.rule, cells)
        if nca.update_rate < 1.0:
            seeds = torch.zeros(cells.shape[0], dtype=torch.long, device=cells.device) if seeds is None else seeds
            update = update * update_mask(seeds, t, origin, cells.shape[-2:], nca.update_rate).permute(0, 3, 1, 2)
        cells = torch.cat([cells[:, :c], cells[:, c:] + update], dim=1)
    return cells


def seed(nca: NCA, z: torch.Tensor) -> torch.Tensor:
    n, _, h, w = z.shape
    return torch.cat([z, z.new_full((n, nca.out_channels, h, w), 0.5), z.new_zeros((n, nca.hidden_channels, h, w))], 1)


class PreviousRuleLNCA(LNCA):
    """An LNCA whose NCA runs the previous formulation; the engine and training use it as they use LNCA."""

    @classmethod
    def of(cls, model: LNCA) -> "PreviousRuleLNCA":
        previous = cls(model.config)
        previous.load_state_dict(model.state_dict())
        return previous.train(model.training)

    def restore_padded(self, x: torch.Tensor, steps: int, origin: tuple[int, int] = (0, 0),
                       seeds: torch.Tensor | None = None, on_step=None) -> torch.Tensor:
        z, skip = self.encoder(x)
        cells = run(self.nca, seed(self.nca, z), steps, origin, seeds)
        return self._image(self.decoder(cells[:, self.nca.in_channels: 2 * self.nca.in_channels], skip), x)
