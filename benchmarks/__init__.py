"""Benchmarks of aiotracker against the ways Docker jobs are tracked today (issue 6).

Run them all, side by side, with ``python -m benchmarks --quick`` (about 4 minutes) or
``python -m benchmarks --full``; ``benchmarks/RESULTS.md`` records the runs.
``python -m benchmarks --smoke`` runs every measurement at a tiny size in under a minute, and
exits non-zero if one raised (for CI). ``--engine podman``
runs them against the Podman service (scripts/podman-engine.sh) instead of Docker; what cannot
apply there is skipped with its reason.

Modules:

- ``common``: the run (token, labels, sizes, the engine), statistics, tables and goals,
  cleanup, and the process probes (CPU seconds, connections to the engine's socket, memory).
- ``observer``: a separate process that reads ``GET /events`` with a blocking socket and
  stamps each event on receipt: the engine's own delivery delay, and the ``die`` times
  latencies are measured from (besides the exits: the containers' ``FinishedAt``).
- ``adapters``: one small adapter per method compared (aiotracker; polling like drmaa2os;
  aiodocker's per-job ``wait()``; docker-py in threads; raw aiodocker create+start).
- ``wait_latency``, ``idle``, ``queries``, ``submission``, ``arrays``, ``output``, ``scale``:
  measurements 1 to 7 of the issue, one table (or two) each; wait latency from the job's
  exit and from its die event, one exit at a time and in a burst (issue 17).
- ``many_waits``: measurement 8 (issue 13): many pending jobs drained by ``as_completed`` as
  they end, against a task per job; on the fake engine (the tracker's own cost) and the real
  one.
- ``engine_cost``: measurement 9 (issue 17): Engine API calls per job, by kind, and dockerd
  CPU per job, aiotracker against raw create+start+wait, counted by ``proxy``: a proxy on
  the engine's socket that records every request it forwards.
- ``workflow``: measurement 10 (issue 17): a diamond DAG of short jobs (some fail, their
  descendants skipped) driven through one ``watch``, against raw aiodocker with a
  ``container.wait()`` per job and with one event subscriber; each driver run in a fresh
  process (``workflow_dag``): wall time, Python CPU, peak RSS.
- ``runner``: runs them in order and removes every container it made, also on error or Ctrl-C.

These are benchmarks, not tests: nothing asserts on a timing; each goal is printed as met or
not met next to the figures it is judged on.
"""
