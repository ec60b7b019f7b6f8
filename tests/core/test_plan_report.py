"""The plan report says when a checkpoint budget cannot be kept, and stays quiet otherwise."""
from core import graphfile
from core.step import plan_report
from tests.cli.conftest import EXAMPLES


def test_an_unreachable_checkpoint_budget_is_said_plainly():
    doc = graphfile.load(EXAMPLES / "mnist_cnn.loom.json")
    tight = plan_report(doc, 64, "budget=1000")
    assert len(tight["notes"]) == 1 and "budget 1,000 bytes is not met" in tight["notes"][0]
    stored = tight["memory"]["stored_activation_bytes"]
    assert f"{stored:,} bytes of forward values" in tight["notes"][0]
    roomy = plan_report(doc, 64, f"budget={10 * stored}")
    assert roomy["notes"] == [] and plan_report(doc, 64, "sqrt")["notes"] == []
