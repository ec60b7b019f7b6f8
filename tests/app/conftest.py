import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def block_library(tmp_path, monkeypatch):
    """The user's block library (the palette lists it) is a fresh folder in every test."""
    monkeypatch.setenv("LOOM_BLOCKS_DIR", str(tmp_path / "blocks"))
    return tmp_path / "blocks"


@pytest.fixture
def window(qtbot, tmp_path):
    from PySide6.QtCore import QSettings
    from app.main_window import MainWindow
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("runs/folder", str(tmp_path / "runs"))  # runs of unsaved graphs
    answers = []
    w = MainWindow(recovery_dir=tmp_path / "recovery", ask=lambda *a: answers.pop(0) if answers else True,
                   settings=settings)
    w.answers = answers
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w
