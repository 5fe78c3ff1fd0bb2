"""MFCC as python_speech_features 0.6 computes it with its defaults (the public SyncNet's front end).

25 ms frames every 10 ms (100 Hz), pre-emphasis 0.97, rectangular window, 512-point power
spectrum, 26 mel filters from 0 to sr/2, log, DCT-II (ortho) keeping 13, sinusoidal lifter 22,
and coefficient 0 replaced by the log frame energy.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct

_EPS = np.finfo(float).eps


def _hz2mel(hz):
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (np.asarray(mel) / 2595.0) - 1)


def mel_filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    """[nfilt, nfft // 2 + 1] triangular filters on FFT bins (python_speech_features' layout)."""
    mel = np.linspace(_hz2mel(0), _hz2mel(sample_rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(mel) / sample_rate).astype(int)
    fbank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(lo, mid):
            fbank[j, i] = (i - lo) / (mid - lo)
        for i in range(mid, hi):
            fbank[j, i] = (hi - i) / (hi - mid)
    return fbank


def mfcc(signal: np.ndarray, sample_rate: int = 16000, numcep: int = 13, nfilt: int = 26,
         nfft: int = 512, winlen: float = 0.025, winstep: float = 0.01) -> np.ndarray:
    """[N] samples -> [M, numcep] MFCC, M = 1 + ceil((N - winlen*sr) / (winstep*sr))."""
    x = np.asarray(signal, np.float64).reshape(-1)
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    flen, step = int(round(winlen * sample_rate)), int(round(winstep * sample_rate))
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / step))
    x = np.concatenate([x, np.zeros((n - 1) * step + flen - len(x))])
    idx = np.arange(flen)[None] + step * np.arange(n)[:, None]
    pspec = np.abs(np.fft.rfft(x[idx], nfft)) ** 2 / nfft                     # [M, nfft/2 + 1]
    energy = pspec.sum(1)
    energy = np.where(energy == 0, _EPS, energy)
    feat = pspec @ mel_filterbank(nfilt, nfft, sample_rate).T
    feat = np.log(np.where(feat == 0, _EPS, feat))
    feat = dct(feat, type=2, axis=1, norm="ortho")[:, :numcep]
    feat *= 1 + (22 / 2.0) * np.sin(np.pi * np.arange(numcep) / 22)
    feat[:, 0] = np.log(energy)
    return feat
