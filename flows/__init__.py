"""flows: when and in what order things happen. Prefect flows, tasks, deployments,
and the command line that drives them. The only package that imports prefect.

This ``__init__`` imports nothing, so that ``sidflows propose`` never loads prefect.
"""
