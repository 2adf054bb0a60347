"""Step 2 of D-Cube: the fused classification head, and :class:`DCube`, the whole inference model
(frozen trunk at fixed timesteps → selected layers → head → logits averaged over timesteps)."""
from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .resnet import guide_branch
from .uvit import UViT


class MultiKernel(nn.Module):
    """3×3 ‖ 5×5 convolutions, summed, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.k3 = nn.Conv2d(cin, cout, 3, padding=1)
        self.k5 = nn.Conv2d(cin, cout, 5, padding=2)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.k3(x) + self.k5(x)))


class Head(nn.Module):
    def __init__(self, cfg: Config, num_selected: int, num_classes: int):
        super().__init__()
        w, g = cfg.width, cfg.grid
        self.grid = g
        self.norm = nn.LayerNorm(w)  # one LayerNorm shared by every selected layer
        self.mix = nn.Conv1d(num_selected * (1 + g * g), g * g, kernel_size=1)
        self.resnet = guide_branch(cfg)
        self.guide = nn.Conv2d(self.resnet.out_channels, w, 1)
        self.score = nn.Conv2d(w, 1, 1)
        self.fuse = nn.Conv2d(2 * w, 1, 1)
        self.stages = nn.Sequential(MultiKernel(1, 64), MultiKernel(64, 32), MultiKernel(32, 4))
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(4 * g * g, 32), nn.ReLU(inplace=True),
                                 nn.Dropout(cfg.dropout), nn.Linear(32, num_classes))
        # training-only classifier on the globally pooled guide map (cfg.guide_loss_weight)
        self.guide_classifier = nn.Linear(w, num_classes) if cfg.guide_loss_weight > 0 else None
        self.last_guide_logits: torch.Tensor | None = None

    def forward(self, feats: list[torch.Tensor], image: torch.Tensor, num_timesteps: int) -> torch.Tensor:
        """feats: selected layers, each (T·B, 1+N, width), timestep-major; image: (B, 1, H, W).
        In training mode with a guide classifier, ``last_guide_logits`` holds its (B, classes) logits."""
        g = self.grid
        tokens = torch.cat([self.norm(f) for f in feats], dim=1)
        trunk_map = self.mix(tokens).transpose(1, 2).unflatten(2, (g, g))  # (T·B, width, g, g)
        guide = self.guide(self.resnet(image))
        if self.guide_classifier is not None and self.training:
            self.last_guide_logits = self.guide_classifier(guide.mean(dim=(2, 3)))
        if guide.shape[-1] != g:
            guide = nn.functional.interpolate(guide, size=(g, g), mode="bilinear", align_corners=False)
        # Class score by global sum pooling, divided by the grid area: a raw sum over g·g positions
        # saturates the sigmoid, the gated map's variance then falls under BatchNorm's eps and the
        # head outputs a constant (seen on BreastMNIST: validation AUC 0.5 at every epoch).
        score = torch.sigmoid(self.score(guide).sum(dim=(2, 3), keepdim=True) / (g * g))
        guide = guide.repeat(num_timesteps, 1, 1, 1)
        score = score.repeat(num_timesteps, 1, 1, 1)
        fused = self.fuse(torch.cat([trunk_map, guide], dim=1)) * score
        logits = self.mlp(self.stages(fused))
        return logits.unflatten(0, (num_timesteps, -1)).mean(0)


class DCube(nn.Module):
    """Preprocessed images (B, 1, H, W) → logits (B, classes). The trunk runs once on B×T and stops
    after the deepest selected layer."""

    timesteps: torch.Tensor  # buffer (T,): the fixed timesteps

    def __init__(self, cfg: Config, num_classes: int, layers: tuple[int, ...] | None = None):
        super().__init__()
        self.layers_used = tuple(layers if layers is not None else cfg.selected_layers)
        if not self.layers_used:
            raise ValueError("no layers selected")
        self.trunk = UViT(cfg, num_classes)
        self.head = Head(cfg, len(self.layers_used), num_classes)
        self.register_buffer("timesteps", torch.tensor(cfg.timesteps, dtype=torch.long), persistent=False)

    @property
    def truncate_after(self) -> int:
        """The deepest layer the head reads: inference never runs the trunk past it."""
        return max(self.layers_used)

    def features(self, x: torch.Tensor, timesteps: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Selected layer outputs for the unconditional trunk on the clean images, timestep-major.

        ``timesteps`` is (T,) shared by all images, or (T, B) per image (the reference's random t)."""
        ts = self.timesteps if timesteps is None else timesteps
        b = x.shape[0]
        t = (ts[:, None].expand(-1, b) if ts.dim() == 1 else ts).reshape(-1)
        outs = self.trunk.layers(x.repeat(ts.shape[0], 1, 1, 1), t, upto=self.truncate_after)
        return [outs[i] for i in self.layers_used]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x), x, self.timesteps.shape[0])


class FixedGraph(nn.Module):
    """A D-Cube model as an inference graph (what export traces and the torch backend runs), built by
    wrapping, never by changing the model: the fixed timesteps' time tokens precomputed (one constant,
    no timestep embedding at inference), the trunk cut after ``upto`` (default: the deepest selected
    layer), and with ``last_layer`` the last computed layer's tokens as a second output (the full-trunk
    benchmark graph). Build it after the weights are loaded."""

    time_tokens: torch.Tensor  # buffer (T, width): the fixed timesteps' time tokens

    def __init__(self, model: DCube, timesteps: tuple[int, ...] | None = None, upto: int | None = None,
                 last_layer: bool = False):
        super().__init__()
        # the model's own submodules (shared, not copied) under their usual names, so graph node scopes
        # read trunk.* / head.* as quantizers' ignored scopes expect
        self.trunk, self.head, self.layers_used = model.trunk, model.head, model.layers_used
        ts = torch.tensor(timesteps if timesteps else model.timesteps.tolist(), dtype=torch.long)
        self.timesteps = tuple(int(t) for t in ts)
        self.upto = model.truncate_after if upto is None else upto
        if self.upto < model.truncate_after:
            raise ValueError(f"cannot cut the trunk after layer {self.upto}: the head reads layer {model.truncate_after}")
        self.last_layer = last_layer
        with torch.no_grad():
            self.register_buffer("time_tokens", model.trunk.time_token(ts.to(model.timesteps.device)).detach(),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        t, b = len(self.timesteps), x.shape[0]
        time = self.time_tokens[:, None].expand(-1, b, -1).reshape(-1, self.time_tokens.shape[-1])
        outs = self.trunk.layers(x.repeat(t, 1, 1, 1), None, upto=self.upto, time=time)
        logits = self.head([outs[i] for i in self.layers_used], x, t)
        return (logits, outs[-1]) if self.last_layer else logits
