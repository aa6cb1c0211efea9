"""Sites sharing a run: ``farm submit`` stores a run and its jobs; ``farm serve`` controllers claim them.

PostgreSQL is the coordination engine: a controller claims queued jobs of the hosts it reaches with
``SELECT ... FOR UPDATE SKIP LOCKED`` (``claims``), holds each claim with a lease in database time that
it renews, and a claim left unrenewed (its controller died) is taken over by another controller that
reaches the host, which picks the jobs up exactly as ``farm run --resume`` does (``serve``).
"""
