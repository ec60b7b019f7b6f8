"""Every core test runs twice: on numpy, and with the strict stand-in device as the default
backend (host/device mix-ups fail there; results must be bit-identical)."""
import pytest

from core import backend


@pytest.fixture(autouse=True, params=["numpy", "standin"])
def default_device(request):
    previous = backend.set_default(request.param)
    yield request.param
    backend.set_default(previous)
