"""U-ViT diffusion trunk (docs/method.md): patch tokens + one time token, in/mid/out transformer blocks
joined by long skips, class embedding added to every token. Its 13 (in general 2·depth+1) block
outputs are the "layers" D-Cube reads; :meth:`UViT.layers` can stop after any of them."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import Config
from .diffusion import Schedule

SKIP_SIGMA = 0.5  # image spread assumed by the input skip (EDM's σ_data; images lie in [-1, 1])


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block; an out-block first fuses its long skip with a linear layer."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            if skip is None:
                raise ValueError("an out-block fuses a long skip: pass the matching in-block's output")
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    skip_gain: torch.Tensor  # buffer (diffusion steps,), with cfg.input_skip: g(t) of the trunk's input skip

    def __init__(self, cfg: Config, num_classes: int):
        super().__init__()
        w, p = cfg.width, cfg.patch_size
        self.patch_size, self.grid, self.depth = p, cfg.grid, cfg.depth
        self.num_tokens = 1 + cfg.grid ** 2
        self.patch_embed = nn.Conv2d(1, w, kernel_size=p, stride=p)
        self.time_embed = nn.Sequential(nn.Linear(w, 4 * w), nn.SiLU(), nn.Linear(4 * w, w))
        self.class_embed = nn.Embedding(num_classes, w)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, w))
        self.in_blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.mid_block = Block(w, cfg.heads, cfg.mlp_ratio)
        self.out_blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio, skip=True) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(w)
        self.decoder_pred = nn.Linear(w, p * p)
        self.final_conv = nn.Conv2d(1, 1, 3, padding=1)
        self.input_skip = cfg.input_skip
        if cfg.input_skip:
            ab = Schedule(cfg).alphas_bar
            gain = (1 - ab).sqrt() / (ab * SKIP_SIGMA ** 2 + 1 - ab)
            self.register_buffer("skip_gain", gain.float(), persistent=False)  # derived from the config, not saved
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init)
    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def num_layers(self) -> int:
        return 2 * self.depth + 1

    def time_token(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) integer timesteps → (B, width) time tokens."""
        return self.time_embed(timestep_embedding(t, self.pos_embed.shape[-1]))

    def tokens(self, x: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor | None = None,
               drop: torch.Tensor | None = None, time: torch.Tensor | None = None) -> torch.Tensor:
        """Embed images (B, 1, H, W) and timesteps (B,) into (B, 1 + N, width) tokens.

        ``time`` passes precomputed time tokens (B, width) instead of ``t``. ``y`` adds the class
        embedding to every token; rows where ``drop`` is true get none (the unconditional trunk)."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        if time is None:
            if t is None:
                raise ValueError("tokens need timesteps t or precomputed time tokens")
            time = self.time_token(t)
        h = torch.cat([time[:, None], patches], dim=1) + self.pos_embed
        if y is not None:
            c = self.class_embed(y)
            if drop is not None:
                c = c * (~drop)[:, None].to(c.dtype)
            h = h + c[:, None]
        return h

    def layers(self, x: torch.Tensor, t: torch.Tensor | None, upto: int | None = None,
               y: torch.Tensor | None = None, drop: torch.Tensor | None = None,
               time: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Block outputs 0..upto (in-blocks, mid, out-blocks); no block after ``upto`` runs."""
        upto = self.num_layers - 1 if upto is None else upto
        if not 0 <= upto < self.num_layers:
            raise ValueError(f"layer {upto} out of range 0..{self.num_layers - 1}")
        h = self.tokens(x, t, y, drop, time)
        outs: list[torch.Tensor] = []
        for blk in self.in_blocks:
            h = blk(h)
            outs.append(h)
            if len(outs) > upto:
                return outs
        h = self.mid_block(h)
        outs.append(h)
        for i, blk in enumerate(self.out_blocks):
            if len(outs) > upto:
                break
            h = blk(h, outs[self.depth - 1 - i])
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the noise. Returns (eps, mid-block tokens) — the latter feeds the contrastive loss."""
        outs = self.layers(x, t, None, y, drop)
        h = self.norm(outs[-1])[:, 1:]
        b, p, g = x.shape[0], self.patch_size, self.grid
        img = self.decoder_pred(h).reshape(b, g, g, p, p).permute(0, 1, 3, 2, 4).reshape(b, 1, g * p, g * p)
        eps = self.final_conv(img)
        if self.input_skip:
            eps = eps + self.skip_gain[t].view(-1, 1, 1, 1).to(eps.dtype) * x
        return eps, outs[self.depth]
