"""The fleet lab: a server host and N agent hosts, each its own container with systemd (issue 12).

``python -m lab up --fleet N`` (see :mod:`lab.fleet.lifecycle`); paths in :mod:`lab.fleet.layout`.
"""
