"""Datasets and data locality: where each dataset lives, where it may go, what moving it costs.

- :mod:`.spec`: the ``datasets:`` and ``transfer:`` sections of the configuration as types, and
  :class:`~.spec.DatasetUse`, what a reservation records about each dataset it asked for.
- :mod:`.locality`: per cluster, is the data there, may it be copied there (residency), and the
  estimated size, time and cost of the copy; the ranking key placement uses.

The core stays backend-agnostic: a location is a path on the nodes (local, Slurm, SSH) or a
volume (Kubernetes); each backend turns it into ``/data/<name>`` (or its nearest honest
equivalent) and ``NEO_DATA_<NAME>`` through :meth:`Backend.data_path`.
"""
