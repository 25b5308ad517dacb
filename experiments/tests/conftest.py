import pytest

from experiments import common, model_fit

from experiments.tests.synthetic import write_all


@pytest.fixture
def synthetic_results(tmp_path, monkeypatch):
    """A results folder of small synthetic CSVs; figures and derived CSVs go to tmp, never to artifact/."""
    results = write_all(tmp_path / "results")
    monkeypatch.setattr(model_fit, "MODEL_REQUESTS", 600)     # the shape, not the precision, is tested
    # anything written to the real artifact folders would land here instead, and be caught
    monkeypatch.setattr(common, "RESULTS", tmp_path / "artifact-results-must-stay-empty")
    monkeypatch.setattr(common, "FIGURES", tmp_path / "artifact-figures-must-stay-empty")
    monkeypatch.setenv("COLORLOOP_RESULTS", str(results))
    monkeypatch.setenv("COLORLOOP_FIGURES", str(tmp_path / "figures"))
    return results
