"""Running the chain: the step table (:mod:`.steps`), one step's run (:mod:`.step_run`),
the step cache (:mod:`.cache`), sweeps (:mod:`.sweeps`) and the runner that plans and
executes them (:mod:`.runner`)."""
