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
import pandas as pd
from scipy import stats as sps

from attribution.causal import RefuterResult
from attribution.config import AttributionConfig
from attribution.slices import LineageStatus
from attribution.stats import Estimate

GLOBAL = "global"

# What makes each check fail, as written in the report's glossary.
RULES = {
    "sample_ratio_mismatch": "chi-square test of users per version against the intended split "
    "(argument, else the registry's rollout) fails below srm_alpha",
    "assignment_crossover": "fails when more than max_crossover_share of users saw two arms",
    "fallback_balance": "fails when the arms' shares of impressions served by the popularity "
    "fallback differ by more than max_fallback_share_gap",
    "lineage": "fails for a compared version with neither lineage.json nor an external "
    "registration (the control only warns)",
    "estimation": "fails when a comparison has nothing to estimate (constant or missing outcome)",
    "estimators": "warns when a configured estimator could not run (the reason is given)",
    "positivity": "fails when more than max_extreme_propensity_share of users have a "
    "propensity outside [positivity_eps, 1 - positivity_eps]",
    "effective_sample_size": "fails when inverse-propensity weights keep less than min_ess_share "
    "of an arm",
    "negative_control": "fails when the version has a significant (negative_control_alpha) "
    "adjusted 'effect' on revenue in the held-out window before exposure",
    "assignment": "the headline says OBSERVATIONAL when SRM fails or a pre-exposure "
    "standardised difference exceeds max_balance_smd; with a randomised split on record that "
    "imbalance (beyond chance at srm_alpha) fails, without one it warns",
    "estimator_agreement": "warns when two estimators differ by more than z(1 - alpha/2) "
    "combined SEs",
    "naive_difference": "warns when the naive interval excludes the adjusted estimate or the "
    "arms are imbalanced before exposure",
}


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
            "no expected split: neither --expected-split nor a registry rollout that served "
            "these versions (e.g. a non-random rollout)",
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
    version: str,
    propensity: np.ndarray,
    treated: np.ndarray,
    cfg: AttributionConfig,
    design_share: float | None = None,
) -> list[Check]:
    """Positivity and effective sample size of IPW weights.

    Positivity is a property of how users were assigned. With a randomised split on record
    that held (SRM and balance pass: `design_share` is then this version's share of the two
    arms), every user had that probability by design, and the check is on it. The fitted
    propensity model is still reported: at a hundred users a logistic fit puts one user
    near 0 or 1 by noise alone, which says nothing about the assignment (one such user of
    70 was 1.4%, over the 1% limit). Without a split that held, the fitted scores are all
    there is, and more than max_extreme_propensity_share of them outside [eps, 1 - eps] fails.
    """
    eps = cfg.positivity_eps
    extreme = float(np.mean((propensity < eps) | (propensity > 1 - eps)))
    fitted = (
        f"{extreme:.2%} of users have a fitted propensity outside [{eps:g}, {1 - eps:g}] "
        f"(limit {cfg.max_extreme_propensity_share:.2%}); range "
        f"{propensity.min():.3f}–{propensity.max():.3f}"
    )
    details: dict[str, Any] = {
        "extreme_share": extreme,
        "min": float(propensity.min()),
        "max": float(propensity.max()),
        "design_share": design_share,
    }
    if design_share is not None:
        ok = eps <= design_share <= 1 - eps
        message = (
            f"randomised split on record and it held: every user's propensity is "
            f"{design_share:.3f} by design ({'inside' if ok else 'outside'} "
            f"[{eps:g}, {1 - eps:g}]); the fitted model: {fitted}"
        )
        checks = [Check("positivity", version, "pass" if ok else "fail", message, details)]
    else:
        status = "fail" if extreme > cfg.max_extreme_propensity_share else "pass"
        checks = [Check("positivity", version, status, fitted, details)]
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


def refuters(version: str, results: list[RefuterResult], errors_fail: bool = True) -> list[Check]:
    """One check per refuter; a refuter that errored proves nothing, so it fails by default."""
    out = []
    for r in results:
        status = {"error": "fail" if errors_fail else "warn"}.get(r.status, r.status)
        out.append(Check(f"refuter:{r.name}", version, status, r.message, r.to_dict()))
    return out


def estimators(version: str, skipped: list[dict[str, str]], headline: str) -> Check:
    """Which configured estimators could not run here, and why (a warning, not a failure)."""
    if not skipped:
        return Check("estimators", version, "pass", f"every configured estimator ran ({headline})")
    reasons = "; ".join(f"{s['estimator']}: {s['reason']}" for s in skipped)
    return Check(
        "estimators",
        version,
        "warn",
        f"headline from {headline}; not run: {reasons}",
        {"skipped": skipped, "headline": headline},
    )


def estimation(version: str, problem: str) -> Check:
    """A comparison with nothing to estimate (constant or missing outcome, an empty arm)."""
    return Check("estimation", version, "fail", problem)


def fallback_balance(users: pd.DataFrame, max_gap: float) -> Check:
    """Arms must see the popularity fallback equally often, else they compare fallback traffic."""
    if "fallback_impressions" not in users.columns:
        return Check("fallback_balance", GLOBAL, "skipped", "no fallback flag in the data")
    g = users.groupby("arm")[["impressions", "fallback_impressions"]].sum()
    version = users.groupby("arm")["version"].first()
    per_arm: dict[str, dict[str, Any]] = {
        str(arm): {
            "version": str(version[arm]),
            "impressions": int(row["impressions"]),
            "fallback_impressions": int(row["fallback_impressions"]),
            "share": float(row["fallback_impressions"] / row["impressions"])
            if row["impressions"]
            else 0.0,
        }
        for arm, row in g.iterrows()
    }
    shares = [float(v["share"]) for v in per_arm.values()]
    gap = max(shares) - min(shares) if shares else 0.0
    listed = ", ".join(f"{a} ({v['version']}) {v['share']:.1%}" for a, v in per_arm.items())
    return Check(
        "fallback_balance",
        GLOBAL,
        "fail" if gap > max_gap else "pass",
        f"impressions served by the popularity fallback: {listed}; gap {gap:.1%} "
        f"(limit {max_gap:.1%})"
        + (": the arms differ in fallback traffic, not only in models" if gap > max_gap else ""),
        {"per_arm": per_arm, "gap": gap, "limit": max_gap},
    )


def negative_control(version: str, estimate: Estimate | None, alpha: float, why: str) -> Check:
    """The version's "effect" on revenue before exposure, where it can have none."""
    if estimate is None:
        return Check("negative_control", version, "skipped", why)
    failed = estimate.significant(alpha)
    return Check(
        "negative_control",
        version,
        "fail" if failed else "pass",
        f"adjusted 'effect' on revenue in the held-out window before exposure: "
        f"{estimate.effect:+.4g} [{estimate.ci_low:+.4g}, {estimate.ci_high:+.4g}], "
        f"p={estimate.p_value:.2g} "
        + (
            f"(below {alpha:g}): the arms differ in something the covariates miss, so the "
            "estimate is confounded"
            if failed
            else f"(expected ≈ 0; alpha {alpha:g})"
        ),
        estimate.to_dict(),
    )


def assignment(
    version: str,
    srm_check: Check,
    balance: dict[str, float],
    max_smd: float,
    n_treated: int,
    n_control: int,
    srm_alpha: float,
) -> Check:
    """Randomised or observational: said out loud, because it changes what the number means.

    With an intended (randomised) split on record, pre-exposure imbalance beyond `max_smd` that
    chance cannot explain (z test of the standardised difference at `srm_alpha`) means the
    randomisation broke: a failure like SRM. Without one it is a warning: the rollout was
    never claimed to be random, the estimate is simply observational.
    """
    worst = max(balance.items(), key=lambda kv: kv[1], default=("", 0.0))
    chance_sd = math.sqrt(1.0 / max(n_treated, 1) + 1.0 / max(n_control, 1))
    beyond_chance = worst[1] / chance_sd > float(sps.norm.ppf(1 - srm_alpha / 2))
    randomised = srm_check.status != "skipped"
    reasons = []
    if srm_check.status == "fail":
        reasons.append("users per version do not match the intended split (SRM)")
    if worst[1] > max_smd and (beyond_chance or not randomised):
        reasons.append(
            f"arms differ before exposure ({worst[0]} standardised difference {worst[1]:.2f} > "
            f"{max_smd:g})"
        )
    details = {"observational": bool(reasons), "max_smd": worst[1], "randomised_split": randomised}
    if reasons:
        return Check(
            "assignment",
            version,
            "fail" if randomised else "warn",
            "; ".join(reasons)
            + (
                ": the registered randomised split did not hold"
                if randomised
                else ": no randomised split is on record"
            )
            + "; the estimate is observational and rests on there being no unobserved "
            "confounding",
            details,
        )
    if not randomised and not balance:
        return Check(
            "assignment",
            version,
            "warn",
            "no intended split on record and no pre-exposure covariate to check balance: "
            "nothing shows the assignment was random",
            {**details, "observational": True},
        )
    return Check(
        "assignment",
        version,
        "pass",
        f"consistent with a randomised split (largest standardised difference {worst[1]:.2f})",
        details,
    )


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
    if status.external is not None:
        return Check(
            "lineage",
            version,
            "pass",
            f"registered external policy ({status.external.get('policy')}): claims no "
            "training slice, so none is required",
            {"external": status.external},
        )
    # The control is only the reference: without lineage nothing is attributed to its slice.
    level = "warn" if is_control else "fail"
    return Check(
        "lineage",
        version,
        level,
        f"{status.problem}: the effect cannot be tied to a feedback slice"
        + (
            " (control version: reference only)"
            if is_control
            else "; a baseline or external policy is registered with `loopline models "
            "register-external NAME --policy ...`"
        ),
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
