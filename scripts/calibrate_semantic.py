"""Calibrate the semantic cache's threshold on the shipped labelled pairs (numbers quoted
in the README).

Each pair is compared as the index compares requests: ``conversation_text`` of one user
message, embedded with ``HashingEmbedder``. Prints the precision/recall curve at a few
thresholds, the recommended threshold for 0.99 and 0.95 target precision, and the false
positives that decide it. ``--chart out.html`` also saves the altair chart.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from devora_lab.cache.semantic import (
    Calibration,
    HashingEmbedder,
    calibrate,
    conversation_text,
    load_pairs,
)

PAIRS = Path(__file__).resolve().parents[1] / "data" / "semantic_pairs.jsonl"
SHOWN = (0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99, 1.0)
TARGETS = (0.99, 0.95)


def as_request(text: str) -> str:
    """The text the index compares for a request whose last message is ``text``."""
    return conversation_text([{"role": "user", "content": text}])


def recommendations(result: Calibration, label: str) -> None:
    """The recommended threshold per target precision, or the best that can be had."""
    curve = result.curve
    positives = int(result.scores["same"].sum())
    for target in TARGETS:
        threshold = result.recommend(target)
        if threshold is None:
            row = curve.iloc[int(np.nanargmax(curve["precision"].to_numpy()))]
            print(f"{label}target precision {target}: unreachable (best precision "
                  f"{row['precision']:.3f} at threshold {row['threshold']:.3f}, recall "
                  f"{row['recall']:.3f})")
        else:
            row = curve[curve["threshold"] == threshold].iloc[0]
            print(f"{label}target precision {target}: threshold {threshold:.3f} -> precision "
                  f"{row['precision']:.3f}, recall {row['recall']:.3f} "
                  f"({int(row['true_positives'])} of {positives} positives)")


def run(path: Path, chart: Path | None = None) -> Calibration:
    pairs = load_pairs(path)
    kinds = [json.loads(line).get("kind", "?") for line in path.read_text().splitlines()
             if line.strip()]
    positives = sum(same for _, _, same in pairs)
    print(f"{len(pairs)} labelled pairs from {path.name}: {positives} same answer, "
          f"{len(pairs) - positives} different answer; embedder: HashingEmbedder(dim=2048)\n")
    requests = [(as_request(a), as_request(b), same) for a, b, same in pairs]
    result = calibrate(requests, HashingEmbedder())
    curve = result.curve
    print(curve[curve["threshold"].isin(SHOWN)].to_string(
        index=False, float_format=lambda value: f"{value:.3f}"))
    print()
    recommendations(result, "")
    prose = [pair for pair, kind in zip(requests, kinds, strict=True) if kind != "code"]
    print(f"\nwithout the {len(requests) - len(prose)} pairs quoting code (kind 'code'):")
    recommendations(calibrate(prose, HashingEmbedder()), "  ")
    scores = result.scores.assign(kind=kinds)
    false = scores[~scores["same"]].sort_values("similarity", ascending=False)
    print("\nhardest negatives (would be false hits at a threshold at or below their score):")
    for pair in false.head(8).itertuples():
        print(f"  {pair.similarity:.4f} [{pair.kind}] {pair.a!r} | {pair.b!r}")
    for cut in (0.95, 1.0):
        kinds_over = Counter(false[false["similarity"] >= cut - 1e-6]["kind"])
        print(f"false positives at >= {cut}: {dict(kinds_over) or 'none'}")
    by_kind = scores.groupby(["same", "kind"])["similarity"].agg(["min", "median", "max"])
    print(f"\nsimilarity by kind:\n{by_kind.round(3).to_string()}")
    if chart is not None:
        result.chart().save(str(chart))
        print(f"\nchart saved to {chart}")
    if any(math.isnan(value) for value in curve["recall"]):
        raise SystemExit("the labelled set has no positive pair")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=Path, default=PAIRS, help="labelled pairs (JSON lines)")
    parser.add_argument("--chart", type=Path, help="save the precision/recall chart (.html)")
    args = parser.parse_args()
    run(args.pairs, args.chart)


if __name__ == "__main__":
    main()
