"""trainflow: a reproducible, multi-step ML training workflow on MLflow Projects.

The library holds all logic; ``components/<step>/run.py`` only wire it together.
"""

__version__ = "0.1.0"
