"""SegNet and SegNet-MTAN as in the MTAN repository (lorenmt/mtan, ``im2im_pred``), the NYUv2 setting of the
MTAN, CAGrad, Nash-MTL and IGB papers.

SegNet (VGG-16-style, filters 64-128-256-512-512): five encoder stages (conv-BN-ReLU blocks: 1+1, 1+1, 1+2,
1+2, 1+2) each followed by 2×2 max-pooling with indices, and five mirrored decoder stages that max-unpool with
those indices. The shared network ends in a 64-channel full-resolution map; each task head is a 3×3
conv (64→64) and a 1×1 conv (64→outputs) — the MTAN repo's "split / standard" multi-task SegNet (= HPS).
Weights are Xavier-normal, biases 0, BN weight 1 (as the MTAN repo); there is no pretraining. Input sizes
must be divisible by 32.

SegNet-MTAN adds, per task, attention masks on every encoder and decoder stage of the shared SegNet:
encoder stage j: ``a = g_j^t([e_j, f_{j-1}^t])`` (``g_0^t(e_0)``) applied to the stage output, then a shared
conv block and 2×2 max-pooling; decoder stage j: the previous task feature is upsampled ×2 (bilinear, aligned
corners), passed through a shared conv block, and ``a = d_j^t([unpooled_j, ·])`` is applied to the stage
output. Parameter split (as the CAGrad / Nash-MTL code): the SegNet and the shared attention conv blocks are
shared; the per-task masks and heads are task-specific. No single shared representation exists for
SegNet-MTAN.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.models.base import MultiTaskModel
from mtl.models.mtan import attention_block

FILTERS = (64, 128, 256, 512, 512)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 conv (padding 1), BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def segnet_head(in_channels: int, out_channels: int) -> nn.Sequential:
    """The MTAN repo's prediction layer: 3×3 conv then 1×1 conv."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def xavier_init(module: nn.Module) -> None:
    """The MTAN repo's initialisation."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0.0)


class SegNetBackbone(nn.Module):
    """The shared SegNet encoder-decoder. ``forward`` returns the final 64-channel map; ``trace`` also
    returns the intermediate maps SegNet-MTAN attends to."""

    def __init__(self, filters: Sequence[int] = FILTERS) -> None:
        super().__init__()
        f = list(filters)
        self.filters = f
        self.encoder_block = nn.ModuleList(
            [conv_block(3, f[0])] + [conv_block(f[i], f[i + 1]) for i in range(4)]
        )
        self.decoder_block = nn.ModuleList(
            [conv_block(f[0], f[0])] + [conv_block(f[i + 1], f[i]) for i in range(4)]
        )
        enc = [conv_block(f[0], f[0]), conv_block(f[1], f[1])]
        dec = [conv_block(f[0], f[0]), conv_block(f[0], f[0])]
        for i in range(2, 5):
            enc.append(nn.Sequential(conv_block(f[i], f[i]), conv_block(f[i], f[i])))
            dec.append(nn.Sequential(conv_block(f[i - 1], f[i - 1]), conv_block(f[i - 1], f[i - 1])))
        self.conv_block_enc = nn.ModuleList(enc)
        self.conv_block_dec = nn.ModuleList(dec)

    def trace(self, x: Tensor) -> dict[str, list[Tensor]]:
        """``enc_first[j]``, ``enc_out[j]`` (encoder stage j, before pooling), ``unpooled[j]``, ``dec_out[j]``
        (decoder step j = 0..4, from the deepest stage up)."""
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(
                f"SegNet needs input height and width divisible by 32, got {tuple(x.shape[-2:])}"
            )
        enc_first, enc_out, indices = [], [], []
        h = x
        for j in range(5):
            a = self.encoder_block[j](h)
            b = self.conv_block_enc[j](a)
            h, idx = F.max_pool2d(b, kernel_size=2, stride=2, return_indices=True)
            enc_first.append(a)
            enc_out.append(b)
            indices.append(idx)
        unpooled, dec_out = [], []
        for j in range(5):
            k = 4 - j
            up = F.max_unpool2d(h, indices[k], kernel_size=2, stride=2, output_size=enc_out[k].shape[-2:])
            h = self.conv_block_dec[k](self.decoder_block[k](up))
            unpooled.append(up)
            dec_out.append(h)
        return {"enc_first": enc_first, "enc_out": enc_out, "unpooled": unpooled, "dec_out": dec_out}

    def forward(self, x: Tensor) -> Tensor:
        return self.trace(x)["dec_out"][-1]


class SegNetHPS(MultiTaskModel):
    """Hard parameter sharing on SegNet: shared encoder-decoder, one :func:`segnet_head` per task."""

    def __init__(self, head_channels: Mapping[str, int], filters: Sequence[int] = FILTERS) -> None:
        super().__init__()
        self.backbone = SegNetBackbone(filters)
        self.heads = nn.ModuleDict({t: segnet_head(filters[0], c) for t, c in head_channels.items()})
        xavier_init(self)

    def encode(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        return {t: head(z) for t, head in self.heads.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        return self.heads.parameters()


class SegNetMTAN(MultiTaskModel):
    """SegNet-MTAN for any number of tasks (the MTAN repo's ``model_segnet_mtan``)."""

    has_shared_representation = False

    def __init__(self, head_channels: Mapping[str, int], filters: Sequence[int] = FILTERS) -> None:
        super().__init__()
        f = list(filters)
        self.task_names = list(head_channels)
        self.backbone = SegNetBackbone(f)
        # shared attention conv blocks
        self.encoder_block_att = nn.ModuleList(
            [conv_block(f[j], f[j + 1]) for j in range(4)] + [conv_block(f[4], f[4])]
        )
        self.decoder_block_att = nn.ModuleList(
            [conv_block(f[0], f[0])]
            + [conv_block(f[k], f[k - 1]) for k in range(1, 4)]
            + [conv_block(f[4], f[4])]
        )
        # per-task attention masks
        self.encoder_att = nn.ModuleDict()
        self.decoder_att = nn.ModuleDict()
        for t in self.task_names:
            self.encoder_att[t] = nn.ModuleList(
                [attention_block(f[0], f[0], f[0])]
                + [attention_block(2 * f[j], f[j], f[j]) for j in range(1, 5)]
            )
            self.decoder_att[t] = nn.ModuleList(
                [attention_block(2 * f[0], f[0], f[0])]
                + [attention_block(f[k] + f[k - 1], f[k - 1], f[k - 1]) for k in range(1, 5)]
            )
        self.heads = nn.ModuleDict({t: segnet_head(f[0], c) for t, c in head_channels.items()})
        xavier_init(self)

    def _task_feature(self, g: dict[str, list[Tensor]], t: str) -> Tensor:
        feat: Tensor | None = None
        for j in range(5):
            inp = g["enc_first"][j] if feat is None else torch.cat([g["enc_first"][j], feat], dim=1)
            masked = self.encoder_att[t][j](inp) * g["enc_out"][j]
            feat = F.max_pool2d(self.encoder_block_att[j](masked), kernel_size=2, stride=2)
        assert feat is not None
        for j in range(5):
            k = 4 - j
            up = F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=True)
            up = self.decoder_block_att[k](up)
            mask = self.decoder_att[t][k](torch.cat([g["unpooled"][j], up], dim=1))
            feat = mask * g["dec_out"][j]
        return feat

    def encode(self, x: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        g = self.backbone.trace(x)
        return {t: self._task_feature(g, t) for t in self.task_names}

    def decode(self, z: Mapping[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return {t: self.heads[t](z[t]) for t in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.backbone.parameters()
        yield from self.encoder_block_att.parameters()
        yield from self.decoder_block_att.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.encoder_att.parameters()
        yield from self.decoder_att.parameters()
        yield from self.heads.parameters()
