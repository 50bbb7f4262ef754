"""flows: when and in what order things happen. Prefect flows, tasks, deployments,
and the command line that drives them. The only package that imports prefect.

One module per step of the pathway, imports one way (tests/test_architecture.py):

- referral.py: referral to active plan (the ``pathway`` and ``activate`` flows,
  the family's consent gate); approval.py: the clinician's answer (a step of it);
- item.py: a plan item on its day; replan.py: plan vN+1; sweep.py: the daily sweep;
- tasks.py: the tasks those steps share; projection.py: the store projected onto
  Prefect's scheduled runs; notifications.py, artifacts.py, runtime.py: what all use;
- deployments.py: the one list of deployments (served, or written as config/prefect.yaml);
- orchestrator.py: on a unit's Prefect server or in this process, chosen once;
- cli/: the ``sidflows`` command line; demo/, bench/: the demo and the benchmarks.

This ``__init__`` imports nothing, so that ``sidflows propose`` never loads prefect.
"""
