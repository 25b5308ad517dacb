"""The claims table from synthetic CSVs: every claim evaluated, statuses follow the ranges."""
import math

import pandas as pd

from experiments import claims


def test_every_claim_is_evaluated_from_synthetic_csvs(synthetic_results):
    table = claims.build()
    keys = {c.key for c in table}
    assert {"sfs-4cpu", "sfs-measured", "web-4cpu-ncopy", "lines", "model", "dispatch",
            "steal-collide", "steal-short"} <= keys
    assert all(c.status in ("met", "NOT met") for c in table), [c.row() for c in table if c.status == "not run"]
    lines = next(c for c in table if c.key == "lines")
    share = next(c for c in table if c.key == "lines-share")
    assert lines.ours == 42 and lines.status == "met"         # 42 of 2100 lines
    assert share.ours == 2.0 and share.status == "met"
    path = claims.write(table, synthetic_results)
    written = pd.read_csv(path)
    assert list(written["status"]) == [c.status for c in table]


def test_missing_csvs_say_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORLOOP_RESULTS", str(tmp_path))
    table = claims.build()
    assert table and all(c.status == "not run" for c in table)


def test_status_follows_the_expected_range():
    c = claims.Claim("k", "x", "-", 1.5, "1.5", 1.2, 2.0, "-")
    assert c.status == "met"
    assert claims.Claim("k", "x", "-", 2.5, "", 1.2, 2.0, "-").status == "NOT met"
    assert claims.Claim("k", "x", "-", math.nan, "", 1.2, 2.0, "-").status == "not run"
    assert claims.Claim("k", "x", "-", 5.0, "", 1.2, math.inf, "-").expected == ">= 1.2"
