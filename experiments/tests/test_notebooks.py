"""The notebooks execute end to end on a small CSV folder (what `make reproduce` does with real ones)."""
import nbformat

from experiments import claims, model_validation, notebooks, sfs_blocksize


def test_notebooks_execute_on_synthetic_results(synthetic_results, tmp_path):
    model_validation.plot()          # the derived CSVs the notebooks also read
    sfs_blocksize.plot()
    claims.write(claims.build(), synthetic_results)
    paths = notebooks.notebook_paths()
    assert len(paths) >= 3
    out = notebooks.execute(paths, synthetic_results, tmp_path / "executed", timeout=120, progress=False)
    assert [p.name for p in out] == [p.name for p in paths]
    for path in out:
        nb = nbformat.read(path, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "not found" not in text, f"{path.name} missed a CSV: {text}"
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew nothing"
