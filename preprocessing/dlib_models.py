"""dlib models that ship offline inside the face-recognition-models wheel.

The package's ``__init__`` imports ``pkg_resources`` (removed in setuptools >= 81), so we locate
its data files with ``importlib.util.find_spec`` and never import it. The 68-point predictor is
trained on iBUG 300-W, whose licence restricts commercial use.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import dlib


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (pip install face-recognition-models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def shape_predictor_68_path() -> Path:
    return _models_dir() / "shape_predictor_68_face_landmarks.dat"


def face_descriptor_model_path() -> Path:
    return _models_dir() / "dlib_face_recognition_resnet_model_v1.dat"


@functools.cache
def hog_detector() -> dlib.fhog_object_detector:
    """Process-wide HOG detector (loading costs ~50 ms; one per worker process)."""
    return dlib.get_frontal_face_detector()


@functools.cache
def landmark_predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(shape_predictor_68_path()))


@functools.cache
def face_descriptor_model() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(face_descriptor_model_path()))
