"""`tfrec-dyn report`: the figures it shows are the run's, and the page works in a real browser."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A RETR run and a PopRec run on 200 MovieLens-100K users (with one malformed line)."""
    from tfrec_dyn.data import load_dataset
    from tfrec_dyn.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("report")
    data = load_dataset("ml-100k").subset(range(200))
    log = folder / "interactions.txt"
    log.write_text("".join(f"{u} {i}\n" for u, items in zip(data.user_ids, data.items) for i in items)
                   + "one field too many\n")
    settings = dict(data=str(log), max_len=20)
    train(TrainConfig(model="retr", epochs=3, **settings), out_dir=str(folder / "retr"), verbose=0)
    train(TrainConfig(model="poprec", epochs=1, validate_every=0, **settings), out_dir=str(folder / "poprec"),
          verbose=0)
    return folder, data


def test_the_report_shows_the_runs_own_figures(runs):
    """Two paths, one number: the report's test metrics for the model and for PopRec are
    those the two training runs recorded; the data summary is the log's."""
    from tfrec_dyn.report import run_facts
    from tfrec_dyn.training import PreparedData, Run

    folder, data = runs
    facts = run_facts(Run.load(str(folder / "retr")))
    recorded = {name: json.loads((folder / name / "metrics.json").read_text())["metrics"] for name in ("retr", "poprec")}
    for protocol in ("full", "sampled"):
        for name in ("HR@10", "NDCG@10", "MRR", "Coverage@10"):
            if name in recorded["retr"][protocol]:
                assert facts["metrics"][protocol]["model"][name] == pytest.approx(recorded["retr"][protocol][name],
                                                                                  abs=1e-9), (protocol, name)
                assert facts["metrics"][protocol]["PopRec"][name] == pytest.approx(
                    recorded["poprec"][protocol][name], abs=1e-9), (protocol, name)
    summary = facts["data_summary"]
    assert summary["users"] == 200 and summary["events"] == sum(len(items) for items in data.items)
    assert sorted(summary["lengths"]) == sorted(len(items) for items in data.items)
    assert summary["read"]["lines_read"] == summary["events"] + 1 and sum(summary["read"]["dropped"].values()) == 1
    validation = json.loads((folder / "retr" / "history.json").read_text())["validation"]
    assert facts["history"]["validation"]["NDCG@10"] == validation["NDCG@10"]
    shown = facts["recommendations"]
    assert len(shown) == 4 and len({user["user"] for user in shown}) == 4
    split = PreparedData.from_config(Run.load(str(folder / "retr")).config).split.test
    held_out = dict(zip(split.inputs.user_ids, split.target_items()))
    for user in shown:  # each user's own held-out item and latest history, and 10 unseen items
        assert user["target"]["item"] == held_out[user["user"]]
        recent = list(split.inputs.items[split.inputs.user_ids.index(user["user"])])[-8:]
        assert [item["item"] for item in user["history"]] == recent
        assert len(user["top"]) == 10 and not {item["item"] for item in user["top"]} & set(recent)
    routed = facts["explain"]["routed"]  # RETR: [layers, items], every item of the picture shown
    assert len(routed) == 2 and len(routed[0]) == len(facts["explain"]["items"]) == 20


def test_the_report_page_loads_in_chromium_with_every_plot(runs, tmp_path):
    """`tfrec-dyn report RUN` as a user runs it, then the page in headless Chromium:
    no script error, nothing fetched from outside the file, every plot drawn."""
    from browse_report import CHROMIUM, browse

    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (`apt-get install chromium`)")
    folder, _ = runs
    run = tmp_path / "retr"
    shutil.copytree(folder / "retr", run)
    out = subprocess.run([sys.executable, "-m", "tfrec_dyn", "report", str(run), "--json"], capture_output=True,
                         text=True, timeout=600, cwd=REPO, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["report"] == str(run / "report.html")
    seen = browse(str(run / "report.html"), screenshot=str(tmp_path / "report.png"))
    # Works offline and as written: nothing fetched, no script at all, no error.
    assert seen["errors"] == [] and seen["requests"] == [] and seen["scripts"] == 0, seen
    drawn = {plot["name"]: plot for plot in seen["plots"]}
    assert set(drawn) == {"sequence-lengths", "training", "metrics", "beyond-accuracy", "explain"}, drawn
    for plot in drawn.values():
        assert plot["width"] > 200 and plot["height"] > 50 and plot["marks"] > 5, plot
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_one_shown_row_per_user_and_the_groups_picture():
    """The session split has a row per prefix of a session: the report shows each
    user (session) once, its last row; RDRSR's / AdaSplit's picture numbers each
    item with its group."""
    from tfrec_dyn.report.facts import _one_row_per_user
    from tfrec_dyn.report.plots import groups

    assert _one_row_per_user(["a", "b", "a", "c", "b"]).tolist() == [2, 3, 4]
    svg = groups({"user": "7", "items": [{"item": str(i), "title": None} for i in range(6)],
                  "assignment": [0, 0, 1, 1, 2, 0], "count": 3, "kind": "interests"}, "interest")
    assert svg.startswith("<svg") and "User 7: 3 interest(s) over the last 6 items" in svg
    labels = [int(text) for text in re.findall(r"fill: #ffffff[^>]*>(\d+)</text>", svg)]  # the cells' numbers
    assert labels == [1, 1, 2, 2, 3, 1], labels
