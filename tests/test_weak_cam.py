"""Classifier CAMs, confident labels and the affinity loss on toy data with known answers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from firemap.weak.affinity import UNSURE, affinity_loss, confident_labels, pair_offsets
from firemap.weak.cam import background, cams, normalize_window, train_classifier
from firemap.weak.config import WeakConfig
from firemap.weak.labels import ImageLabel
from firemap.weak.samples import WindowSample


def _window(rng: np.random.Generator, blob: tuple[int, int] | None, size: int = 32) -> np.ndarray:
    x = rng.normal(0, 0.3, (2, size, size)).astype(np.float32)
    if blob is not None:
        r, c = blob
        x[0, r : r + 8, c : c + 8] += 2.0
        x[1, r : r + 8, c : c + 8] -= 1.0
    return x


def _sample(x: np.ndarray, target: float) -> WindowSample:
    ones = np.ones(x.shape[1:], bool)
    label = ImageLabel(__file__, None, {"burn_scar": int(target)})  # type: ignore[arg-type]
    return WindowSample(x, ones, ones, np.array([target], np.float32), label)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine oversubscribed threads make training several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_toy_classifier_cam_localises_a_planted_blob(one_thread: None) -> None:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(48):
        blob = (int(rng.integers(0, 25)), int(rng.integers(0, 25))) if i % 2 else None
        samples.append(_sample(_window(rng, blob), float(blob is not None)))
    net = train_classifier(samples, 2, 1, WeakConfig(cam_steps=60, batch_size=16, lr=3e-3))
    test = _window(np.random.default_rng(99), (40, 8), size=64)
    cam = cams(net, torch.from_numpy(test[None]))[0, 0].numpy()
    assert cam.shape == (64, 64)
    blob = np.zeros((64, 64), bool)
    blob[40:48, 8:16] = True
    peak = np.unravel_index(cam.argmax(), cam.shape)
    assert 36 <= peak[0] < 52 and 4 <= peak[1] < 20  # the peak sits on the blob (within one CAM cell)
    assert cam[blob].mean() > 3 * cam[~blob].mean()
    empty = cams(net, torch.from_numpy(_window(np.random.default_rng(5), None, size=64)[None]))[0, 0].numpy()
    assert empty.max() < cam.max() / 2


def test_normalization_and_background_follow_the_paper() -> None:
    raw = np.array([[[0.0, 1.0], [2.0, 4.0]]], np.float32)
    inside = np.ones((2, 2), bool)
    np.testing.assert_allclose(normalize_window(raw, np.array([1.0]), inside, np.array([8.0]))[0], raw[0] / 4)
    assert (normalize_window(raw, np.array([0.0]), inside, np.array([8.0])) == 0).all()
    np.testing.assert_allclose(normalize_window(raw, np.array([np.nan]), inside, np.array([8.0]))[0], raw[0] / 8)
    cam = np.array([[[0.0, 0.5]]], np.float32)
    np.testing.assert_allclose(background(cam, 4.0), [[1.0, 0.5**4]])


def test_confident_labels_use_low_and_high_alpha() -> None:
    # CAM 0.9 -> foreground even against (1 - 0.9)^4; CAM 0.01 -> background even at (0.99)^32 = 0.72;
    # CAM 0.3 -> (0.7)^4 = 0.24 < 0.3 is foreground at low alpha; 0.5 at both -> foreground.
    # CAM 0.2 -> low: 0.8^4 = 0.41 > 0.2 (not fg); high: 0.8^32 = 0.0008 < 0.2 (not bg) -> unsure.
    cam = np.array([[[0.9, 0.01, 0.2, 0.3]]], np.float32)
    labels = confident_labels(cam, np.ones((1, 4), bool), WeakConfig(walk_stride=1))
    assert labels.tolist() == [[1, 0, UNSURE, 1]]
    outside = confident_labels(cam, np.array([[True, False, True, True]]), WeakConfig(walk_stride=1))
    assert outside[0, 1] == UNSURE


def test_affinity_loss_is_balanced_and_ignores_unsure_pairs() -> None:
    offsets = pair_offsets(2)  # right neighbour, and the three below
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, UNSURE]]])
    perfect = torch.ones(1, len(offsets), 2, 4)
    for k, (dy, dx) in enumerate(offsets):  # affinity 1 within a label, 0 across labels
        for y in range(2):
            for x in range(4):
                yy, xx = y + dy, x + dx
                if 0 <= yy < 2 and 0 <= xx < 4 and labels[0, y, x] != labels[0, yy, xx]:
                    perfect[0, k, y, x] = 0.0
    assert affinity_loss(perfect, labels, offsets).item() < 1e-3
    wrong = torch.where(perfect == 1, torch.tensor(1e-4), torch.tensor(0.9999))
    assert affinity_loss(wrong, labels, offsets).item() > 5.0
