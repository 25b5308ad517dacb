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


def _notebook_dict(name: str, variable: str) -> dict:
    """A colour table a notebook defines (the notebooks stand alone on pandas, so they repeat it)."""
    import ast
    nb = nbformat.read(notebooks.notebook_paths()[0].parent / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == variable:
                return ast.literal_eval(node.value)
    raise AssertionError(f"{name} defines no {variable}")


def test_a_series_has_one_colour_in_every_figure_and_notebook():
    from experiments import sfs_throughput, web_throughput
    assert _notebook_dict("01_scaling.ipynb", "WEB_COLORS") == web_throughput.COLORS
    sfs = _notebook_dict("01_scaling.ipynb", "SFS_COLORS")
    assert {mode: c for (suite, mode), c in sfs.items() if suite == sfs_throughput.HEADLINE_SUITE} == \
        {mode: c for (headline, mode), c in sfs_throughput.COLORS.items() if headline}
    # the model figure draws the web series beside the SFS headline ones: no colour twice
    web_series = [c for key, c in web_throughput.COLORS.items() if isinstance(key, tuple)]
    headline = [c for (is_headline, _), c in sfs_throughput.COLORS.items() if is_headline]
    assert len(set(web_series + headline)) == len(web_series + headline)
