"""The training plan: which families, grids, folds, label and extras ``train`` runs.

In:  keyword choices (or the presets :meth:`TrainConfig.fast` and :meth:`TrainConfig.thorough`).
Out: a validated :class:`TrainConfig`, read by every step of :mod:`sparkify.modeling.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparkify.modeling.pipelines import FAMILIES, FamilySettings, default_settings, fast_settings


@dataclass
class TrainConfig:
    """Everything ``train`` needs besides the data.

    models: families to compare ("rf", "gbt", "lr", "svc"); folds: k of the k-fold CV;
    label: the label design (``sparkify.features.LabelSpec``); test_fraction: share of
    users held out (stratified); parallelism: models fitted at once (families in the
    comparison, grid points in a CrossValidator); settings: fixed parameters and grids per
    family; tune: search the chosen family's tuning grid (else it keeps its comparison
    point); class_weights: weightCol on; label_comparison / ceiling: extra evaluations;
    seed_spread: extra split seeds when the test set has fewer than
    ``spread_max_test_users`` users (0 = off); artist_features: add the opt-in
    ``sparkify.features.ARTIST_FEATURES`` (an exact set of artists per user: about doubles
    the cost of loading a raw log); partitions: of the training table (None: one per
    :data:`sparkify.modeling.split.ROWS_PER_TRAINING_PARTITION` rows, at most the core count).

    The default is the quick plan (each family at one point, unweighted; calibration;
    ceiling); :meth:`thorough` adds the tuning grid, class weights where they rank better,
    the label comparison and the seed spread.
    """

    models: tuple[str, ...] = FAMILIES
    folds: int = 3
    seed: int = 42
    label: Any = None  # sparkify.features.LabelSpec; None -> LabelSpec() (prediction-time)
    test_fraction: float = 0.2
    parallelism: int = 2
    settings: dict[str, FamilySettings] = field(default_factory=default_settings)
    tune: bool = False
    class_weights: bool = False
    cv_metric: str = "areaUnderPR"
    label_comparison: bool = False
    ceiling: bool = True
    seed_spread: int = 0
    spread_max_test_users: int = 1000
    artist_features: bool = False
    partitions: int | None = None
    verbose: bool = True

    @classmethod
    def thorough(cls, **overrides) -> "TrainConfig":
        """The quick plan plus the tuning grid, the class-weight choice, the
        seed-compatible label comparison and four extra split seeds (``sparkify train
        --thorough``)."""
        base = dict(tune=True, class_weights=True, label_comparison=True, seed_spread=4)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def fast(cls, **overrides) -> "TrainConfig":
        """The quick plan with tiny models and 2 folds (``sparkify train --quick``, the test
        suite's setting: well under a minute on small_log); ``tune=True,
        class_weights=True`` adds the two-point tuning grids and the class-weight choice."""
        base = dict(folds=2, settings=fast_settings(), label_comparison=False, seed_spread=0, ceiling=True)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        """Raise ValueError on an unknown family, fewer than 2 folds, a test fraction outside
        [0.05, 0.5] or a family without settings."""
        unknown = [m for m in self.models if m not in FAMILIES]
        if unknown or not self.models:
            raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FAMILIES)}")
        if self.folds < 2:
            raise ValueError(f"--folds must be at least 2, not {self.folds}")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise ValueError(f"test fraction must be in [0.05, 0.5], not {self.test_fraction}")
        missing = [m for m in self.models if m not in self.settings]
        if missing:
            raise ValueError(f"no settings for model(s) {', '.join(missing)}")
