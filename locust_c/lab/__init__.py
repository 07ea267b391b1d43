"""The performance lab: the misbehaving demo shop, distributed Locust load and the gates, one command per scenario.

``locust-c lab SCENARIO`` (and ``make SCENARIO``) starts the shop (``examples/shop/service.py``), waits until it is
ready, runs its workload (``examples/shop/locustfile.py``) with a Locust master and ``--workers`` workers on this
machine, judges the run with the shop's SLA file (``examples/slas.yml``) and the other gates the scenario needs,
prints what it found and exits with the verdict: 0 pass, 1 a gate failed, 2 the lab could not run.
:mod:`.scenarios` says what each scenario does; :mod:`.processes` starts and stops the processes.
"""

from .processes import Lab, LabError
from .scenarios import SCENARIOS, Outcome, run_scenario

__all__ = ["SCENARIOS", "Lab", "LabError", "Outcome", "run_scenario"]
