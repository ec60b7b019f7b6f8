"""Shared by every test group: the strict stand-in device is registered as backend "standin"
(see tests/standin.py), and `device` runs a test once per backend that must give identical
results: numpy and the stand-in."""
import pytest

from tests import standin

standin.register()

DEVICES = ["numpy", standin.NAME]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
