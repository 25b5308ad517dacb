"""The model's command line for costs of one's own: what colors buy, and clear refusals."""
import pytest

from experiments import predict


def _speedups(capsys, *args):
    assert predict.main([*args, "--cpus", "2", "--free-wakeups"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MODELLED")
    rows = [line.split() for line in out.splitlines()[2:]]
    return {int(r[0]): float(r[2].rstrip("x")) for r in rows}


def test_an_unchanged_program_does_not_scale_and_colored_crypto_does(capsys):
    assert _speedups(capsys, "--held-us", "10", "--free-us", "100", "--mode", "serial")[2] < 1.1
    assert _speedups(capsys, "--held-us", "10", "--free-us", "100", "--mode", "crypto")[2] > 1.6


def test_interpreter_work_scales_only_without_the_gil(capsys):
    assert _speedups(capsys, "--held-us", "50", "--free-us", "0", "--mode", "conn")[2] < 1.1
    assert _speedups(capsys, "--held-us", "50", "--free-us", "0", "--mode", "conn",
                     "--python", "3.13t")[2] > 1.8
    assert _speedups(capsys, "--held-us", "50", "--free-us", "0", "--mode", "ncopy")[2] > 1.8


@pytest.mark.parametrize("args, message", [
    (["--held-us", "-1", "--free-us", "5"], "must be a finite number >= 0"),
    (["--held-us", "nan", "--free-us", "5"], "must be a finite number >= 0"),
    (["--held-us", "0", "--free-us", "0"], "a request must cost something"),
    (["--held-us", "1e12", "--free-us", "1"], "must be at most 1e+06 µs (one second), not 1e12"),
    (["--held-us", "1e-9", "--free-us", "1e-9"], "cheaper than any Python request"),
    (["--held-us", "1", "--free-us", "1", "--cpus", "0"], "must be 1..64"),
    (["--held-us", "1", "--free-us", "1", "--mode", "fast"], "invalid choice"),
])
def test_bad_arguments_are_refused_in_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        predict.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
