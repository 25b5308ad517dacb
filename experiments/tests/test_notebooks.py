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
        assert "model_predictions.csv has no" not in text, f"{path.name} missed a modelled curve: {text}"
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew nothing"


def test_notebooks_say_which_csv_is_empty_or_cut_short_and_go_on(synthetic_results, tmp_path):
    model_validation.plot()
    sfs_blocksize.plot()
    claims.write(claims.build(), synthetic_results)
    (synthetic_results / "web_throughput.csv").write_text("")
    lines = (synthetic_results / "model_validation.csv").read_text().splitlines(keepends=True)
    (synthetic_results / "model_validation.csv").write_text("".join(lines[:-1]) + lines[-1][:20])
    header = (synthetic_results / "runtime_dispatch.csv").read_text().splitlines()[0]
    (synthetic_results / "runtime_dispatch.csv").write_text(header + "\n")
    paths = notebooks.notebook_paths()
    out = notebooks.execute(paths, synthetic_results, tmp_path / "executed", timeout=120, progress=False)
    assert len(out) == len(paths)                  # every notebook ran to its end
    text = ""
    for path in out:
        nb = nbformat.read(path, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        text += "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "web_throughput.csv cannot be read" in text
    assert "model_validation.csv: its last line is cut short" in text
    assert "runtime_dispatch.csv has no rows" in text
