r"""Downstream metrics of latents: kNN accuracy (DDVI paper, Table 2) and clustering scores (Table 3).

* kNN accuracy with :math:`k = 20` (the paper's "KNN (K = 20) classifier"): a majority vote among the
  :math:`k` nearest training latents (Euclidean), scored on test latents; with a single set, leave-one-out
  (each point voted on by its :math:`k` nearest *other* points). Ties go to the smallest label, as in
  scikit-learn's ``KNeighborsClassifier``.
* cluster purity :math:`\frac1N\sum_{c} \max_{l} |C_c \cap L_l|`, completeness and normalized mutual
  information (arithmetic normalization) from scikit-learn;
* the Table 3 read-out: clusters of a 20-component full-covariance Gaussian mixture fitted to the latents.

References:

* W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
  Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024 (Sec. 5.2, Tables 2 and 3).
* A. Rosenberg, J. Hirschberg. *V-Measure: A conditional entropy-based external cluster evaluation
  measure*. EMNLP-CoNLL 2007.
* A. Strehl, J. Ghosh. *Cluster Ensembles - A Knowledge Reuse Framework for Combining Multiple
  Partitions*. Journal of Machine Learning Research 3, 583-617, 2002 (normalized mutual information).
* F. Pedregosa et al. *Scikit-learn: Machine Learning in Python*. Journal of Machine Learning
  Research 12, 2825-2830, 2011.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import completeness_score, normalized_mutual_info_score

from pyro_diffvi.util import check_finite

__all__ = [
    "cluster_completeness",
    "cluster_nmi",
    "cluster_purity",
    "clustering_scores",
    "gmm_clustering_scores",
    "gmm_clusters",
    "knn_accuracy",
]


def _latents(name: str, value: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(value):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2 or value.shape[0] < 1:
        raise ValueError(f"{name} must have shape (num_points, dim), got {tuple(value.shape)}")
    return check_finite(name, value)


def _labels(name: str, value, size: int | None = None) -> np.ndarray:
    array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    if array.ndim != 1 or array.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array of labels, got shape {array.shape}")
    if size is not None and array.shape[0] != size:
        raise ValueError(f"{name} must have {size} entries (one per point), got {array.shape[0]}")
    if array.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array


def knn_accuracy(
    train_latents: torch.Tensor,
    train_labels,
    *,
    test_latents: torch.Tensor | None = None,
    test_labels=None,
    k: int = 20,
    chunk_size: int = 1024,
) -> float:
    """Accuracy of the k-nearest-neighbour majority vote.

    :param train_latents: reference latents, shape ``(n, d)``.
    :param train_labels: their integer labels, shape ``(n,)``.
    :param test_latents: latents to classify, shape ``(m, d)``; ``None`` for leave-one-out on the
        training set.
    :param test_labels: their labels, shape ``(m,)`` (required with ``test_latents``).
    :param k: number of neighbours (DDVI paper: 20).
    :param chunk_size: test rows per distance block.
    :return: fraction of correctly classified points.

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import knn_accuracy
    >>> train = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    >>> labels = [0, 0, 0, 1, 1, 1]
    >>> knn_accuracy(train, labels, test_latents=torch.tensor([[0.3], [4.0]]), test_labels=[0, 1], k=3)
    1.0
    >>> knn_accuracy(train, labels, k=2)  # leave-one-out on the training set
    1.0
    """
    train = _latents("train_latents", train_latents)
    train_y = _labels("train_labels", train_labels, train.shape[0])
    leave_one_out = test_latents is None
    if leave_one_out != (test_labels is None):
        raise ValueError("test_latents and test_labels must be given together")
    test = train if leave_one_out else _latents("test_latents", test_latents)
    test_y = train_y if leave_one_out else _labels("test_labels", test_labels, test.shape[0])
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"test_latents must have {train.shape[1]} columns, got {test.shape[1]}")
    available = train.shape[0] - int(leave_one_out)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k must be an int in [1, {available}] (reference points available), got {k!r}")
    classes, train_codes = np.unique(train_y, return_inverse=True)
    codes = torch.as_tensor(train_codes, device=train.device)
    test = test.to(train)
    predictions = []
    for start in range(0, test.shape[0], chunk_size):
        dist = torch.cdist(test[start : start + chunk_size], train)
        if leave_one_out:
            rows = torch.arange(dist.shape[0], device=dist.device)
            dist[rows, rows + start] = float("inf")
        neighbours = dist.topk(k, dim=-1, largest=False).indices
        votes = torch.nn.functional.one_hot(codes[neighbours], len(classes)).sum(-2)
        predictions.append(votes.argmax(-1).cpu())
    predicted = classes[torch.cat(predictions).numpy()]
    return float(np.mean(predicted == test_y))


def _clusterings(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = _labels("labels_true", labels_true)
    return labels_true, _labels("labels_pred", labels_pred, labels_true.shape[0])


def cluster_purity(labels_true, labels_pred) -> float:
    r"""Purity :math:`\frac1N\sum_c \max_l |\{i: \hat c_i = c, l_i = l\}|` of a clustering.

    :param labels_true: reference classes, shape ``(N,)``.
    :param labels_pred: cluster assignments, shape ``(N,)``.
    :return: the purity, in :math:`(0, 1]`.

    Example:

    >>> from pyro_diffvi.metrics import cluster_purity
    >>> cluster_purity([0, 0, 1, 1], [0, 0, 0, 1])  # cluster 0 holds 2 of class 0, cluster 1 one of class 1
    0.75
    """
    labels_true, labels_pred = _clusterings(labels_true, labels_pred)
    _, true_codes = np.unique(labels_true, return_inverse=True)
    _, pred_codes = np.unique(labels_pred, return_inverse=True)
    contingency = np.zeros((pred_codes.max() + 1, true_codes.max() + 1), dtype=np.int64)
    np.add.at(contingency, (pred_codes, true_codes), 1)
    return float(contingency.max(axis=1).sum() / labels_true.shape[0])


def cluster_completeness(labels_true, labels_pred) -> float:
    """Completeness :math:`1 - H(C \\mid L) / H(C)` (Rosenberg & Hirschberg 2007), via scikit-learn.

    :param labels_true: reference classes, shape ``(N,)``.
    :param labels_pred: cluster assignments, shape ``(N,)``.
    :return: the completeness, in :math:`[0, 1]` (1: each class lies in a single cluster).

    Example:

    >>> from pyro_diffvi.metrics import cluster_completeness
    >>> cluster_completeness([0, 0, 1, 1], [0, 0, 1, 1])
    1.0
    >>> round(cluster_completeness([0, 0, 1, 1], [0, 0, 1, 2]), 4)  # class 1 is split in two
    0.6667
    """
    return float(completeness_score(*_clusterings(labels_true, labels_pred)))


def cluster_nmi(labels_true, labels_pred) -> float:
    """Normalized mutual information :math:`I(L; C) / ((H(L) + H(C)) / 2)`, via scikit-learn.

    :param labels_true: reference classes, shape ``(N,)``.
    :param labels_pred: cluster assignments, shape ``(N,)``.
    :return: the NMI, in :math:`[0, 1]` (1: the clustering is the classes up to renaming).

    Example:

    >>> from pyro_diffvi.metrics import cluster_nmi
    >>> cluster_nmi([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    return float(normalized_mutual_info_score(*_clusterings(labels_true, labels_pred)))


def clustering_scores(labels_true, labels_pred) -> dict[str, float]:
    """The DDVI paper's Table 3 scores: ``{"purity", "completeness", "nmi"}``.

    :param labels_true: reference classes, shape ``(N,)``.
    :param labels_pred: cluster assignments, shape ``(N,)``.
    :return: ``{"purity": ..., "completeness": ..., "nmi": ...}``.

    Example:

    >>> from pyro_diffvi.metrics import clustering_scores
    >>> clustering_scores([0, 0, 1, 1], [1, 1, 0, 0])
    {'purity': 1.0, 'completeness': 1.0, 'nmi': 1.0}
    """
    return {
        "purity": cluster_purity(labels_true, labels_pred),
        "completeness": cluster_completeness(labels_true, labels_pred),
        "nmi": cluster_nmi(labels_true, labels_pred),
    }


def gmm_clusters(latents: torch.Tensor, *, num_components: int = 20, seed: int = 0, **gmm_kwargs) -> np.ndarray:
    r"""Cluster latents with a full-covariance Gaussian mixture fitted by EM (scikit-learn's
    ``GaussianMixture``): :math:`\hat c_i = \arg\max_k \pi_k \mathcal N(z_i; m_k, S_k)`. The DDVI paper's
    read-out of every method on the 1000 Genomes data (Sec. 5.3: "we seek to discover up to 20 clusters").

    :param latents: points, shape ``(N, d)`` (at least ``num_components`` of them).
    :param num_components: mixture components (the paper: 20).
    :param seed: the ``random_state`` of the k-means initialization.
    :param gmm_kwargs: further ``GaussianMixture`` arguments (default ``covariance_type="full"``).
    :return: cluster assignments, int64 array of shape ``(N,)``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import gmm_clusters
    >>> z = torch.cat([torch.randn(20, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + c for c in (-5.0, 5.0)])
    >>> labels = gmm_clusters(z, num_components=2)
    >>> bool((labels[:20] == labels[0]).all() and (labels[20:] == labels[20]).all() and labels[0] != labels[20])
    True
    """
    from sklearn.mixture import GaussianMixture

    points = _latents("latents", latents).detach().cpu().double().numpy()
    if (
        isinstance(num_components, bool)
        or not isinstance(num_components, int)
        or not 1 <= num_components <= points.shape[0]
    ):
        raise ValueError(
            f"num_components must be an int in [1, {points.shape[0]}] (the number of points), got {num_components!r}"
        )
    gmm_kwargs.setdefault("covariance_type", "full")
    gmm = GaussianMixture(n_components=num_components, random_state=seed, **gmm_kwargs)
    return gmm.fit_predict(points).astype(np.int64)


def gmm_clustering_scores(latents: torch.Tensor, labels_true, *, num_components: int = 20, seed: int = 0,
                          **gmm_kwargs) -> dict[str, float]:
    r"""The DDVI paper's Table 3 protocol in one call: :func:`gmm_clusters` (a 20-component full-covariance
    Gaussian mixture on the latents), scored against the true classes with :func:`clustering_scores`.

    :param latents: points, shape ``(N, d)``.
    :param labels_true: reference classes (e.g. populations), shape ``(N,)``.
    :param num_components: mixture components (the paper: 20).
    :param seed: the mixture's ``random_state``.
    :param gmm_kwargs: further ``GaussianMixture`` arguments.
    :return: ``{"purity": ..., "completeness": ..., "nmi": ...}``.

    With 20 clusters on 2 classes every cluster is pure, while each class is split (completeness < 1):

        Example:

        >>> import torch
        >>> from pyro_diffvi.metrics import gmm_clustering_scores
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.cat([torch.randn(50, 2, generator=g) * 0.1 + c for c in (-5.0, 5.0)])
        >>> classes = [0] * 50 + [1] * 50
        >>> gmm_clustering_scores(z, classes, num_components=2)
        {'purity': 1.0, 'completeness': 1.0, 'nmi': 1.0}
        >>> scores = gmm_clustering_scores(z, classes)
        >>> scores["purity"], scores["completeness"] < 0.5
        (1.0, True)
    """
    assignments = gmm_clusters(latents, num_components=num_components, seed=seed, **gmm_kwargs)
    return clustering_scores(_labels("labels_true", labels_true, assignments.shape[0]), assignments)
