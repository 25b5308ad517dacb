import pytest

from experiments import model_fit

from experiments.tests.synthetic import write_all


@pytest.fixture
def synthetic_results(tmp_path, monkeypatch):
    """A results folder of small synthetic CSVs; figures and derived CSVs go to tmp, never to artifact/."""
    results = write_all(tmp_path / "results")
    monkeypatch.setattr(model_fit, "MODEL_REQUESTS", 600)     # the shape, not the precision, is tested
    monkeypatch.setenv("COLORLOOP_RESULTS", str(results))
    monkeypatch.setenv("COLORLOOP_FIGURES", str(tmp_path / "figures"))
    return results
