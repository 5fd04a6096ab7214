"""The Wav2Lip generator, laid out so the official checkpoints load with ``strict=True``.

Module names, order and shapes follow Rudrabha/Wav2Lip ``models/wav2lip.py`` exactly: 352
state_dict keys, 36,298,035 parameters. Only the attribute names the checkpoints store are fixed;
the rest (type hints, the single forward path for 4-D inputs) is ours.
"""

from __future__ import annotations

import torch
from torch import nn

# Inputs and outputs of the generator.
FACE_SIZE = 96
MEL_BANDS = 80
MEL_STEPS = 16


class ConvBlock(nn.Module):
    """Conv (with bias) + BatchNorm, optional residual add, then ReLU (the original's ``Conv2d``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class TransposedConvBlock(nn.Module):
    """ConvTranspose + BatchNorm + ReLU (the original's ``Conv2dTranspose``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _residuals(channels: int, count: int) -> list[nn.Module]:
    return [ConvBlock(channels, channels, 3, 1, 1, residual=True) for _ in range(count)]


class Wav2Lip(nn.Module):
    """``model(mel, faces)``: mel ``(B, 1, 80, 16)``, faces ``(B, 6, 96, 96)`` in [0, 1] -> ``(B, 3, 96, 96)``.

    The six face channels are the BGR crop with its lower half zeroed, then the unmasked BGR crop
    (the pose reference), as the original's inference feeds them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96x96
                nn.Sequential(ConvBlock(16, 32, 3, 2, 1), *_residuals(32, 2)),  # 48x48
                nn.Sequential(ConvBlock(32, 64, 3, 2, 1), *_residuals(64, 3)),  # 24x24
                nn.Sequential(ConvBlock(64, 128, 3, 2, 1), *_residuals(128, 2)),  # 12x12
                nn.Sequential(ConvBlock(128, 256, 3, 2, 1), *_residuals(256, 2)),  # 6x6
                nn.Sequential(ConvBlock(256, 512, 3, 2, 1), *_residuals(512, 1)),  # 3x3
                nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1x1
            ]
        )
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, 32, 3, 1, 1),
            *_residuals(32, 2),
            ConvBlock(32, 64, 3, (3, 1), 1),
            *_residuals(64, 2),
            ConvBlock(64, 128, 3, 3, 1),
            *_residuals(128, 2),
            ConvBlock(128, 256, 3, (3, 2), 1),
            *_residuals(256, 1),
            ConvBlock(256, 512, 3, 1, 0),
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),
                nn.Sequential(TransposedConvBlock(1024, 512, 3, 1, 0), *_residuals(512, 1)),  # 3x3
                nn.Sequential(TransposedConvBlock(1024, 512, 3, 2, 1, 1), *_residuals(512, 2)),  # 6x6
                nn.Sequential(TransposedConvBlock(768, 384, 3, 2, 1, 1), *_residuals(384, 2)),  # 12x12
                nn.Sequential(TransposedConvBlock(512, 256, 3, 2, 1, 1), *_residuals(256, 2)),  # 24x24
                nn.Sequential(TransposedConvBlock(320, 128, 3, 2, 1, 1), *_residuals(128, 2)),  # 48x48
                nn.Sequential(TransposedConvBlock(160, 64, 3, 2, 1, 1), *_residuals(64, 2)),  # 96x96
            ]
        )
        self.output_block = nn.Sequential(
            ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0), nn.Sigmoid()
        )

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 4 or tuple(mel.shape[1:]) != (1, MEL_BANDS, MEL_STEPS):
            raise ValueError(f"mel must be (B, 1, {MEL_BANDS}, {MEL_STEPS}), got {tuple(mel.shape)}")
        if faces.dim() != 4 or tuple(faces.shape[1:]) != (6, FACE_SIZE, FACE_SIZE):
            raise ValueError(f"faces must be (B, 6, {FACE_SIZE}, {FACE_SIZE}), got {tuple(faces.shape)}")
        if mel.shape[0] != faces.shape[0]:
            raise ValueError(f"batch sizes differ: mel {mel.shape[0]}, faces {faces.shape[0]}")
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        skips = []
        feats = faces
        for block in self.face_encoder_blocks:
            feats = block(feats)
            skips.append(feats)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)  # deepest encoder output first
        return self.output_block(x)
