"""The ResNet-50 (bottleneck) guide branch of the D-Cube head, grayscale input, and the plain-CNN baselines
(ResNet-18/50, or the guide branch alone) trained beside it.

Module names follow the common torchvision layout, so a local ResNet-50 state dict (safetensors,
or a tensor-only .pth read with ``weights_only=True``) loads into the ``paper`` preset; RGB stem
weights are summed over the colour axis. Nothing is ever downloaded."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from dcube_edge.errors import UserError

from .config import Config


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    """The two-3×3 block of ResNet-18/34 (used by the plain-CNN baseline)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


ResidualBlock = type[Bottleneck] | type[BasicBlock]  # what a stage stacks; ``expansion``: its channels per width
BLOCKS: dict[str, ResidualBlock] = {"bottleneck": Bottleneck, "basic": BasicBlock}


class ResNet(nn.Module):
    def __init__(self, width: int = 64, layers: tuple[int, ...] = (3, 4, 6, 3), stem: str = "imagenet",
                 block: ResidualBlock = Bottleneck):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem == "small":
            self.conv1 = nn.Conv2d(1, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"unknown ResNet stem {stem!r}")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        for i, n in enumerate(layers):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width * 2 ** i, stride=2 if (j == 0 and i > 0) else 1))
                cin = width * 2 ** i * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def load_local_weights(self, path: str | Path) -> list[str]:
        """Load a local ResNet state dict; returns the keys it did not have. Never unpickles objects."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # a pickle with objects in it is refused, never executed
                raise UserError(f"{path} holds more than plain tensors ({type(e).__name__}); "
                                 "use a safetensors file or a tensor-only state dict") from None
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" in state and state["conv1.weight"].shape[1] == 3:
            state["conv1.weight"] = state["conv1.weight"].sum(1, keepdim=True)
        result = self.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise UserError(f"{path.name} does not fit this ResNet: unexpected keys {result.unexpected_keys[:3]}")
        return list(result.missing_keys)


def guide_branch(cfg: Config) -> ResNet:
    """D-Cube's ResNet guide branch as the config describes it (width, blocks per stage, block type, stem)."""
    return ResNet(*layout(dataclasses.replace(cfg, model="branch")))


ARCHS: dict[str, tuple[ResidualBlock, tuple[int, ...] | None]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "branch": (Bottleneck, None)}  # D-Cube's own ResNet guide branch (the preset's width), alone


def layout(cfg: Config) -> tuple[int, tuple[int, ...], str, ResidualBlock]:
    """(width, blocks per stage, stem, block) of the network ``cfg.model`` names: a baseline or the guide branch."""
    if cfg.model not in ARCHS:
        raise UserError(f"unknown baseline {cfg.model!r}; choose one of {', '.join(ARCHS)}")
    block, layers = ARCHS[cfg.model]
    if layers is None:
        return cfg.resnet_width, tuple(cfg.resnet_layers), cfg.resnet_stem, BLOCKS[cfg.resnet_block]
    return 64, layers, "small" if cfg.image_size <= 64 else "imagenet", block


def branch_twin(cfg: Config) -> str | None:
    """The standard baseline the preset's guide branch is identical to (e.g. ``small``'s is ResNet-18), if any."""
    branch = layout(dataclasses.replace(cfg, model="branch"))
    return next((name for name in ARCHS if name != "branch"
                 and layout(dataclasses.replace(cfg, model=name)) == branch), None)


class Baseline(nn.Module):
    def __init__(self, cfg: Config, num_classes: int):
        super().__init__()
        self.backbone = ResNet(*layout(cfg))
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean(dim=(2, 3)))


class BaselineGraph(nn.Module):
    """A baseline CNN as an inference graph, with :class:`~dcube_edge.head.FixedGraph`'s attributes (no
    timesteps, no trunk to cut), sharing the model's modules under their own names (``backbone.*``, ``fc``)
    so quantizers' scopes read as in the policy."""

    timesteps: tuple[int, ...] = ()
    layers_used: tuple[int, ...] = ()
    upto: int | None = None

    def __init__(self, model: Baseline):
        super().__init__()
        self.backbone, self.fc = model.backbone, model.fc
        self.last_layer = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean(dim=(2, 3)))
