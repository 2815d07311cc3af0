"""The configuration: the schema every key is checked against (:mod:`.schema`) and where
the step components live (:mod:`.components`). Sits above the layers whose settings it
validates (ml, datacheck, promotion, store) and below the pipeline that reads it."""
