"""Procedural cat figures: whole-animal shapes textured with the one built-in cat photo.

The only cat that ships with the installed packages (scikit-image's ``chelsea``) is a
close-up of a head, so a model trained on it alone boxes heads, while labelled cats are
whole animals (a head, a body, legs, a tail). ``cat_figure`` draws a sitting, lying or
standing cat silhouette (ellipses, triangles and thick curves), fills it with fur cut from
the photo (re-coloured), puts the photo's face on the head, shades the body, and returns
the figure with its alpha mask and its box (the silhouette's bounds).
"""

from __future__ import annotations

import cv2
import numpy as np

from data import assets

# Regions of chelsea.png (451 x 300): the face (eyes, nose, mouth) and fur without features.
FACE = (105, 50, 375, 290)
FUR = ((0, 0, 130, 300), (0, 0, 451, 80), (150, 0, 451, 60))
POSES = ("sit", "lie", "stand")


def _fur(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) fur texture from a featureless part of the photo, tiled by mirroring."""
    photo = assets.load_image("chelsea")
    x1, y1, x2, y2 = FUR[int(rng.integers(len(FUR)))]
    patch = np.ascontiguousarray(photo[y1:y2, x1:x2])
    scale = rng.uniform(0.8, 1.5)  # fur grain relative to the figure
    patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    reps = (-(-height // patch.shape[0]) + 1, -(-width // patch.shape[1]) + 1)
    tile = np.concatenate([np.concatenate([patch if (r + c) % 2 == 0 else cv2.flip(patch, 1)
                                           for c in range(reps[1])], axis=1)
                           for r in range(reps[0])], axis=0)
    oy, ox = int(rng.integers(0, tile.shape[0] - height + 1)), int(rng.integers(0, tile.shape[1] - width + 1))
    return np.ascontiguousarray(tile[oy : oy + height, ox : ox + width])


def _silhouette(rng: np.random.Generator, size: int, pose: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A (size, size) uint8 mask of a cat shape and its head circle (cx, cy, r) in pixels."""
    s = float(size)
    mask = np.zeros((size, size), np.uint8)
    if pose == "sit":  # a pear: tall body, head on top, tail curled at the side
        body = (s * 0.5, s * 0.66, s * rng.uniform(0.34, 0.44), s * rng.uniform(0.28, 0.34))
        r = s * rng.uniform(0.13, 0.17)
        head = (body[0] + s * rng.uniform(-0.04, 0.04), body[1] - body[3] - r * 0.55)
        cv2.ellipse(mask, ((body[0], body[1]), (body[2] * 2, body[3] * 2), 0), 255, -1)
        cv2.ellipse(mask, ((body[0], body[1] - body[3] * 0.55), (body[2] * 1.3, body[3] * 1.4), 0), 255, -1)
        for dx in (-0.45, 0.45):  # front paws
            cv2.ellipse(mask, ((body[0] + dx * body[2], body[1] + body[3] * 0.92), (s * 0.11, s * 0.06), 0), 255, -1)
        tail = [(body[0] + body[2] * 0.9, body[1] + body[3] * 0.7), (body[0] + body[2] * 1.25, body[1] + body[3] * 0.3),
                (body[0] + body[2] * 1.1, body[1] - body[3] * 0.3)]
    elif pose == "lie":  # a loaf: wide low body, head at one end
        body = (s * 0.52, s * 0.64, s * rng.uniform(0.36, 0.44), s * rng.uniform(0.14, 0.19))
        r = s * rng.uniform(0.12, 0.15)
        head = (body[0] - body[2] * 0.85, body[1] - body[3] * 0.9)
        cv2.ellipse(mask, ((body[0], body[1]), (body[2] * 2, body[3] * 2), 0), 255, -1)
        tail = [(body[0] + body[2] * 0.95, body[1] + body[3] * 0.4), (body[0] + body[2] * 1.1, body[1] + body[3] * 0.9),
                (body[0] + body[2] * 0.5, body[1] + body[3] * 1.1)]
    else:  # standing, side view: body on four legs, tail up
        body = (s * 0.5, s * 0.48, s * rng.uniform(0.3, 0.36), s * rng.uniform(0.12, 0.15))
        r = s * rng.uniform(0.11, 0.14)
        head = (body[0] - body[2] * 1.05, body[1] - body[3] * 1.3)
        cv2.ellipse(mask, ((body[0], body[1]), (body[2] * 2, body[3] * 2), rng.uniform(-5, 5)), 255, -1)
        leg_h = s * rng.uniform(0.14, 0.22)
        for dx in (-0.75, -0.55, 0.55, 0.75):
            x = int(body[0] + dx * body[2])
            cv2.line(mask, (x, int(body[1])), (x + int(rng.uniform(-6, 6)), int(body[1] + body[3] + leg_h)),
                     255, max(3, int(s * 0.06)))
        cv2.line(mask, (int(head[0] + r * 0.4), int(head[1] + r * 0.5)), (int(body[0] - body[2] * 0.8), int(body[1])),
                 255, max(3, int(r * 1.1)))  # neck
        tail = [(body[0] + body[2] * 0.95, body[1] - body[3] * 0.2), (body[0] + body[2] * 1.25, body[1] - body[3] * 1.2),
                (body[0] + body[2] * 1.15, body[1] - body[3] * 2.4)]
    cv2.polylines(mask, [np.round(tail).astype(np.int32)], False, 255, max(3, int(s * 0.05)))
    cx, cy = head
    cv2.circle(mask, (int(cx), int(cy)), int(r), 255, -1)
    for side in (-1, 1):  # ears: triangles on top of the head
        base = cx + side * r * 0.55
        ear = np.array([[base - r * 0.38, cy - r * 0.62], [base + r * 0.38, cy - r * 0.62],
                        [base + side * r * 0.15, cy - r * 1.55]], np.int32)
        cv2.fillPoly(mask, [ear], 255)
    return mask, (cx, cy, r)


def cat_figure(rng: np.random.Generator, size: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """A cat figure: (image (h, w, 3) uint8 RGB, alpha (h, w) float32), cropped to the
    silhouette's bounds, so the object's box is the whole patch."""
    pose = POSES[int(rng.integers(len(POSES)))]
    mask, (cx, cy, r) = _silhouette(rng, size, pose)
    if rng.random() < 0.5:  # facing the other way
        mask, cx = cv2.flip(mask, 1), size - 1 - cx
    fur = assets.jitter_colors(rng, _fur(rng, size, size), strength=1.0, hsv=0.9)
    # The face on the head (a little larger than the head, eyes towards its centre).
    photo = assets.load_image("chelsea")
    x1, y1, x2, y2 = FACE
    d = int(r * 2.1)
    face = cv2.resize(np.ascontiguousarray(photo[y1:y2, x1:x2]), (d, d), interpolation=cv2.INTER_AREA)
    face = assets.jitter_colors(rng, face, strength=0.6, hsv=0.5)
    fx, fy = int(cx - d / 2), int(cy - d / 2 + r * 0.1)
    face_alpha = np.zeros((d, d), np.float32)
    cv2.ellipse(face_alpha, ((d / 2, d / 2), (d * 0.92, d * 0.86), 0), 1.0, -1)
    face_alpha = cv2.GaussianBlur(face_alpha, (0, 0), d * 0.06)
    y0, x0 = max(0, fy), max(0, fx)
    y1c, x1c = min(size, fy + d), min(size, fx + d)
    if y1c > y0 and x1c > x0:
        a = face_alpha[y0 - fy : y1c - fy, x0 - fx : x1c - fx, None]
        region = fur[y0:y1c, x0:x1c].astype(np.float32)
        fur[y0:y1c, x0:x1c] = (face[y0 - fy : y1c - fy, x0 - fx : x1c - fx] * a + region * (1 - a)).astype(np.uint8)
    # Shading: darker towards the bottom and the silhouette's edge, as a round body looks.
    inside = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), size * 0.04)
    ramp = np.linspace(1.05, 0.75, size, dtype=np.float32)[:, None]
    shade = np.clip(ramp * (0.7 + 0.3 * inside), 0, 1.2)[..., None]
    image = np.clip(fur.astype(np.float32) * shade, 0, 255).astype(np.uint8)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.8, size * 0.006))
    rows, cols = np.flatnonzero(mask.max(axis=1)), np.flatnonzero(mask.max(axis=0))
    bx1, by1, bx2, by2 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    return np.ascontiguousarray(image[by1:by2, bx1:bx2]), np.ascontiguousarray(alpha[by1:by2, bx1:bx2])


__all__ = ["POSES", "cat_figure"]
