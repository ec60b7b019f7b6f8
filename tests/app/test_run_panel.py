"""Training from the editor: a real child process, live plots, Stop, failures, memory plan."""
import json

import pytest
from PySide6.QtCore import QPointF

from app.main_window import EXAMPLES
from core import graphfile


@pytest.fixture
def panel(window):
    window.document.set_training({**window.document.training, "epochs": 40, "batch_size": 32})
    return window.run_panel


def test_training_fills_plots_and_moves_progress(window, panel, qtbot):
    window.document.set_training({**window.document.training, "epochs": 2})
    panel.train_button.click()
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=60_000)
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    panel.plots.redraw()
    run = panel.plots.current
    assert len(run.step["loss"]) > 10 and len(run.epoch["val_accuracy"]) == 2
    assert panel.plots.point_count("loss") >= len(run.step["loss"])
    assert panel.progress.value() == 100
    assert "completed" in panel.progress_label.text() and "on numpy" in panel.progress_label.text()
    assert panel.message.text() == ""


def test_stop_ends_the_child_and_leaves_a_checkpoint(window, panel, qtbot):
    panel.fields["epochs"].setValue(500)
    panel.train_button.click()
    qtbot.waitUntil(lambda: len(panel.plots.current.epoch["epoch"]) >= 1, timeout=60_000)
    panel.stop_button.click()
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    assert panel.checkpoint_path.exists()
    assert "stopped" in panel.progress_label.text()
    assert panel.train_button.isEnabled()


def test_form_edits_go_into_the_training_section(window, panel):
    panel.fields["optimizer"].setCurrentText("momentum")
    panel.fields["lr"].setText("0.05")
    panel.fields["lr"].editingFinished.emit()
    assert window.document.training["optimizer"] == "momentum"
    assert window.document.training["lr"] == 0.05
    window.undo_stack.undo()
    assert window.document.training["lr"] != 0.05


def test_failing_child_shows_error_and_editor_stays_usable(window, panel, qtbot):
    ds = next(n.id for n in window.document.nodes.values() if n.kind == "Dataset")
    window.document.set_attr(ds, "name", "npz")
    window.document.set_attr(ds, "path", "/no/such/data.npz")
    panel.train_button.click()
    qtbot.waitUntil(lambda: panel.message.text() != "", timeout=60_000)
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    assert "/no/such/data.npz" in panel.message.text()
    node = window.add_node("ReLU", QPointF(0, 0))  # still edits
    assert node in window.document.nodes and panel.train_button.isEnabled()


def open_memory_tab(panel, qtbot):
    """What a user does: click the Memory plan tab; the view plans the graph on its own."""
    panel.tabs.setCurrentWidget(panel.memory)
    qtbot.waitUntil(lambda: panel.memory.report is not None and not panel.memory.stale, timeout=10_000)
    return panel.memory


def test_memory_view_draws_one_rectangle_per_buffer_without_overlap(window, panel, qtbot):
    view = open_memory_tab(panel, qtbot)
    buffers = view.report["memory"]["buffers"]
    assert len(view.rects) == len(buffers) > 5
    # adam: every parameter plus its two moment arrays, stacked above the arena
    params = [b for b in view.report["persistent"] if b["role"] == "parameter"]
    assert len(view.persistent_rects) == 3 * len(params) == 12
    assert min(r.rect().top() for r in view.persistent_rects) > view.report["memory"]["planned_bytes"] / 1024
    assert "optimizer state" in view.summary.text() and "parameters" in view.summary.text()
    rects = [r.rect() for r in view.rects + view.persistent_rects]
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not a.intersects(b) or a.intersected(b).width() * a.intersected(b).height() < 1e-9
    view.mode.setCurrentText("inference")
    qtbot.waitUntil(lambda: view.report["mode"] == "inference", timeout=10_000)
    assert len(view.rects) < len(buffers)
    assert not [b for b in view.report["persistent"] if b["role"] == "optimizer"]
    view.mode.setCurrentText("training")
    view.checkpoint.setCurrentText("sqrt")
    qtbot.waitUntil(lambda: view.report["checkpoint"] == "sqrt", timeout=10_000)
    view.schedule.setCurrentText("topo")
    qtbot.waitUntil(lambda: view.report["order"] == "topo", timeout=10_000)
    assert len(view.rects) == len(view.report["memory"]["buffers"])


def test_memory_view_replans_after_an_edit_and_follows_the_batch_size(window, panel, qtbot):
    view = open_memory_tab(panel, qtbot)
    assert view.batch.value() == window.document.training["batch_size"] == 32
    before = view.report["memory"]["planned_bytes"]
    window.document.set_attr("linear1", "out_features", 256)
    qtbot.waitUntil(lambda: view.report["memory"]["planned_bytes"] > before, timeout=10_000)
    panel.fields["batch_size"].setValue(128)
    qtbot.waitUntil(lambda: view.report["batch"] == 128, timeout=10_000)


def test_clicking_a_buffer_selects_its_node(window, panel):
    view = panel.memory
    view.refresh()
    rect = next(r for r in view.rects if view.report["node_of"].get(r.buf["name"]) == "linear1")
    view._clicked(rect.buf["name"])
    assert window.scene.selected_node_ids() == ["linear1"]


def test_profile_table_and_heat(window, panel):
    panel.profile.run()
    times = panel.profile.times
    assert "linear1" in times and panel.profile.model.rowCount() == len(times)
    assert window.scene.nodes["linear1"].heat is not None


def test_csv_export(window, panel, qtbot, tmp_path):
    for step in range(1, 4):
        panel.plots.add_event({"event": "step", "epoch": 1, "step": step, "loss": 1.0 / step,
                               "samples_per_s": 100.0, "memory": {"planned_bytes": 10}})
    panel.plots.export_csv(tmp_path / "m.csv")
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 4
    assert panel.plots.export_png(tmp_path / "p.png")


def test_each_plot_shows_only_its_own_quantities(window, panel):
    """Loss ~1 and throughput ~1000 must never share a y axis (curves are keyed per plot)."""
    plots = panel.plots
    assert set(plots.hints) == set(plots.plots)  # empty plots say how to fill them
    for step in range(1, 40):
        plots.add_event({"event": "step", "epoch": 1, "step": step, "loss": 1.0 / step,
                         "accuracy": 0.5, "samples_per_s": 1000.0 + step,
                         "memory": {"planned_bytes": 2 ** 20, "lower_bound_bytes": 2 ** 19}})
    plots.redraw()
    assert not plots.hints

    def y_values(name):
        return [y for item in plots.plots[name].getPlotItem().listDataItems()
                for y in (item.getData()[1] if item.getData()[1] is not None else [])]
    assert max(y_values("loss")) <= 1.0
    assert min(y_values("speed")) >= 1000.0
    speed_names = [item.name() for item in plots.plots["speed"].getPlotItem().listDataItems()]
    assert "smoothed" in speed_names and "samples/s" in speed_names
    assert max(v for v in y_values("memory") if v == v) == 1.0  # MiB


def test_backend_choices_come_from_the_registry_and_an_unusable_gpu_is_disabled(window, panel):
    from core import backend
    combo = panel.fields["backend"]
    values = [combo.itemData(i) for i in range(combo.count())]
    assert values == [*backend.names(), "auto"]
    cupy = values.index("cupy")
    item = combo.model().item(cupy)
    if backend.available("cupy"):
        assert item.isEnabled() and combo.itemText(cupy) == "cupy"
    else:
        assert not item.isEnabled() and combo.itemText(cupy) == "cupy (no GPU found)"
    combo.setCurrentIndex(values.index("auto"))
    assert window.document.training["backend"] == "auto"


def test_a_destroyed_view_stops_observing_the_document(window, qtbot):
    from app.inspector import Inspector
    doc = window.document
    before = len(doc._listeners)
    view = Inspector(doc, window.undo_stack)
    assert len(doc._listeners) == before + 1
    view.deleteLater()
    qtbot.waitUntil(lambda: len(doc._listeners) == before, timeout=5_000)
    doc.add_node("ReLU")  # no event reaches the deleted view (it would raise on a dead widget)


def test_device_pool_memory_is_plotted_beside_the_arena(window, panel):
    plots = panel.plots
    for step in (1, 2):  # what a run on the GPU backend reports
        plots.add_event({"event": "step", "step": step, "loss": 1.0, "memory": {
            "planned_bytes": 2 ** 20, "lower_bound_bytes": 2 ** 19, "rss_bytes": 2 ** 28,
            "device_used_bytes": 3 * 2 ** 20}})
    plots.redraw()
    names = [c.name() for c in plots.plots["memory"].getPlotItem().items if hasattr(c, "name")]
    assert "device pool" in names and "planned arena" in names


def test_runs_go_to_a_named_folder_beside_the_graph_and_the_panel_shows_it(window, panel, qtbot, tmp_path):
    saved = tmp_path / "work" / "mine.loom.json"
    saved.parent.mkdir()
    window.document.set_training({**window.document.training, "epochs": 1})
    window.save_to(saved)
    panel.train_button.click()
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    run = panel.run_dir
    assert run.parent == tmp_path / "work" / "runs" / "mine"  # runs/<graph>/<timestamp>
    assert (run / "graph.loom.json").exists() and (run / "metrics.jsonl").exists()
    assert panel.checkpoint_path == run / "checkpoint.npz" and panel.checkpoint_path.exists()
    assert str(run) in panel.folder_label.text() and panel.open_folder.isEnabled()
    panel.train_button.click()  # a second run: a new folder, the first one kept
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    assert panel.run_dir != run and run.exists()


def test_runs_of_an_unsaved_graph_go_to_the_user_runs_folder(window, panel, tmp_path):
    assert window.current_path is None
    assert panel.runs_root() == tmp_path / "runs"


def test_a_relative_dataset_path_still_resolves_when_training_from_the_editor(window, panel, qtbot, tmp_path):
    """The Run panel trains a copy saved in the run folder: relative paths are rebased."""
    import numpy as np
    data = tmp_path / "proj" / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(data / "tiny.npz", x=rng.standard_normal((200, 1, 8, 8)).astype("float32"),
             y=rng.integers(0, 10, 200))
    from app.main_window import DEFAULT_EXAMPLE
    graph = graphfile.load(DEFAULT_EXAMPLE).to_dict()
    dataset = next(n for n in graph["nodes"] if n["kind"] == "Dataset")
    dataset["attrs"].update(name="npz", path="data/tiny.npz")
    graph["training"].update(epochs=1)
    path = tmp_path / "proj" / "tiny.loom.json"
    path.write_text(json.dumps(graph))
    assert window.open_path(path)
    panel.train_button.click()
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    assert "completed" in panel.progress_label.text(), panel.message.text()


def test_a_text_model_trains_from_the_editor_and_shows_its_samples(window, qtbot, tmp_path):
    from tests.cli.test_text_models import tiny_gpt
    path = tiny_gpt(tmp_path, sample_chars=30)
    panel = window.run_panel
    assert panel.tabs.indexOf(panel.samples) < 0  # the digits example writes no text
    window.open_path(path, remember=False)
    assert panel.tabs.tabText(panel.tabs.indexOf(panel.samples)) == "Text samples"
    panel.train_button.click()
    qtbot.waitUntil(lambda: len(panel.samples.samples) == 2, timeout=120_000)
    qtbot.waitUntil(lambda: not panel.process.running(), timeout=60_000)
    shown = panel.samples.text.toPlainText()
    for sample in panel.samples.samples:
        assert sample["text"] in shown and len(sample["text"]) == len(sample["prompt"]) + 30
    assert "epoch 2" in panel.samples.caption.text()
    assert "val loss" in panel.progress_label.text()
    window.open_path(EXAMPLES / "digits_mlp.loom.json", remember=False)
    assert panel.tabs.indexOf(panel.samples) < 0 and not panel.samples.samples
