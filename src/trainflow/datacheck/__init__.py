"""The data checks of ``check_data``: schema expectations, generic checks and drift against
the project's reference, gathered into one report with a verdict."""
