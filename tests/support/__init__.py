"""Helpers the tests and the benchmarks share: seeded synthetic tables and local servers.

Not part of the trainflow package: no user needs them. The tests import them as
``support.*`` (pytest puts tests/ on sys.path); the benchmarks put tests/ on theirs.
"""
