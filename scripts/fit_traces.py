"""Fit the workload model shipped in ``devora_lab/sim/fitted_traces.json`` from public traces.

The demo workload should look like production LLM traffic, not like uniform noise, so its
token lengths, burstiness and prefix reuse are fitted here from two public traces and only
the *figures* are shipped (the traces themselves stay outside the repository):

* ``azure_llm_2023_code.csv``: one hour of Azure production LLM inference (code), CC-BY 4.0,
  Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting",
  ISCA 2024.
* ``mooncake_synthetic_trace.jsonl``: Mooncake request trace with 512-token prefix block ids,
  Apache-2.0, Qin et al., "Mooncake: Trading More Storage for Less Computation", FAST 2025.

For each token distribution the script keeps both a lognormal fit (with its KS distance, so
one can see how poor a parametric fit is) and empirical quantiles; the sampler draws from the
quantiles by inverse-CDF interpolation, which keeps the real shape (clipping at context
limits, heavy tails) that a lognormal would smooth away.

The output is deterministic: numpy and the standard library only, fixed quantile levels,
values rounded to 6 significant digits, and ``--fitted-on`` to pin the date. Run::

    .venv/bin/python scripts/fit_traces.py               # shared/data -> the package
    .venv/bin/python scripts/fit_traces.py --fitted-on 2025-01-31 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
# The traces live in shared/data next to the checkout, or inside it on some machines.
DATA_CANDIDATES = (REPO / "shared" / "data", REPO.parent / "shared" / "data")
DEFAULT_DATA = next((p for p in DATA_CANDIDATES if p.is_dir()), DATA_CANDIDATES[-1])
DEFAULT_OUT = REPO / "devora_lab" / "sim" / "fitted_traces.json"
AZURE_FILE = "azure_llm_2023_code.csv"
MOONCAKE_FILE = "mooncake_synthetic_trace.jsonl"
FORMAT_VERSION = 1
BLOCK_TOKENS = 512

# Percent levels of the empirical quantiles; 0 and 100 bound the inverse-CDF interpolation.
LEVELS_PCT: tuple[float, ...] = (
    0.0, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0,
    55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 100.0,
)
# Windows over which counts are compared with a Poisson process (index of dispersion).
WINDOWS_S: tuple[int, ...] = (1, 10, 60, 300)

SOURCES: dict[str, dict[str, Any]] = {
    "azure_code": {
        "file": AZURE_FILE,
        "dataset": "Azure LLM inference trace 2023, code (AzureLLMInferenceTrace_code)",
        "url": "https://github.com/Azure/AzurePublicDataset/blob/master/AzureLLMInferenceDataset2023.md",
        "licence": "CC-BY-4.0",
        "citation": (
            "Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Íñigo Goiri, Saeed "
            "Maleki, Ricardo Bianchini. Splitwise: Efficient generative LLM inference using "
            "phase splitting. ISCA 2024."
        ),
        "columns": "TIMESTAMP, ContextTokens, GeneratedTokens",
    },
    "mooncake": {
        "file": MOONCAKE_FILE,
        "dataset": "Mooncake request trace (timestamp ms, input/output length, 512-token "
                   "prefix block hash ids)",
        "url": "https://github.com/kvcache-ai/Mooncake",
        "licence": "Apache-2.0",
        "citation": (
            "Ruoyu Qin, Zheming Li, Weiran He, Jialei Cui, Feng Ren, Mingxing Zhang, "
            "Yongwei Wu, Weimin Zheng, Xinran Xu. Mooncake: Trading More Storage for Less "
            "Computation - A KVCache-centric Architecture for Serving LLM Chatbot. FAST 2025."
        ),
        "columns": "timestamp, input_length, output_length, hash_ids",
    },
}


def sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (stable JSON across platforms)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits - 1}e}")


def normal_cdf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Standard normal CDF, exact (math.erf), without needing scipy."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(0.5 * (1.0 + erf(x / math.sqrt(2.0))), dtype=np.float64)


def ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks with ties averaged (what Spearman's rho needs)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)
    average = upper - (counts - 1) / 2.0
    return np.asarray(average[inverse], dtype=np.float64)


def spearman(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Spearman rank correlation (Pearson correlation of tie-averaged ranks)."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def ks_lognormal(values: NDArray[np.float64], mu: float, sigma: float) -> float:
    """Kolmogorov-Smirnov distance between the sample and a lognormal (ties handled)."""
    unique, counts = np.unique(values, return_counts=True)
    n = values.size
    below = np.concatenate(([0], np.cumsum(counts)[:-1])) / n
    at_or_below = np.cumsum(counts) / n
    model = normal_cdf((np.log(unique) - mu) / sigma)
    return float(max(np.max(np.abs(model - at_or_below)), np.max(np.abs(model - below))))


def quantiles(values: NDArray[np.float64], digits: int = 6) -> dict[str, list[float]]:
    """Empirical quantiles at ``LEVELS_PCT`` (numpy's default linear interpolation)."""
    found = np.quantile(values, np.asarray(LEVELS_PCT) / 100.0)
    return {"levels_pct": list(LEVELS_PCT), "values": [sig(float(v), digits) for v in found]}


def distribution(values: NDArray[np.float64]) -> dict[str, Any]:
    """Summary, lognormal MLE with KS distance, and empirical quantiles of token counts."""
    logs = np.log(values)
    mu, sigma = float(logs.mean()), float(logs.std())
    return {
        "count": int(values.size),
        "mean": sig(float(values.mean())),
        "median": sig(float(np.median(values))),
        "p90": sig(float(np.quantile(values, 0.9))),
        "min": sig(float(values.min())),
        "max": sig(float(values.max())),
        "lognormal": {
            "mu": sig(mu),
            "sigma": sig(sigma),
            "median": sig(math.exp(mu)),
            "ks_distance": sig(ks_lognormal(values, mu, sigma), 4),
        },
        "quantiles": quantiles(values),
    }


def correlation(inputs: NDArray[np.float64], outputs: NDArray[np.float64]) -> dict[str, float]:
    """Spearman's rho and the Gaussian-copula correlation that reproduces it."""
    rho = spearman(inputs, outputs)
    return {
        "spearman": sig(rho, 4),
        # For a Gaussian copula, rho_s = (6/pi) asin(r/2), hence r = 2 sin(pi rho_s / 6).
        "gaussian_copula_r": sig(2.0 * math.sin(math.pi * rho / 6.0), 4),
    }


def arrivals(seconds: NDArray[np.float64]) -> dict[str, Any]:
    """Rate, inter-arrival dispersion and window-level burstiness of request arrivals."""
    seconds = np.sort(seconds)
    gaps = np.diff(seconds)
    duration = float(seconds[-1] - seconds[0])
    mean_gap, sd_gap = float(gaps.mean()), float(gaps.std())
    cv = sd_gap / mean_gap
    windows = {}
    for width in WINDOWS_S:
        counts = np.bincount(((seconds - seconds[0]) // width).astype(np.int64))
        mean, var = float(counts.mean()), float(counts.var())
        fano = var / mean
        windows[str(width)] = {
            "mean_count": sig(mean),
            "index_of_dispersion": sig(fano, 4),
            # Squared CV of a gamma-mixed Poisson intensity giving that dispersion; unlike
            # the Fano factor it does not depend on the rate, so it transfers to other loads.
            "intensity_cv2": sig(max(fano - 1.0, 0.0) / mean, 4),
        }
    return {
        "requests": int(seconds.size),
        "duration_s": sig(duration),
        "rate_per_s": sig((seconds.size - 1) / duration),
        "interarrival_mean_s": sig(mean_gap),
        "interarrival_cv": sig(cv, 4),
        # Goh & Barabasi burstiness: -1 periodic, 0 Poisson, towards 1 bursty.
        "burstiness": sig((sd_gap - mean_gap) / (sd_gap + mean_gap), 4),
        "interarrival_quantiles_s": {
            "levels_pct": [50.0, 90.0, 99.0, 100.0],
            "values": [sig(float(v)) for v in np.quantile(gaps, [0.5, 0.9, 0.99, 1.0])],
        },
        "windows_s": windows,
    }


def _seconds_of_day(stamp: str) -> float:
    # "2023-11-16 18:17:03.9799600": seven fractional digits, which datetime cannot parse.
    clock = stamp.split(" ")[1]
    hours, minutes, secs = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def fit_azure(path: Path) -> dict[str, Any]:
    """Token distributions, correlation and arrival statistics of the Azure code trace."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    days = {row["TIMESTAMP"].split(" ")[0] for row in rows}
    if len(days) != 1:
        raise SystemExit(f"{path.name}: expected one day of requests, found {sorted(days)}")
    seconds = np.array([_seconds_of_day(row["TIMESTAMP"]) for row in rows])
    inputs = np.array([float(row["ContextTokens"]) for row in rows])
    outputs = np.array([float(row["GeneratedTokens"]) for row in rows])
    return {
        "rows": len(rows),
        "window": {"first": min(r["TIMESTAMP"] for r in rows),
                   "last": max(r["TIMESTAMP"] for r in rows)},
        "input_tokens": distribution(inputs),
        "output_tokens": distribution(outputs),
        "correlation": correlation(inputs, outputs),
        "arrivals": arrivals(seconds),
    }


def prefix_reuse(blocks: list[list[int]]) -> dict[str, Any]:
    """How much of each request's prompt was already seen, in 512-token blocks.

    ``reused_block_share`` counts every block id that appeared in an earlier request;
    ``prefix_hit_ratio`` is per request the leading run of such blocks over all its blocks,
    which is what a prefix (KV or prompt) cache can actually serve.
    """
    seen: set[int] = set()
    reused = total = 0
    ratios = np.empty(len(blocks))
    for i, ids in enumerate(blocks):
        prefix = 0
        while prefix < len(ids) and ids[prefix] in seen:
            prefix += 1
        reused += sum(1 for block in ids if block in seen)
        total += len(ids)
        ratios[i] = prefix / len(ids) if ids else 0.0
        seen.update(ids)
    counts = np.array([len(ids) for ids in blocks], dtype=np.float64)
    return {
        "block_tokens": BLOCK_TOKENS,
        "blocks_total": total,
        "blocks_unique": len(seen),
        "reused_block_share": sig(reused / total, 4),
        "requests_with_prefix_hit": sig(float(np.mean(ratios > 0)), 4),
        "prefix_hit_ratio": {
            "mean": sig(float(ratios.mean()), 4),
            "quantiles": quantiles(ratios, 4),
        },
        "blocks_per_request": {
            "mean": sig(float(counts.mean())),
            "quantiles": quantiles(counts),
        },
    }


def fit_mooncake(path: Path) -> dict[str, Any]:
    """Token distributions, correlation, arrivals and prefix reuse of the Mooncake trace."""
    with path.open() as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rows.sort(key=lambda row: row["timestamp"])  # stable: ties keep file order
    seconds = np.array([row["timestamp"] / 1000.0 for row in rows])
    inputs = np.array([float(row["input_length"]) for row in rows])
    outputs = np.array([float(row["output_length"]) for row in rows])
    return {
        "rows": len(rows),
        "input_tokens": distribution(inputs),
        "output_tokens": distribution(outputs),
        "correlation": correlation(inputs, outputs),
        "arrivals": arrivals(seconds),
        "prefix_reuse": prefix_reuse([list(row["hash_ids"]) for row in rows]),
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit(data: Path, fitted_on: str) -> dict[str, Any]:
    """The whole JSON document, from the two trace files in ``data``."""
    azure = fit_azure(data / AZURE_FILE)
    mooncake = fit_mooncake(data / MOONCAKE_FILE)
    datasets = {}
    for key, fitted in (("azure_code", azure), ("mooncake", mooncake)):
        meta = dict(SOURCES[key])
        meta["rows"] = fitted["rows"]
        meta["sha256"] = sha256(data / meta["file"])
        datasets[key] = meta
    return {
        "format_version": FORMAT_VERSION,
        "source": {
            "fitted_on": fitted_on,
            "fitted_by": "scripts/fit_traces.py",
            "note": "Only figures fitted from the traces are shipped, never the traces.",
            "datasets": datasets,
        },
        "traces": {"azure_code": azure, "mooncake": mooncake},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"folder with {AZURE_FILE} and {MOONCAKE_FILE}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--fitted-on", default=None,
                        help="date to record (default: keep the existing file's date when "
                             "the figures are unchanged, else today in UTC)")
    args = parser.parse_args(argv)
    for name in (AZURE_FILE, MOONCAKE_FILE):
        if not (args.data / name).is_file():
            print(f"missing {args.data / name}", file=sys.stderr)
            return 2
    fitted_on = args.fitted_on
    if fitted_on is None:
        fitted_on = datetime.now(timezone.utc).date().isoformat()
        if args.out.is_file():
            previous = json.loads(args.out.read_text())
            kept = previous.get("source", {}).get("fitted_on", fitted_on)
            if render(fit(args.data, kept)) == args.out.read_text():
                fitted_on = kept
    text = render(fit(args.data, fitted_on))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text)} bytes, fitted on {fitted_on})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
