"""`check` finds what would make training fail, from shapes alone (issue 17, items 3, 4 and 9):
logits narrower than the dataset's classes, a second Dataset node, a split leaving a side
empty, sizes beyond memory; `plan` plans without allocating; analysis stays linear."""
import json
import re
from pathlib import Path

import pytest

import core.layers.builder as builder
from core import graphfile
from core.document import GraphDocument
from core.errors import LoomError
from core.executor import Executor
from core.layers import analyze, build
from core.optim import make_optimizer
from core.settings import training_config
from core.step import check_memory, plan_report, sample_feed, training_updates

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "examples" / "digits_mlp.loom.json"


def _example(edit=None):
    data = json.loads(EXAMPLE.read_text())
    if edit:
        edit(data)
    return graphfile.from_dict(data, "t.loom.json")


def _node(data, node_id):
    return next(n for n in data["nodes"] if n["id"] == node_id)


def _csv_labels(data, tmp_path, classes):
    rows = "\n".join(",".join(["0.5"] * 64 + [str(i % classes)]) for i in range(40))
    (tmp_path / "d.csv").write_text(rows)
    _node(data, "data")["attrs"] = {"name": "csv", "path": str(tmp_path / "d.csv")}


CASES = {  # name -> (edit of the digits MLP, node named, words of the problem)
    "out_features 5 on 10 classes": (
        lambda d, tmp: _node(d, "linear2")["attrs"].update(out_features=5),
        "loss", "5 logits from node linear2 for the 10 classes"),
    "out_features 64 on 10 classes (never-matched logits)": (
        lambda d, tmp: _node(d, "linear2")["attrs"].update(out_features=64),
        "loss", "64 logits from node linear2 for the 10 classes"),
    "CSV labels beyond the logits": (
        lambda d, tmp: _csv_labels(d, tmp, classes=12), "loss", "for the 12 classes"),
    "two Dataset nodes": (
        lambda d, tmp: d["nodes"].append({"id": "data2", "kind": "Dataset", "attrs": {}}),
        "data2", "a second Dataset node"),
    "a split with no validation sample": (
        lambda d, tmp: d["training"].update(val_fraction=0.0001), None,
        "val_fraction: 0.0001 of the 1797 samples of dataset 'digits' leaves no validation"),
    "parameters beyond memory": (
        lambda d, tmp: _node(d, "linear1")["attrs"].update(out_features=10 ** 12), "linear1",
        "the parameters of node linear1: .* more than this machine's memory"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_reports_what_training_would_trip_on(name, tmp_path):
    edit, node, words = CASES[name]
    problems = analyze(_example(lambda d: edit(d, tmp_path))).problems
    assert any(p.node_id == node and re.search(words, p.message) for p in problems), \
        [str(p) for p in problems]


def test_the_examples_have_no_such_problems():
    for path in EXAMPLE.parent.glob("*.loom.json"):
        assert analyze(graphfile.load(path)).problems == []


# ---- plan from shapes alone ------------------------------------------------------------------

def test_plan_allocates_nothing_and_refuses_with_the_numbers(monkeypatch):
    def no_values(*args):
        raise AssertionError("planning initialised a parameter")
    monkeypatch.setattr("core.step.init_value", no_values)
    monkeypatch.setattr("core.executor.init_value", no_values)
    doc = _example(lambda d: _node(d, "linear1")["attrs"].update(out_features=4_000_000))
    report = plan_report(doc, 64)  # 4 GB of weights and 12 GB of Adam state: only planned
    assert report["memory"]["param_bytes"] > 1e9
    with pytest.raises(LoomError, match=r"training step at batch 64: .*parameters 1\.\d GiB.*"
                                        r"more than --max-memory \(1\.0 GiB\)"):
        check_memory(report, max_memory=1 << 30)
    check_memory(plan_report(_example(), 64), max_memory=1 << 30)  # the example fits


def test_planning_from_shapes_matches_running_the_step():
    """The plan from shapes is the plan the executor makes when it runs the step."""
    doc = _example()
    report = plan_report(doc, 32, "sqrt")
    built = build(doc, training=True)
    optimizer = make_optimizer(training_config(doc))
    outputs = [built.loss, *training_updates(built, optimizer)]
    feed = sample_feed(built, 32)
    optimizer.begin_step(0.0)
    feed.update(optimizer.feed({p.name: feed[p] for p in built.parameters}))
    ex = Executor(outputs, backend="numpy", checkpoint="sqrt")
    ex.run(feed)
    ran = ex.memory_report()
    assert _unnamed(report["memory"]) == _unnamed(ran)
    assert [r["op"] for r in report["schedule"]] == [n.op for n in ex.plan.schedule]


def _unnamed(memory):
    return {**memory, "buffers": [{k: v for k, v in b.items() if k != "name"} for b in memory["buffers"]]}


# ---- scale: linear in the graph's size ------------------------------------------------------------

def _chain(n):
    doc = GraphDocument("chain")
    doc.add_node("Dataset", {"name": "digits"}, node_id="data")
    doc.add_node("Flatten", node_id="flat")
    doc.add_edge(("data", "images"), ("flat", "in"))
    prev = "flat"
    for i in range(n):
        doc.add_node("ReLU", node_id=f"r{i}")
        doc.add_edge((prev, "out"), (f"r{i}", "in"))
        prev = f"r{i}"
    doc.add_node("Linear", {"out_features": 10}, node_id="lin")
    doc.add_node("SoftmaxCrossEntropy", node_id="loss")
    for src, dst in (((prev, "out"), ("lin", "in")), (("lin", "out"), ("loss", "logits")),
                     (("data", "labels"), ("loss", "labels"))):
        doc.add_edge(src, dst)
    return doc


def test_checking_a_4000_node_chain_visits_each_node_a_few_times(monkeypatch):
    visits = []
    real = builder.infer
    monkeypatch.setattr(builder, "infer", lambda order, *a: (visits.append(len(order)), real(order, *a))[1])
    doc = _chain(4000)
    assert analyze(doc).problems == []
    assert sum(visits) < 3 * 4000  # a topological order per node was 4000²/2 visits
