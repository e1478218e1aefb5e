"""bench/perf.py's goal logic and table (bench/perf_table.py), on made-up rows: no
engines, no timings.  The "goal met" column is what the lead reads first, so its
ratio direction, bounds and n/a cases are pinned here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import perf_table  # noqa: E402
from perf_table import DOCKER_ON_DOCKERD, DOCKER_ON_OURS, DOCKYARD_CLI, PODMAN  # noqa: E402


def run_rm(dockyard, podman=(200.0, 180.0, 190.0)):
    return {"key": "run_rm", "title": "run --rm", "unit": "ms", "digits": 0,
            "engines": {DOCKYARD_CLI: dockyard, DOCKER_ON_OURS: [70.0], PODMAN: list(podman),
                        DOCKER_ON_DOCKERD: "n/a: dockerd: not installed"}}


def test_ratio_is_the_median_over_the_goal_peers_median():
    row = run_rm([100.0, 90.0, 300.0])  # median 100 over podman's 190
    assert perf_table.ratio(row, DOCKYARD_CLI) == pytest.approx(100 / 190)
    assert perf_table.ratio(row, PODMAN) == pytest.approx(1.0)
    assert perf_table.ratio(row, DOCKER_ON_DOCKERD) is None


@pytest.mark.parametrize("dockyard, met", [([95.0], "yes"), ([95.1], "no"), ([147.0, 150.0, 140.0], "no")])
def test_at_most_a_ratio_of_the_peer(dockyard, met):
    assert perf_table.verdict(run_rm(dockyard)) == met  # goal: <= 0.5 x 190 ms


def test_missing_subject_or_peer_is_na_not_a_verdict():
    assert perf_table.verdict(run_rm("n/a: dockyard: daemon exited 1")).startswith("n/a: no dockyard CLI")
    assert perf_table.verdict(run_rm([90.0], podman=[])).startswith("n/a: no podman")


def test_throughput_goal_is_at_least_a_ratio():
    def row(mbs):
        return {"key": "pull", "title": "pull", "unit": "MB/s",
                "engines": {"dockyard pull": [mbs], "skopeo copy docker:// dir:": [200.0]}}
    assert perf_table.verdict(row(180.0)) == "yes"
    assert perf_table.verdict(row(179.0)) == "no"


def test_absolute_goal_ignores_the_peer():
    def row(ms):
        return {"key": "logs", "title": "logs", "unit": "ms",
                "engines": {DOCKYARD_CLI: [ms], DOCKER_ON_DOCKERD: "n/a: dockerd: not installed"}}
    assert perf_table.verdict(row(50.0)) == "yes"
    assert perf_table.verdict(row(2800.0)) == "no"


def test_scale_needs_every_container_and_the_ratio():
    def row(secs, failed=None):
        return {"key": "scale", "title": "scale", "unit": "s",
                "engines": {DOCKER_ON_OURS: [secs], PODMAN: [100.0]}, "failed": failed or {}}
    assert perf_table.verdict(row(15.0)) == "yes"
    assert perf_table.verdict(row(15.0, {DOCKER_ON_OURS: "3 of 1000 failed: 409"})) == "no"
    assert perf_table.verdict(row(15.0, {PODMAN: "1 of 1000 failed"})) == "yes"  # the peer's failures are not ours
    assert perf_table.verdict(row(25.0)) == "no"


def test_a_row_without_a_goal_has_no_verdict_and_no_summary_line():
    row = {"key": "version", "title": "--version", "unit": "ms",
           "engines": {f"{DOCKYARD_CLI}: --version": [41.0], f"{DOCKER_ON_OURS}: --version": [20.0]}}
    assert perf_table.verdict(row) == "-"
    assert perf_table.ratio(row, f"{DOCKYARD_CLI}: --version") == pytest.approx(2.05)
    assert perf_table.summary([row]) == ""


def test_table_shows_every_engine_its_ratio_and_the_goal_on_the_subjects_line():
    burst = {"key": "burst", "title": "100 x run -d", "unit": "s", "digits": 2,
             "engines": {DOCKER_ON_OURS: [3.0], PODMAN: [10.5], DOCKER_ON_DOCKERD: "n/a: dockerd: gone"},
             "failed": {DOCKER_ON_OURS: "2 of 100 failed: 409 name in use"}, "notes": ["podman: 100 running"]}
    text = perf_table.table([run_rm([100.0, 90.0, 300.0]), burst], "TITLE")
    lines = text.splitlines()
    assert lines[0] == "TITLE"
    subject = next(x for x in lines if x.strip().startswith(DOCKYARD_CLI))
    assert subject.split()[2:6] == ["100", "90-300", "(3)", "0.53"]
    assert "<= 0.5x podman" in subject and subject.split()[-1] == "no"
    assert any(x.strip().startswith(f"{PODMAN} (peer)") and "1.00" in x.split() for x in lines)
    assert any(x.strip().startswith(DOCKER_ON_DOCKERD) and "n/a: dockerd: not installed" in x for x in lines)
    burst_subject = next(x for x in lines if x.strip().startswith(DOCKER_ON_OURS) and "3.00" in x)
    assert "0.29" in burst_subject.split() and burst_subject.split()[-1] == "no"  # 3.0 / 10.5 > 0.2
    assert "  burst: docker CLI on our daemon: 2 of 100 failed: 409 name in use" in lines
    assert "  burst: podman: 100 running" in lines
    summary = perf_table.summary([run_rm([100.0]), burst]).splitlines()
    assert summary[0].startswith("run_rm") and "met: no" in summary[0] and "0.53x podman" in summary[0]
    assert summary[1].startswith("burst") and "met: no" in summary[1] and "3.00 s" in summary[1]


def test_the_cli_note_says_when_it_is_an_editable_install(tmp_path):
    import perf_engines

    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    script = tmp_path / "venv" / "bin" / "dockyard"
    script.parent.mkdir()
    script.write_text("")
    assert perf_engines.editable(str(script)) == ""  # a wheel's install: what the bench builds
    (site / "__editable___dockyard_0_1_0_finder.py").write_text("")
    assert perf_engines.editable(str(script)) == " (an editable install)"
