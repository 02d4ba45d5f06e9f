"""Per-task ASPP heads of the DeepLabV3+ setting (LibMTL's NYUv2/Cityscapes ``DeepLabHead``).

The head is torchvision's ``DeepLabHead`` (ASPP with atrous rates 12, 24, 36 and image pooling, 256 channels,
then 3×3 conv + BN + ReLU and a 1×1 classifier), applied to the stride-8 features of the dilated ResNet-50,
and its output is bilinearly upsampled (``align_corners=True``) to the input resolution, as LibMTL's
``process_preds`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F


class ASPPHead(nn.Module):
    """``DeepLabHead(in_channels, out_channels)`` followed by upsampling to ``output_size`` (H, W)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        output_size: Sequence[int],
        atrous_rates: Sequence[int] = (12, 24, 36),
    ) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        self.head = DeepLabHead(in_channels, out_channels, atrous_rates)
        self.output_size = (int(output_size[0]), int(output_size[1]))

    def forward(self, z: Tensor) -> Tensor:
        y = self.head(z)
        if tuple(y.shape[-2:]) != self.output_size:
            y = F.interpolate(y, size=self.output_size, mode="bilinear", align_corners=True)
        return y
