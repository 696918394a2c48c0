"""jupyter-neo: edit in JupyterLab, run on a warm, gang-reserved, multi-node GPU cluster in seconds.

The public API is :class:`Client` (synchronous, safe in notebooks) and the model types; the ``neo``
CLI, the ``%neo`` magics and the REST handlers are thin layers over it.
"""

from jupyter_neo.client import Client
from jupyter_neo.errors import NeoError
from jupyter_neo.keep import keep
from jupyter_neo.model import Cluster, GangRequest, Pod, Reservation, ReservationState

__all__ = ["Client", "Cluster", "GangRequest", "NeoError", "Pod", "Reservation", "ReservationState", "keep"]
__version__ = "0.1.0"
