"""Machine learning on plain data: reading a table file (:mod:`.table_file`, :mod:`.data`),
features (:mod:`.features`), training and exporting (:mod:`.train`), metrics and scoring
of an exported model (:mod:`.evaluate`, :mod:`.inference`) and plots (:mod:`.plots`).
Functions take and return frames and estimators; nothing here opens an MLflow run or a store."""
