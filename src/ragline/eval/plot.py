"""The answered/refused trade-off of `ragline eval faithfulness` as a picture (matplotlib,
extra `plot`): one point a threshold, the setting marked.

    plot_tradeoff(report, Path("tradeoff.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragline.errors import ConfigError, missing_extra

if TYPE_CHECKING:
    from ragline.eval.faithfulness import FaithfulnessReport


def check_plot(path: Path) -> None:
    """Fail now, not after the evaluation: matplotlib missing, or a path it cannot write."""
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG file; give a name ending in .png, got {path}")
    if not path.parent.exists() or path.is_dir():
        raise ConfigError(f"cannot write the plot to {path}: "
                          f"{'it is a folder' if path.is_dir() else 'no such folder'}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise missing_extra("matplotlib", "plot") from None


def plot_tradeoff(report: FaithfulnessReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    points = report.sweep or []
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.plot([100 * p.refused_unanswerable for p in points],
            [100 * p.answered_answerable for p in points], "o-", color="#3465a4", ms=3,
            label="threshold (generation.min_confidence)")
    last: tuple[float, float] | None = None
    for p in points[::2]:  # every other threshold, where the curve has moved
        at = (100 * p.refused_unanswerable, 100 * p.answered_answerable)
        if last is None or abs(at[0] - last[0]) + abs(at[1] - last[1]) > 4:
            ax.annotate(f"{p.threshold:.2f}", at, textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
            last = at
    chosen = [p for p in points if p.threshold == report.min_confidence]
    if chosen:
        p = chosen[0]
        ax.plot([100 * p.refused_unanswerable], [100 * p.answered_answerable], "*", ms=14,
                color="#cc0000", label=f"the setting, {p.threshold:g}")
    ax.set_xlabel("unanswerable questions refused (%)")
    ax.set_ylabel("answerable questions answered (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"{report.questions} questions, k = {report.k}", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise ConfigError(f"cannot write the plot to {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
