"""Draw bench/results/*.json as docs/performance.png (guestlab vs raw, class growth)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VERBS = ("up", "check", "reset", "down")


def main() -> None:
    labs = json.loads((RESULTS / "lab-vs-raw.json").read_text())["labs"]
    scales = sorted(RESULTS.glob("class-scale-*.json"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    names = list(labs)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ratios = [labs[name]["ratio"][v] for v in VERBS]
        ax.bar([x + i * width for x in range(len(VERBS))], ratios, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(VERBS))], VERBS)
    ax.set_ylabel("guestlab time / raw engine CLI time")
    ax.set_title("Same lab, guestlab vs the engine's own CLI (median)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for path in scales:
        data = json.loads(path.read_text())
        rows = data["rows"]
        xs = [r["students"] for r in rows]
        ax.plot(xs, [r["up_s"] for r in rows], marker="o", label=f"class up ({data['backend']})")
        ax.plot(
            xs, [r["check_s"] for r in rows], marker="s", label=f"class check ({data['backend']})"
        )
    ax.set_xlabel("students")
    ax.set_ylabel("seconds")
    ax.set_title("Class scale")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "performance.png"
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
