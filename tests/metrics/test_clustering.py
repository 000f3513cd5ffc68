import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from pyro_diffvi.metrics import (
    cluster_completeness,
    cluster_nmi,
    cluster_purity,
    clustering_scores,
    knn_accuracy,
)


def entropy(*probs):
    return -sum(p * math.log(p) for p in probs)


def test_clustering_scores_by_hand():
    labels_true = [0, 0, 0, 1, 1, 2]
    labels_pred = torch.tensor([7, 7, 3, 3, 3, 3])
    # clusters {0,0} and {0,1,1,2}: purity (2 + 2) / 6
    assert cluster_purity(labels_true, labels_pred) == pytest.approx(4 / 6)
    h_c = entropy(1 / 3, 2 / 3)
    h_c_given_l = 0.5 * entropy(2 / 3, 1 / 3)  # only class 0 (weight 3/6) is split, 2:1
    h_l = entropy(1 / 2, 1 / 3, 1 / 6)
    mutual_info = h_c - h_c_given_l
    assert cluster_completeness(labels_true, labels_pred) == pytest.approx(1 - h_c_given_l / h_c)
    assert cluster_nmi(labels_true, labels_pred) == pytest.approx(mutual_info / ((h_l + h_c) / 2))
    scores = clustering_scores(np.array(labels_true), labels_pred)
    nmi = mutual_info / ((h_l + h_c) / 2)
    assert scores == pytest.approx({"purity": 4 / 6, "completeness": 0.5, "nmi": nmi}, abs=1e-12)


def test_clustering_extremes():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    permuted = np.array([5, 5, 9, 9, 1, 1, 1])
    assert clustering_scores(labels, permuted) == pytest.approx({"purity": 1.0, "completeness": 1.0, "nmi": 1.0})
    assert cluster_purity(labels, np.zeros(7, dtype=int)) == pytest.approx(3 / 7)
    assert cluster_purity(labels, np.arange(7)) == 1.0


def test_knn_accuracy_on_constructed_sets():
    train = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    train_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    test = torch.tensor([[0.5], [11.2], [1.5]])
    test_labels = torch.tensor([0, 1, 1])  # the last one is wrong on purpose
    assert knn_accuracy(train, train_labels, test_latents=test, test_labels=test_labels, k=3) == pytest.approx(2 / 3)


def test_knn_leave_one_out_by_hand():
    latents = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0], [10.5]])
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    # every point but the mislabelled 10.5 (neighbours 10, 11, 12 -> class 1) is classified correctly;
    # 10.0's neighbours are 10.5, 11, 12 (itself excluded): votes 0, 1, 1
    assert knn_accuracy(latents, labels, k=3) == pytest.approx(6 / 7)


def test_knn_ties_go_to_smallest_label():
    train = torch.tensor([[0.0], [2.0]])
    assert knn_accuracy(train, [5, 3], test_latents=torch.tensor([[1.0]]), test_labels=[3], k=2) == 1.0


def test_knn_matches_sklearn(device):
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(300, 2, generator=gen)
    test = torch.randn(120, 2, generator=gen)
    train_labels = (train[:, 0] + 0.5 * torch.randn(300, generator=gen) > 0).long() + 2 * (train[:, 1] > 0).long()
    test_labels = (test[:, 0] > 0).long() + 2 * (test[:, 1] > 0).long()
    clf = KNeighborsClassifier(n_neighbors=20).fit(train.numpy(), train_labels.numpy())
    expected = clf.score(test.numpy(), test_labels.numpy())
    train, train_labels, test = train.to(device), train_labels.to(device), test.to(device)
    assert knn_accuracy(
        train, train_labels, test_latents=test, test_labels=test_labels, chunk_size=50
    ) == pytest.approx(expected)


def test_input_validation():
    x = torch.randn(10, 2)
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="k must be an int in \\[1, 10\\]"):
        knn_accuracy(x, y, test_latents=x, test_labels=y, k=11)
    with pytest.raises(ValueError, match="k must be an int in \\[1, 9\\]"):
        knn_accuracy(x, y, k=10)
    with pytest.raises(ValueError, match="train_labels must have 10 entries"):
        knn_accuracy(x, y[:5], k=3)
    with pytest.raises(TypeError, match="integer labels"):
        knn_accuracy(x, y.astype(float), k=3)
    with pytest.raises(ValueError, match="together"):
        knn_accuracy(x, y, test_latents=x, k=3)
    with pytest.raises(ValueError, match="columns"):
        knn_accuracy(x, y, test_latents=torch.randn(4, 3), test_labels=[0, 1, 0, 1], k=3)
    bad = x.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="test_latents contains"):
        knn_accuracy(x, y, test_latents=bad, test_labels=y, k=3)
    with pytest.raises(ValueError, match="labels_pred must have 10 entries"):
        cluster_purity(y, y[:3])
