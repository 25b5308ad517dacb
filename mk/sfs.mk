# The SFS-like file server (apps/sfs_like): tests, benchmark, color-diff count.
.PHONY: sfs-test sfs-bench sfs-count
sfs-test: setup
	$(PY) -m pytest -q apps/sfs_like/tests

# QUICK=1 runs the ~35 s version; the full one takes ~7 minutes.
sfs-bench: setup
	$(PY) -m apps.sfs_like.bench $(if $(QUICK),--quick,)

sfs-count: setup
	$(PY) -m apps.sfs_like.count_color_diff

bench: sfs-bench
