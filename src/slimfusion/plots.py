"""matplotlib figures for reports and plan pictures, drawn off-screen."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot with the file-only Agg backend."""
    # lazy: matplotlib costs ~0.5 s of import time, paid only by commands that draw
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def frontier_plot(rows: list[dict], path):
    """Speedup against the FD difference from the original, with 95% error bars; the Pareto frontier joined and
    numbered, the chosen point starred. Labels sit in a numbered legend, so they never overlap."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    measured = [r for r in rows if "fd" in r["differences"]]
    for held, color, name in ((False, "#bbbbbb", "fails the rule"), (True, "#4c72b0", "holds the rule")):
        group = [r for r in measured if r["holds"] == held]
        if not group:
            continue
        xs = [r["speedup"] for r in group]
        ys = [r["differences"]["fd"]["difference"] for r in group]
        errs = [[y - r["differences"]["fd"]["interval"][0] for y, r in zip(ys, group, strict=True)],
                [r["differences"]["fd"]["interval"][1] - y for y, r in zip(ys, group, strict=True)]]  # fmt: skip
        ax.errorbar(xs, ys, yerr=errs, fmt="o", color=color, ecolor=color, alpha=0.8, ms=4, capsize=2, label=name)
    front = sorted((r for r in measured if r["pareto"]), key=lambda r: r["speedup"])
    if front:
        ax.plot([r["speedup"] for r in front], [r["differences"]["fd"]["difference"] for r in front], "-",
                color="#dd8452", lw=1, label="Pareto frontier (holds)")  # fmt: skip
    legend = []
    for number, r in enumerate(front, start=1):
        ax.annotate(str(number), (r["speedup"], r["differences"]["fd"]["difference"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, color="#dd8452")  # fmt: skip
        legend.append(f"{number}: {r['label']} ({r['speedup']:.1f}x, {r['rung']})")
    for r in measured:
        if r["chosen"]:
            ax.plot(r["speedup"], r["differences"]["fd"]["difference"], "*", ms=16, color="#c44e52",
                    label=f"chosen: {r['label']}")  # fmt: skip
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("speedup over the original (log; alternated timing where confirmed, else the screen's estimate)")
    ax.set_ylabel("FD difference from the original (paired, 95%)")
    ax.legend(loc="upper left", fontsize=8)
    if legend:
        fig.text(0.72, 0.5, "\n".join(legend[:20]), fontsize=7, va="center", family="monospace")
        fig.subplots_adjust(right=0.7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
