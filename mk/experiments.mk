# Experiments, figures, notebooks and the claims table (experiments/, notebooks/, artifact/).
#   make fig-NAME          one experiment: measure, write artifact/results/<csv>, draw artifact/figures/<png,pdf>
#                          NAME: sfs web blocksize lines callbacks sched gil gilsplit model (gil, gilsplit: model
#                          inputs, no figure)
#   make figs-redraw       redraw every figure from the CSVs already there (measures nothing)
#   make reproduce-all     every experiment, the notebooks, then the claims table (QUICK=1: the short version)
#   make notebooks         execute notebooks/ into artifact/notebooks-executed/
#   make claims            rebuild and print the claims table from the CSVs already there
#                          (every fig-NAME does this after its step, `make notebooks` before)
#   make test-experiments  the experiments' own tests (model, figures, notebooks on synthetic CSVs)
EXP_FIGS := sfs web blocksize lines callbacks sched gil gilsplit model
EXP_MOD_sfs       := sfs_throughput
EXP_MOD_web       := web_throughput
EXP_MOD_blocksize := sfs_blocksize
EXP_MOD_lines     := lines_changed
EXP_MOD_callbacks := callback_cost
EXP_MOD_sched     := sched_compare
EXP_MOD_gil       := gil_handoff
EXP_MOD_gilsplit  := gil_split
EXP_MOD_model     := model_validation

.PHONY: $(addprefix fig-,$(EXP_FIGS)) figs-redraw reproduce-all notebooks claims test-experiments
# Each figure step ends by rebuilding the claims table from the CSVs now there, so that
# artifact/claims.md (and the notebooks, which show it) never lags the step just run.
$(addprefix fig-,$(EXP_FIGS)): fig-%: setup
	$(PY) -m experiments.$(EXP_MOD_$*)
	$(PY) -m experiments.claims

figs-redraw: setup
	$(PY) -m experiments.reproduce --plot-only --skip-notebooks

reproduce-all: setup
	$(PY) -m experiments.reproduce

notebooks: claims
	$(PY) -m experiments.notebooks

claims: setup
	$(PY) -m experiments.claims

test-experiments: setup
	$(PY) -m pytest -q experiments/tests
