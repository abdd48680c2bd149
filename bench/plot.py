"""Draw bench/results/*.json as docs/performance.png, and print the tables of
docs/performance.md from the same files (one source for both).

    python bench/plot.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VERBS = ("up", "check", "reset", "down")


def by_backend(labs: dict[str, dict]) -> dict[str, dict[str, list[float]]]:
    """backend -> verb -> the ratio of each of its labs."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, r in labs.items():
        backend = name.split("/")[0]
        for v in VERBS:
            out.setdefault(backend, {}).setdefault(v, []).append(r["ratio"][v])
    return out


def plot(labs: dict[str, dict], scales: list[dict]) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    groups = by_backend(labs)
    width = 0.8 / len(groups)
    for i, (backend, verbs) in enumerate(groups.items()):
        med = [statistics.median(verbs[v]) for v in VERBS]
        low = [m - min(verbs[v]) for m, v in zip(med, VERBS, strict=True)]
        high = [max(verbs[v]) - m for m, v in zip(med, VERBS, strict=True)]
        n = len(verbs["up"])
        ax.bar(
            [x + i * width for x in range(len(VERBS))], med, width, yerr=[low, high],
            capsize=3, label=f"{backend} ({n} lab{'s' if n > 1 else ''})",
        )  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([x + width * (len(groups) - 1) / 2 for x in range(len(VERBS))], VERBS)
    ax.set_ylabel("guestlab time / raw engine time (log)")
    ax.set_title("Same labs, guestlab vs the engine by hand\n(median over labs, bars: min-max)")
    ax.legend(fontsize=8)
    ax = axes[1]
    # one series per backend, cold or from a pool: its sizes may come from several runs
    series: dict[tuple[str, bool], dict[int, dict]] = {}
    for data in scales:
        for row in data["rows"]:
            if row.get("hostile_check_s"):  # a run with a hostile student is another question
                continue
            series.setdefault((data["backend"], bool(row.get("pool"))), {})[row["students"]] = row
    for (backend, pooled), rows in sorted(series.items()):
        xs = sorted(rows)
        for key, mark in (("up_s", "o"), ("check_s", "s")):
            where = f"{backend}, from a pool" if pooled else backend
            ax.plot(
                xs, [rows[x][key] for x in xs], marker=mark, label=f"class {key[:-2]} ({where})"
            )
    ax.set_xlabel("students")
    ax.set_ylabel("seconds")
    ax.set_title("Class scale")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "performance.png"
    fig.savefig(out, dpi=100)
    return out


def tables(result: dict, scales: list[dict]) -> str:
    lines = [
        "| backend / lab | up: guestlab / raw s (ratio) | check | reset | down |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["labs"].items():
        cells = [
            f"{r['median_s'][f'guestlab {v}']} / {r['median_s'][f'raw {v}']} (**{r['ratio'][v]}**)"
            for v in VERBS
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += ["", "| command | median s |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in result.get("cli_s", {}).items()]
    keys = ("students", "up_s", "up_s_per_lab", "up_peak_rss_mib", "check_s",
            "check_peak_rss_mib", "down_s", "machines_memory_mib")  # fmt: skip
    for data in scales:
        lines += [
            "",
            f"**{data['backend']}**",
            "",
            "| students | class up s | per lab s | up peak RSS MiB | class check s "
            "| check peak RSS MiB | class down s | machines' memory MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in data["rows"]:
            lines.append("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    result = json.loads((RESULTS / "lab-vs-raw.json").read_text())
    # a run on a pool left on full qgroup accounting is kept as a record, not drawn; the
    # runs that did cold and pool in one go come last, so their points are the ones drawn
    files = sorted(
        RESULTS.glob("class-scale-*.json"), key=lambda p: ("cold-pool" in p.name, p.name)
    )
    scales = [json.loads(p.read_text()) for p in files]
    scales = [s for s in scales if not str(s.get("quota_mode", "")).startswith("qgroup")]
    print(plot(result["labs"], scales))
    print(tables(result, scales))


if __name__ == "__main__":
    main()
