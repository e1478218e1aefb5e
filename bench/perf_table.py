"""The goals of issue 17 and the side-by-side table bench/perf.py prints: pure
functions over measured values, no engines (tests/unit/test_bench_perf.py checks
them), so the "goal met" column is decided in one place.

A *row* is one line of the issue's table::

    {"key": "run_rm", "title": ..., "unit": "ms", "digits": 0,
     "engines": {label: [values] | "n/a: why"},   # in display order
     "failed": {label: "12 of 300 failed: ..."},   # optional (bursts)
     "notes": [...]}                               # optional

and its goal (``GOALS[key]``) names the *subject* (Dockyard's label), the *peer*
the ratios are taken against (None: no ratio), and the bound: at most ``max_ratio``
x the peer, at least ``min_ratio`` x the peer (a throughput), or at most ``max_abs``
in the row's unit.  ``all_succeed`` also requires the subject's burst to have no
failure.  Values of one engine are reduced to their median.
"""

import statistics

DOCKYARD_CLI = "dockyard CLI"
DOCKER_ON_OURS = "docker CLI on our daemon"
DOCKER_ON_DOCKERD = "docker CLI on dockerd"
PODMAN = "podman"


class Goal:
    def __init__(self, subject, peer=None, max_ratio=None, min_ratio=None, max_abs=None, all_succeed=False,
                 text=""):
        self.subject, self.peer = subject, peer
        self.max_ratio, self.min_ratio, self.max_abs = max_ratio, min_ratio, max_abs
        self.all_succeed = all_succeed
        self.text = text


GOALS = {
    "run_rm": Goal(DOCKYARD_CLI, PODMAN, max_ratio=0.5, text="<= 0.5x podman"),
    "ps": Goal(f"{DOCKYARD_CLI}: ps", f"{DOCKER_ON_OURS}: ps", max_ratio=1.5, text="<= 1.5x docker ps"),
    "version": Goal(f"{DOCKYARD_CLI}: --version", f"{DOCKER_ON_OURS}: --version", text="(no goal)"),
    "memory": Goal("dockyard", "podman (conmon)", max_abs=0.4, text="<= 0.4 MiB"),
    "burst": Goal(DOCKER_ON_OURS, PODMAN, max_ratio=0.2, text="<= 0.2x podman"),
    "pull": Goal("dockyard pull", "skopeo copy docker:// dir:", min_ratio=0.9, text=">= 0.9x skopeo"),
    "logs": Goal(f"{DOCKYARD_CLI}", DOCKER_ON_DOCKERD, max_abs=50, text="<= 50 ms"),
    "scale": Goal(DOCKER_ON_OURS, PODMAN, max_ratio=0.2, all_succeed=True, text="all succeed, <= 0.2x podman"),
}


def median(values):
    """The median of a list of numbers, or None for "n/a: ..." or an empty list."""
    if isinstance(values, list) and values:
        return statistics.median(values)
    return None


def ratio(row, label):
    """``label``'s median over the goal peer's, or None (no peer, or either missing)."""
    goal = GOALS[row["key"]]
    if goal.peer is None:
        return None
    mine, peer = median(row["engines"].get(label)), median(row["engines"].get(goal.peer))
    if mine is None or not peer:
        return None
    return mine / peer


def verdict(row):
    """"yes", "no", or "n/a: why" for the row's goal."""
    goal = GOALS[row["key"]]
    if goal.max_ratio is None and goal.min_ratio is None and goal.max_abs is None:
        return "-"
    subject = row["engines"].get(goal.subject)
    if median(subject) is None:
        return f"n/a: no {goal.subject} figure"
    oks = []
    if goal.max_abs is not None:
        oks.append(median(subject) <= goal.max_abs)
    if goal.max_ratio is not None or goal.min_ratio is not None:
        r = ratio(row, goal.subject)
        if r is None:
            return f"n/a: no {goal.peer} figure"
        oks.append(r <= goal.max_ratio if goal.max_ratio is not None else r >= goal.min_ratio)
    if goal.all_succeed:
        oks.append(not row.get("failed", {}).get(goal.subject))
    return "yes" if all(oks) else "no"


def spread(values, digits):
    if len(values) == 1:
        return "1 run"
    return f"{min(values):.{digits}f}-{max(values):.{digits}f} ({len(values)})"


def table(rows, title):
    """The text table: per row its title line, one line per engine (median, min-max
    (runs), x peer), the goal and its verdict on the subject's line; then each row's
    failures and notes."""
    header = ("  engine", "median", "min-max (n)", "x peer", "goal", "met")
    lines = []
    for row in rows:
        goal = GOALS[row["key"]]
        digits = row.get("digits", 1)
        lines.append((f"{row['title']} [{row['unit']}]",))
        for label, values in row["engines"].items():
            tag = " (peer)" if label == goal.peer else ""
            name = f"  {label}{tag}"
            goal_cells = (goal.text, verdict(row)) if label == goal.subject else ("", "")
            if isinstance(values, str) or not values:
                lines.append((name, values or "n/a: no runs", "", "", *goal_cells))
                continue
            r = ratio(row, label)
            lines.append((name, f"{median(values):.{digits}f}", spread(values, digits),
                          "-" if r is None else f"{r:.2f}", *goal_cells))
    widths = [max(len(cells[i]) for cells in [header, *lines] if len(cells) > 1 and i < len(cells))
              for i in range(len(header))]
    widths[1] = min(widths[1], 12)  # an "n/a: ..." median cell runs on instead of widening the column
    out = [title, fmt(header, widths), "-" * len(fmt(header, widths))]
    out += [cells[0] if len(cells) == 1 else fmt(cells, widths) for cells in lines]
    extra = [f"  {row['key']}: {label}: {why}" for row in rows for label, why in row.get("failed", {}).items() if why]
    extra += [f"  {row['key']}: {note}" for row in rows for note in row.get("notes", [])]
    if extra:
        out += ["", "failures and notes:", *extra]
    return "\n".join(out)


def fmt(cells, widths):
    name, med, *rest = cells
    if med.startswith("n/a"):  # the reason in place of the numbers, then the goal cells
        return f"{name:<{widths[0]}}  {med}" + ("  " + "  ".join(c for c in rest[2:] if c) if any(rest[2:]) else "")
    parts = [f"{name:<{widths[0]}}", f"{med:>{widths[1]}}", f"{rest[0]:>{widths[2]}}", f"{rest[1]:>{widths[3]}}",
             f"{rest[2]:<{widths[4]}}", rest[3]]
    return "  ".join(parts).rstrip()


def summary(rows):
    """One line per goal: ``key: yes|no|n/a (subject median unit, x peer)``."""
    out = []
    for row in rows:
        goal = GOALS[row["key"]]
        v = verdict(row)
        if v == "-":
            continue
        med, r = median(row["engines"].get(goal.subject)), ratio(row, goal.subject)
        figure = "" if med is None else f"{med:.{row.get('digits', 1)}f} {row['unit']}"
        figure += "" if r is None else f", {r:.2f}x {goal.peer}"
        out.append(f"{row['key']:<8} goal {goal.text:<28} met: {v}" + (f"  ({figure})" if figure else ""))
    return "\n".join(out)
