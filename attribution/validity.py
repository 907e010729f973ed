"""The validity gate: every check that can make the headline untrustworthy.

A check is pass / warn / fail / skipped. Any "fail" (a sample-ratio mismatch, propensity
scores without overlap, too small an effective sample, a failed refuter, a version without
lineage) is shown above the headline and marks it not trustworthy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from attribution.causal import RefuterResult
from attribution.config import AttributionConfig
from attribution.slices import LineageStatus
from attribution.stats import Estimate

GLOBAL = "global"


@dataclass(frozen=True)
class Check:
    name: str
    scope: str  # "global" or a model version
    status: str  # pass | warn | fail | skipped
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm(
    counts: dict[str, int], expected: dict[str, float] | None, arms: dict[str, str], alpha: float
) -> Check:
    """Chi-square goodness of fit of users per version against the intended split."""
    if expected is None:
        return Check(
            "sample_ratio_mismatch",
            GLOBAL,
            "skipped",
            "no expected split configured (attribution.expected_split), e.g. a non-random rollout",
        )
    # Accept the split keyed by arm names as well as by versions.
    by_version = {arms.get(k, k): v for k, v in expected.items()}
    unexpected = sorted(set(counts) - set(by_version))
    if unexpected:
        return Check(
            "sample_ratio_mismatch",
            GLOBAL,
            "fail",
            f"versions {unexpected} received users but are not in the expected split "
            f"{sorted(by_version)}",
            {"observed": counts, "expected_share": by_version},
        )
    names = sorted(by_version)
    observed = np.array([counts.get(n, 0) for n in names], dtype=float)
    share = np.array([by_version[n] for n in names], dtype=float)
    exp = share / share.sum() * observed.sum()
    if len(names) < 2:
        return Check("sample_ratio_mismatch", GLOBAL, "skipped", "only one version in the split")
    chi2 = float(((observed - exp) ** 2 / exp).sum())
    p = float(sps.chi2.sf(chi2, df=len(names) - 1))
    status = "fail" if p < alpha else "pass"
    observed_share = ", ".join(
        f"{n} {o / observed.sum():.2%}" for n, o in zip(names, observed, strict=True)
    )
    intended = ", ".join(f"{n} {s:.2%}" for n, s in zip(names, share / share.sum(), strict=True))
    return Check(
        "sample_ratio_mismatch",
        GLOBAL,
        status,
        f"users per version {observed_share} vs intended {intended}: chi-square {chi2:.2f}, "
        f"p={p:.2g} ({'below' if p < alpha else 'above'} alpha {alpha:g})",
        {
            "chi2": chi2,
            "p_value": p,
            "alpha": alpha,
            "observed": {n: int(o) for n, o in zip(names, observed, strict=True)},
            "expected": {n: float(e) for n, e in zip(names, exp, strict=True)},
        },
    )


def overlap(
    version: str, propensity: np.ndarray, treated: np.ndarray, cfg: AttributionConfig
) -> list[Check]:
    """Positivity (share of extreme propensity scores) and effective sample size of IPW weights."""
    eps = cfg.positivity_eps
    extreme = float(np.mean((propensity < eps) | (propensity > 1 - eps)))
    pos_status = "fail" if extreme > cfg.max_extreme_propensity_share else "pass"
    checks = [
        Check(
            "positivity",
            version,
            pos_status,
            f"{extreme:.2%} of users have a propensity outside [{eps:g}, {1 - eps:g}] "
            f"(limit {cfg.max_extreme_propensity_share:.2%}); range "
            f"{propensity.min():.3f}–{propensity.max():.3f}",
            {
                "extreme_share": extreme,
                "min": float(propensity.min()),
                "max": float(propensity.max()),
            },
        )
    ]
    ps = np.clip(propensity, 1e-6, 1 - 1e-6)
    ess = {}
    for label, mask, w in (("treated", treated, 1 / ps), ("control", ~treated, 1 / (1 - ps))):
        weights = w[mask]
        n_eff = float(weights.sum() ** 2 / (weights**2).sum()) if weights.size else 0.0
        ess[label] = {"n": int(mask.sum()), "ess": n_eff, "share": n_eff / max(int(mask.sum()), 1)}
    worst = min(v["share"] for v in ess.values())
    checks.append(
        Check(
            "effective_sample_size",
            version,
            "fail" if worst < cfg.min_ess_share else "pass",
            "inverse-propensity weights keep "
            + ", ".join(
                f"{k} {v['ess']:,.0f} of {v['n']:,} ({v['share']:.0%})" for k, v in ess.items()
            )
            + f" (limit {cfg.min_ess_share:.0%})",
            {"ess": ess},
        )
    )
    return checks


def refuters(version: str, results: list[RefuterResult]) -> list[Check]:
    out = []
    for r in results:
        status = {"error": "warn"}.get(r.status, r.status)
        out.append(Check(f"refuter:{r.name}", version, status, r.message, r.to_dict()))
    return out


def lineage(version: str, status: LineageStatus, is_control: bool) -> Check:
    if status.lineage is not None:
        s = status.lineage["slice"]
        return Check(
            "lineage",
            version,
            "pass",
            f"trained on slice {s['start']} → {s['end']} ({s['row_count']} rows, "
            f"fingerprint {s['fingerprint']})",
        )
    # The control is only the reference: without lineage nothing is attributed to its slice.
    level = "warn" if is_control else "fail"
    return Check(
        "lineage",
        version,
        level,
        f"{status.problem}: the effect cannot be tied to a feedback slice"
        + (" (control version: reference only)" if is_control else ""),
    )


def crossover(info: dict[str, Any], cfg: AttributionConfig) -> Check:
    users = max(int(info.get("users", 0)), 1)
    share = int(info.get("crossover_users", 0)) / users
    return Check(
        "assignment_crossover",
        GLOBAL,
        "fail" if share > cfg.max_crossover_share else "pass",
        f"{share:.2%} of users were served by more than one arm (limit "
        f"{cfg.max_crossover_share:.2%}); analysed by their first arm",
        {"share": share},
    )


def truncation(info: dict[str, Any], max_share: float = 0.005) -> Check:
    n = int(info.get("truncated_windows", 0))
    users = max(int(info.get("users", 0)), 1)
    status = "warn" if n / users > max_share else "pass"
    if n == 0:
        return Check(
            "attribution_window_complete", GLOBAL, status, "every user's window is covered by data"
        )
    return Check(
        "attribution_window_complete",
        GLOBAL,
        status,
        f"{n:,} users ({n / users:.2%}) have attribution windows that end after the newest data: "
        "their revenue is undercounted (equally across versions if exposure timing is balanced)",
        {"users": n, "share": n / users},
    )


def manifests(info: dict[str, Any]) -> Check:
    problems = []
    for key in ("impressions", "unmatched_interactions"):
        part = info.get(key) or {}
        problems += part.get("manifest_mismatches", [])
        if part.get("partitions_without_manifest"):
            problems.append(
                f"{key}: {part['partitions_without_manifest']} partitions lack _manifest.json"
            )
    if not info.get("impressions"):
        return Check("slice_manifests", GLOBAL, "skipped", "data did not come from slice files")
    return Check(
        "slice_manifests",
        GLOBAL,
        "warn" if problems else "pass",
        "; ".join(problems[:5]) if problems else "row counts match every partition manifest",
        {"problems": problems},
    )


def agreement(version: str, estimates: list[Estimate], alpha: float) -> Check:
    """Estimators built on different models should agree; disagreement hints at misspecification."""
    if len(estimates) < 2:
        return Check("estimator_agreement", version, "skipped", "one estimator configured")
    base = estimates[0]
    worst = None
    for other in estimates[1:]:
        se = math.sqrt(base.se**2 + other.se**2)
        z = abs(base.effect - other.effect) / se if se > 0 else 0.0
        if worst is None or z > worst[1]:
            worst = (other, z)
    assert worst is not None
    crit = float(sps.norm.ppf(1 - alpha / 2))
    status = "warn" if worst[1] > crit else "pass"
    return Check(
        "estimator_agreement",
        version,
        status,
        f"{base.estimator} {base.effect:+.4g} vs {worst[0].estimator} {worst[0].effect:+.4g} "
        f"({worst[1]:.1f} combined SE apart)",
    )


def naive_difference(version: str, biased: bool, note: str) -> Check:
    """Not a failure (adjustment is the answer to it), but the reader must see it up front."""
    return Check("naive_difference", version, "warn" if biased else "pass", note)


def gate(checks: list[Check], scope: str | None = None) -> tuple[bool, list[Check]]:
    """(trustworthy, failures) for the whole report, or for one version plus global checks."""
    relevant = [c for c in checks if scope is None or c.scope in (GLOBAL, scope)]
    failures = [c for c in relevant if c.status == "fail"]
    return not failures, failures
