"""Eval's metrics on logits with known answers: accuracy, loss, per-class accuracy, the
confusion matrix and the expected calibration error (15 bins), against plain references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastcifar.use.metrics import ECE_BINS, MetricsAccumulator


def logits_with_confidence(predicted, confidence, num_classes):
    """Logits whose softmax gives `predicted` the probability `confidence` and shares the
    rest equally among the other classes."""
    confidence = torch.as_tensor(confidence, dtype=torch.float64)
    rest = (1 - confidence) / (num_classes - 1)
    logits = torch.log(rest)[:, None].repeat(1, num_classes)
    logits[torch.arange(len(predicted)), torch.as_tensor(predicted)] = torch.log(confidence)
    return logits.float()


def reference_ece(confidence, correct, bins=ECE_BINS):
    """The definition, one bin at a time: sum over bins of n_b/N * |acc_b - conf_b|, with
    bin b holding the confidences in (b/bins, (b+1)/bins]."""
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [i for i, c in enumerate(confidence) if low < c <= high]
        if inside:
            accuracy = np.mean([correct[i] for i in inside])
            mean_confidence = np.mean([confidence[i] for i in inside])
            total += len(inside) / len(confidence) * abs(accuracy - mean_confidence)
    return total


def test_known_predictions_give_known_tables():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    predicted = [0, 0, 1, 1, 2, 2, 2, 2, 0, 3]  # class 0: 2/3, 1: 1/2, 2: 3/4, 3: 1/1
    logits = logits_with_confidence(predicted, torch.full((10,), 0.7), num_classes=5)
    accumulator = MetricsAccumulator(5)
    accumulator.update(logits[:4], labels[:4])
    accumulator.update(logits[4:], labels[4:])
    metrics = accumulator.result()
    assert metrics.num_images == 10 and metrics.correct == 7 and metrics.accuracy == 0.7
    assert metrics.per_class_accuracy == [2 / 3, 1 / 2, 3 / 4, 1.0, None]  # class 4: no images
    expected = np.zeros((5, 5), dtype=np.int64)
    for true, guess in zip(labels.tolist(), predicted):
        expected[true, guess] += 1
    np.testing.assert_array_equal(metrics.confusion, expected)
    assert metrics.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    # every confidence 0.7, accuracy 0.7: perfectly calibrated
    assert metrics.ece == pytest.approx(0.0, abs=1e-6)
    report = metrics.to_json([f"c{i}" for i in range(5)])
    assert report["per_class"][2] == {"class": "c2", "count": 4, "accuracy": 0.75}
    assert report["reliability"]["count"][10] == 10  # 0.7 lies in (10/15, 11/15]


def test_ece_matches_the_definition_on_random_logits():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(997, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (997,), generator=generator)
    accumulator = MetricsAccumulator(10)
    accumulator.update(logits, labels)
    metrics = accumulator.result()
    probabilities = logits.softmax(dim=1)
    confidence = probabilities.max(dim=1).values.double().tolist()
    correct = (logits.argmax(dim=1) == labels).tolist()
    assert metrics.ece == pytest.approx(reference_ece(confidence, correct), abs=1e-12)
    assert 0.05 < metrics.ece < 1  # random labels: confident and wrong
    table = metrics.reliability()
    assert sum(table["count"]) == 997
    assert table["accuracy"][0] is None  # no confidence is below 1/15 with 10 classes


def test_confidences_fall_in_their_bins_and_certainty_in_the_last():
    # Just below and above the edge 9/15 = 0.6, and a saturated softmax (exactly 1.0 in
    # float32, common for confident models): bins are (lo, hi], so 1.0 is in the last one.
    confidence = torch.tensor([0.6 - 1e-4, 0.6 + 1e-4], dtype=torch.float64)
    logits = torch.cat([logits_with_confidence([0, 0], confidence, 2),
                        torch.tensor([[100.0, 0.0]])])
    assert logits.softmax(dim=1)[2, 0].item() == 1.0
    accumulator = MetricsAccumulator(2)
    accumulator.update(logits, torch.tensor([0, 1, 0]))
    count = accumulator.result().reliability()["count"]
    assert count[8] == 1 and count[9] == 1 and count[ECE_BINS - 1] == 1 and sum(count) == 3


def test_merged_accumulators_equal_one_pass():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(300, 7, generator=generator)
    labels = torch.randint(0, 7, (300,), generator=generator)
    whole, first, second = (MetricsAccumulator(7) for _ in range(3))
    whole.update(logits, labels)
    first.update(logits[:120], labels[:120])
    second.update(logits[120:], labels[120:])
    first.merge(second)
    a, b = whole.result(), first.result()
    np.testing.assert_array_equal(a.confusion, b.confusion)
    np.testing.assert_allclose(a.bins, b.bins, rtol=1e-12)
    assert a.loss == pytest.approx(b.loss, rel=1e-6)  # float32 sums per batch
