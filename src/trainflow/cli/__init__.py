"""Entry points people type: the ``trainflow`` command (:mod:`.main`) and ``python main.py
--help`` (:mod:`.help`)."""
