"""Index facts of dlib's iBUG 68-point face landmarks, shared by the generator and training."""

from __future__ import annotations

import numpy as np

# Index of each point's mirror image (left <-> right) on a horizontally flipped face: an
# involution, midline points (nose ridge, lip centres, chin) map to themselves.
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 16, -1))  # brows 17-26
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46]
    + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips 48-59
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips 60-67
)
