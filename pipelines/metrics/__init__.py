"""Measures of generated talking-face video, shared by training validation, ``evaluate`` and ``dub``.

A leaf package: it imports only numpy/torch/cv2/dlib, ``iptalker_model`` and ``preprocessing``,
never another job. Each module measures one thing:

- ``image``: PSNR / SSIM on whole frames or a region (box or mask);
- ``mouth``: landmarks of frames, mouth opening, audio envelope, speech mask, mouth activity;
- ``sync``: lip sync the syncnet_python way (LSE-D, LSE-C, offset) with our SyncNet or the public
  one (``PublicSyncNet``, joonson's ``syncnet_v2.model`` layout);
- ``identity``: dlib 128-d face descriptor distance / cosine between matched frames.
"""

from pipelines.metrics.identity import IdentityScores, face_descriptors, identity_scores
from pipelines.metrics.image import psnr, ssim
from pipelines.metrics.mouth import (
    audio_envelope,
    landmarks_of,
    mouth_activity,
    mouth_box,
    mouth_opening,
    speech_mask,
)
from pipelines.metrics.sync import LSE, PublicSyncNet, lse_from_embeddings, lse_ours, lse_public

__all__ = [
    "LSE", "IdentityScores", "PublicSyncNet", "audio_envelope", "face_descriptors", "identity_scores",
    "landmarks_of", "lse_from_embeddings", "lse_ours", "lse_public", "mouth_activity", "mouth_box",
    "mouth_opening", "psnr", "speech_mask", "ssim",
]
