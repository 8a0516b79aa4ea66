"""Pixels as JPEG bytes and back, as the original writes them (OpenCV, RGB reversed to BGR)."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import DataError


def encode_jpeg(rgb: np.ndarray, quality: int = 95, name: str = "<image>") -> bytes:
    """JPEG bytes of one uint8 ``(H, W, 3)`` RGB image (channels reversed for OpenCV, as the original)."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise DataError(f"{name}: OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def decode_jpeg(data: bytes, name: str = "<image>") -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB from JPEG (or PNG) bytes."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{name}: not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def jpeg_round_trip(images: np.ndarray, quality: int = 95) -> np.ndarray:
    """What the images become once written as JPEG and read back: uint8 ``(N, H, W, 3)`` RGB."""
    return np.stack([decode_jpeg(encode_jpeg(image, quality)) for image in images]) \
        if len(images) else np.asarray(images)
