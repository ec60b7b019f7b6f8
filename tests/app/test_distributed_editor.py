"""Data-parallel settings in the editor: the processes field is a training setting, and the
memory plan then shows one rank's step with its allreduce buckets."""


def test_processes_field_and_bucket_buffers_in_the_memory_plan(window, qtbot):
    panel = window.run_panel
    panel.fields["procs"].setValue(2)
    assert window.document.training["procs"] == 2
    view = panel.memory
    view.refresh()
    roles = {b["role"] for b in view.report["memory"]["buffers"]}
    assert "bucket" in roles and view.report["allreduce buckets"]
    assert view.report["batch"] == -(-view.batch.value() // 2)  # one rank's share
    window.undo_stack.undo()
    assert window.document.training.get("procs", 1) == 1
