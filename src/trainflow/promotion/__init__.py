"""Moving ``prod``: the evaluation gate as a pure decision (:mod:`.gate`) and the MLflow
Model Registry's side of it (:mod:`.registry`)."""
