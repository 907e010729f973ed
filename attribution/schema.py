"""JSON Schema (draft 2020-12) of report.json, schema_version "2" (prose: docs/report-schema.md).

Version 2 (from 1): `metric`, `design`, `glossary`; a compared version may carry
`estimation_error` and no estimates (nothing to estimate, e.g. a constant outcome); statements
may have null numbers then. Additive changes (new optional keys) keep the version; renaming
or removing a key, or changing its meaning, bumps it.
"""

from __future__ import annotations

from typing import Any

NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}
STR_OR_NULL = {"type": ["string", "null"]}

ESTIMATE = {
    "type": "object",
    "required": [
        "estimator",
        "effect",
        "se",
        "ci_low",
        "ci_high",
        "p_value",
        "control_mean",
        "relative",
        "relative_ci_low",
        "relative_ci_high",
        "n_treated",
        "n_control",
    ],
    "properties": {
        "estimator": {"type": "string"},
        "effect": NUM,
        "se": NUM_OR_NULL,
        "ci_low": NUM_OR_NULL,
        "ci_high": NUM_OR_NULL,
        "p_value": NUM_OR_NULL,
        "control_mean": NUM_OR_NULL,
        "relative": NUM_OR_NULL,
        "relative_ci_low": NUM_OR_NULL,
        "relative_ci_high": NUM_OR_NULL,
        "n_treated": {"type": "integer", "minimum": 0},
        "n_control": {"type": "integer", "minimum": 0},
    },
}

CHECK = {
    "type": "object",
    "required": ["name", "scope", "status", "message", "details"],
    "properties": {
        "name": {"type": "string"},
        "scope": {"type": "string"},
        "status": {"enum": ["pass", "warn", "fail", "skipped"]},
        "message": {"type": "string"},
        "details": {"type": "object"},
    },
}

REFUTER = {
    "type": "object",
    "required": [
        "name",
        "status",
        "estimated_effect",
        "new_effect",
        "p_value",
        "simulations",
        "sample_size",
        "message",
    ],
    "properties": {
        "name": {
            "enum": [
                "placebo_treatment_refuter",
                "random_common_cause",
                "data_subset_refuter",
                "add_unobserved_common_cause",
            ]
        },
        "status": {"enum": ["pass", "warn", "fail", "error"]},
        "estimated_effect": NUM_OR_NULL,
        "new_effect": NUM_OR_NULL,
        "p_value": NUM_OR_NULL,
        "simulations": {"type": "integer"},
        "sample_size": {"type": "integer"},
        "message": {"type": "string"},
    },
}

FEEDBACK_SLICE = {
    "type": ["object", "null"],
    "required": [
        "parent_version",
        "trained_at",
        "code_version",
        "feature_service",
        "start",
        "end",
        "row_count",
        "fingerprint",
        "partition_count",
        "sources",
        "job_run_ids",
    ],
    "properties": {
        "parent_version": STR_OR_NULL,
        "trained_at": STR_OR_NULL,
        "code_version": STR_OR_NULL,
        "feature_service": STR_OR_NULL,
        "start": {"type": "string"},
        "end": {"type": "string"},
        "row_count": {"type": "integer"},
        "fingerprint": {"type": "string"},
        "partition_count": {"type": "integer"},
        "first_partition": STR_OR_NULL,
        "last_partition": STR_OR_NULL,
        "sources": {"type": "object"},
        "job_run_ids": {"type": "array", "items": {"type": "string"}},
    },
}

DECOMPOSITION = {
    "type": "object",
    "required": ["from_version", "to_version", "total", "parts", "rates", "method"],
    "properties": {
        "from_version": {"type": "string"},
        "to_version": {"type": "string"},
        "total": NUM,
        "parts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["mechanism", "contribution"],
                "properties": {
                    "mechanism": {
                        "enum": [
                            "traffic_mix",
                            "exposure",
                            "ctr",
                            "conversion",
                            "order_value",
                            "organic",
                            "unexplained",
                        ]
                    },
                    "contribution": NUM,
                },
            },
        },
        "rates": {"type": "object"},
        "method": {"type": "string"},
    },
}

UNADJUSTED = {
    "allOf": [ESTIMATE],
    "required": ["biased", "note"],
    "properties": {"biased": {"type": "boolean"}, "note": {"type": "string"}},
}

VERSION = {
    "type": "object",
    "required": [
        "model_version",
        "is_control",
        "arms",
        "users",
        "mean_revenue",
        "feedback_slice",
        "lineage_problem",
        "estimates",
        "refuters",
        "checks",
        "trustworthy",
    ],
    "properties": {
        "model_version": {"type": "string"},
        "is_control": {"type": "boolean"},
        "arms": {"type": "array", "items": {"type": "string"}},
        "users": {"type": "integer"},
        "mean_revenue": NUM,
        "mean_clicks": NUM,
        "conversion_rate": NUM,
        "feedback_slice": FEEDBACK_SLICE,
        "lineage_problem": STR_OR_NULL,
        "trustworthy": {"type": ["boolean", "null"]},
        "estimand": {"type": "string"},
        "adjustment_set": {"type": "array", "items": {"type": "string"}},
        "estimates": {"type": "array", "items": ESTIMATE},
        "naive": UNADJUSTED,
        "cuped": {
            "allOf": [UNADJUSTED],
            "required": ["covariate", "theta", "variance_reduction"],
        },
        "covariate_balance_smd": {"type": "object", "additionalProperties": NUM},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["segment", "n_treated", "n_control", "estimate"],
                "properties": {
                    "segment": {"type": "string"},
                    "estimate": {"oneOf": [ESTIMATE, {"type": "null"}]},
                    "naive": {"oneOf": [ESTIMATE, {"type": "null"}]},
                },
            },
        },
        "secondary": {"type": "object", "additionalProperties": ESTIMATE},
        "metrics": {"type": "object", "additionalProperties": ESTIMATE},
        "estimation_error": {"type": "string"},
        "skipped_estimators": {
            "type": "array",
            "items": {"type": "object", "required": ["estimator", "reason"]},
        },
        "refuters_skipped": STR_OR_NULL,
        "fallback_share": NUM_OR_NULL,
        "metric_value": NUM_OR_NULL,
        "external_policy": {"type": ["object", "null"]},
        "power": {
            "type": "object",
            "required": ["power", "alpha", "se", "users", "minimum_detectable_effect"],
            "properties": {"minimum_detectable_effect": NUM_OR_NULL, "se": NUM_OR_NULL},
        },
        "robustness": {
            "type": "object",
            "properties": {"rv": NUM_OR_NULL, "rv_alpha": NUM_OR_NULL},
        },
        "refuters": {"type": "array", "items": REFUTER},
        "refuter_sample_size": {"type": "integer"},
        "mechanisms": DECOMPOSITION,
        "checks": {"type": "array", "items": CHECK},
    },
    "if": {
        "properties": {"is_control": {"const": False}},
        "not": {"required": ["estimation_error"]},
    },
    "then": {
        "required": ["estimates", "naive", "cuped", "segments", "mechanisms", "power"],
        "properties": {"estimates": {"minItems": 1}},
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://loopline.dev/schemas/attribution-report/1",
    "title": "Loopline attribution report",
    "type": "object",
    "required": [
        "schema_version",
        "generated_at",
        "metric",
        "design",
        "glossary",
        "period",
        "unit",
        "outcome",
        "control_version",
        "trustworthy",
        "headline",
        "checks",
        "data",
        "causal_graph",
        "versions",
        "slice_attribution",
        "settings",
        "timings_seconds",
    ],
    "properties": {
        "schema_version": {"const": "2"},
        "generated_at": {"type": "string"},
        "period": {
            "type": "object",
            "required": ["since", "until", "attribution_window_hours", "pre_period_hours"],
            "properties": {"since": STR_OR_NULL, "until": STR_OR_NULL},
        },
        "unit": {"const": "user"},
        "metric": {"enum": ["revenue", "clicks", "purchases", "conversion", "ctr"]},
        "outcome": {"type": "string"},
        "design": {
            "type": "object",
            "required": ["control_source", "expected_split", "split_source"],
        },
        "glossary": {"type": "object", "required": ["refuters", "checks"]},
        "control_version": {"type": "string"},
        "trustworthy": {"type": "boolean"},
        "headline": {
            "type": "object",
            "required": ["trustworthy", "failed_checks", "estimator", "statements"],
            "properties": {
                "trustworthy": {"type": "boolean"},
                "failed_checks": {"type": "array", "items": {"type": "string"}},
                "estimator": {"type": "string"},
                "statements": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "model_version",
                            "effect",
                            "ci_low",
                            "ci_high",
                            "relative",
                            "p_value",
                            "significant",
                            "trustworthy",
                            "text",
                        ],
                    },
                },
            },
        },
        "checks": {"type": "array", "items": CHECK},
        "data": {"type": "object", "required": ["users", "covariates", "segments"]},
        "causal_graph": {
            "type": "object",
            "required": ["treatment", "outcome", "edges", "adjustment_set"],
            "properties": {
                "edges": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                }
            },
        },
        "versions": {"type": "array", "minItems": 2, "items": VERSION},
        "slice_attribution": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "older_version",
                    "newer_version",
                    "shared",
                    "older_slice",
                    "newer_slice",
                    "description",
                    "estimate",
                    "statement",
                ],
                "properties": {"estimate": ESTIMATE},
            },
        },
        "settings": {"type": "object"},
        "timings_seconds": {"type": "object", "additionalProperties": NUM},
    },
}
