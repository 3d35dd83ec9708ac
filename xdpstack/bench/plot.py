"""The benchmarks' PNG plots (matplotlib, no display needed): one look for all of them."""
from __future__ import annotations

from pathlib import Path


def figure(title: str, width: float = 7.0, height: float = 3.6, ncols: int = 1):
    """A new figure and its axes (a list when ncols > 1)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    fig.suptitle(title, fontsize=11)
    for ax in axes[0]:
        ax.grid(True, axis="y", alpha=0.3)
    return fig, (list(axes[0]) if ncols > 1 else axes[0][0])


def bars(ax, labels: list[str], series: dict[str, list[float | None]], ylabel: str) -> None:
    """Grouped bars: one group per label, one bar per series (None: not measured)."""
    n = max(len(series), 1)
    w = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (n - 1) / 2) * w for j in range(len(labels))]
        ax.bar(xs, [v or 0 for v in values], w, label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.legend(fontsize=8)


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
