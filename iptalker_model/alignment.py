"""(a) Alignment module: encoders + the Audio-Visual Alignment Unit (AVAU).

The masked source frame, the K reference frames and the audio window become tokens; one
transformer attends across all of them, so each target position can look up which reference
(and where in it) matches the sound. The output at the source-token positions, reshaped to a
g x g map, is the identity-audio correspondence embedding: a spatial feature map in target-frame
coordinates that steers the warping and the inpainting.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig
from .mask import lower_face_mask


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 -> GroupNorm -> SiLU, the one building block of every CNN here."""
    groups = 8 if c_out % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, c_out),
        nn.SiLU(),
    )


class ImageEncoder(nn.Module):
    """CNN pyramid: [N, 3, S, S] in [-1, 1] -> list of [N, C_l, S/2^(l+1), S/2^(l+1)], finest first."""

    def __init__(self, channels: tuple[int, ...], in_channels: int = 3):
        super().__init__()
        stages, c_prev = [], in_channels
        for c in channels:
            stages.append(nn.Sequential(conv_block(c_prev, c, stride=2), conv_block(c, c)))
            c_prev = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class AudioEncoder(nn.Module):
    """Per-row MLP plus a temporal conv: [N, A, D] Whisper rows -> [N, A, E] audio tokens."""

    def __init__(self, audio_dim: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(audio_dim), nn.Linear(audio_dim, embed_dim), nn.GELU())
        self.temporal = nn.Conv1d(embed_dim, embed_dim, 3, padding=1)  # neighbouring rows (20 ms)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.proj(audio)                                          # [N, A, E]
        return x + self.temporal(x.transpose(1, 2)).transpose(1, 2)   # [N, A, E]


class AudioVisualAlignmentUnit(nn.Module):
    """Transformer over [source tokens | audio tokens | K x reference tokens].

    Learned type embeddings say which stream a token belongs to; position embeddings give the grid
    cell (shared by source and references, so "same place in the face" is the same code) and the
    audio row; a reference-index embedding tells the K references apart.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e, g2 = cfg.embed_dim, cfg.token_grid ** 2
        self.type_embedding = nn.Parameter(torch.randn(3, e) * 0.02)     # source, audio, reference
        self.grid_position = nn.Parameter(torch.randn(g2, e) * 0.02)
        self.audio_position = nn.Parameter(torch.randn(cfg.audio_rows, e) * 0.02)
        self.reference_index = nn.Parameter(torch.randn(cfg.num_references, e) * 0.02)
        layer = nn.TransformerEncoderLayer(e, cfg.avau_heads, 4 * e, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.avau_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(e)
        self.grid = cfg.token_grid

    def forward(self, source: torch.Tensor, audio: torch.Tensor,
                references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """source [N, g*g, E], audio [N, A, E], references [N, K, g*g, E] -> (embedding
        [N, E, g, g] read at the source slots, per-reference maps [N, K, E, g, g] read at the
        reference slots: what each reference contributes to the sound, for its own warp)."""
        n, k, g2, e = references.shape
        src = source + self.grid_position + self.type_embedding[0]
        aud = audio + self.audio_position + self.type_embedding[1]
        ref = references + self.grid_position + self.reference_index[:, None] + self.type_embedding[2]
        tokens = torch.cat([src, aud, ref.reshape(n, k * g2, e)], dim=1)   # [N, g2 + A + K*g2, E]
        out = self.norm(self.transformer(tokens))
        grid = (self.grid, self.grid)
        embedding = out[:, :g2].transpose(1, 2).reshape(n, e, *grid)       # source slots
        per_ref = out[:, -k * g2:].reshape(n, k, g2, e).transpose(2, 3).reshape(n, k, e, *grid)
        return embedding, per_ref


class ReferenceSelector(nn.Module):
    """Which reference mouth matches the sound: an audio query against a key per reference mouth.

    The paper's alignment module relates audio to reference *mouth* images. Here that relation
    also gets a direct, cheap path: each reference's lower face (the hidden region, the rest grey)
    is encoded and pooled into a key, the frame's whole audio window (time order kept) into a
    query, and their scaled dot product is a per-reference logit that the warping module adds to
    its per-pixel logits before the softmax over references. Through the transformer alone the
    trained model kept near-uniform reference weights (it stayed at the mean of the references);
    this path learns to pick the reference whose mouth opening fits the audio within a few
    hundred CPU steps.
    """

    SCALE = 4.0  # logit scale at init: dot products of ~unit vectors would otherwise stay soft

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e = cfg.embed_dim
        self.mouth_encoder = ImageEncoder(cfg.encoder_channels)
        self.key = nn.Linear(cfg.encoder_channels[-1], e)
        self.query = nn.Sequential(nn.Flatten(), nn.Linear(cfg.audio_rows * cfg.audio_dim, 2 * e), nn.GELU(),
                                   nn.Linear(2 * e, e))
        self.register_buffer("mouth_window", lower_face_mask(cfg), persistent=False)  # [1, 1, S, S]

    def keys(self, references: torch.Tensor) -> torch.Tensor:
        """[B, K, 3, S, S] in [-1, 1] -> [B, K, E] (once per clip; shared by its T frames)."""
        b, k = references.shape[:2]
        mouths = references.flatten(0, 1) * self.mouth_window.to(references.dtype)
        return self.key(self.mouth_encoder(mouths)[-1].mean((-1, -2))).reshape(b, k, -1)

    def forward(self, keys: torch.Tensor, audio_window: torch.Tensor) -> torch.Tensor:
        """keys [N, K, E], audio_window [N, A, D] -> per-reference logits [N, K]."""
        query = self.query(audio_window)                                   # [N, E]
        return (keys * query[:, None]).sum(-1) * (self.SCALE / keys.shape[-1] ** 0.5)


class AlignmentModule(nn.Module):
    """Encoders + AVAU. Reference pyramids are returned too: the warping module warps them."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c_last, e = cfg.encoder_channels[-1], cfg.embed_dim
        self.reference_encoder = ImageEncoder(cfg.encoder_channels)
        self.source_encoder = ImageEncoder(cfg.encoder_channels)
        self.audio_encoder = AudioEncoder(cfg.audio_dim, e)
        self.reference_tokens = nn.Conv2d(c_last, e, 1)
        self.source_tokens = nn.Conv2d(c_last, e, 1)
        self.avau = AudioVisualAlignmentUnit(cfg)
        self.selector = ReferenceSelector(cfg)
        self.mouth_only = cfg.reference_region == "mouth"

    def encode_references(self, references: torch.Tensor) -> list[torch.Tensor]:
        """[N, K, 3, S, S] -> pyramid of [N*K, C_l, h_l, w_l] (computed once per clip, reused per frame).
        With ``reference_region="mouth"`` the encoder sees only each reference's lower face (the
        rest is grey), so its tokens describe the mouth, not the whole crop."""
        x = references.flatten(0, 1)
        if self.mouth_only:  # the selector's lower-face window: one mask for both
            x = x * self.selector.mouth_window.to(x.dtype)
        return self.reference_encoder(x)

    def forward(self, masked_source: torch.Tensor, ref_pyramid: list[torch.Tensor],
                audio_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """masked_source [N, 3, S, S], ref pyramid (N*K leading), audio [N, A, D]
        -> (embedding [N, E, g, g], per-reference maps [N, K, E, g, g])."""
        n = masked_source.shape[0]
        src = self.source_tokens(self.source_encoder(masked_source)[-1])   # [N, E, g, g]
        ref = self.reference_tokens(ref_pyramid[-1])                      # [N*K, E, g, g]
        src = src.flatten(2).transpose(1, 2)                              # [N, g*g, E]
        ref = ref.flatten(2).transpose(1, 2).reshape(n, -1, *src.shape[1:])  # [N, K, g*g, E]
        return self.avau(src, self.audio_encoder(audio_window), ref)
