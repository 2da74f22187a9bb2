"""Several hosts on one machine: the console across network namespaces, one worker host killed, another cut off.

`python -m tests.multihost` (root, Linux) builds a private network of namespaces on a bridge, one
namespace a host, each process started as a deployment starts it (deploy/):

    driver     .1  this process: the platform (API client, webhook receiver) and the checks
    db         .2  a private PostgreSQL (run as the `postgres` user, which it insists on)
    redis      .3  a private redis-server
    web        .4  migrations, then gunicorn, the cron (rqcron reviewconsole.cron) and the retro worker
    worker-1   .5  an RQ worker on every queue but retro
    worker-2   .6  the same

Each host's processes run under the console's own supervisor (runconsole.supervise: a child that
exits is restarted, as systemd's Restart=always would). The evidence store is one folder every host
sees, as a shared filesystem would be. The driver makes a bank of known pictures, a webhook platform
and an automation rule that decides known material, then sends a few hundred synthetic pictures
through the HTTP API, some of them copies of the known ones. The worker hosts come up once a third of
them wait, so that their first scans claim full batches. It kills every process of the worker host
that holds a scan claim (SIGKILL, in the middle of the batch; which host scans is up to the queue) and
cuts the other off from Redis for 30 s (blackhole routes on both sides: packets on open connections go
nowhere, new connections fail), then restores the link. The killed host stays down. It then waits
until everything is done and checks, from the database and what the receiver got, that every item was
scanned exactly once (the dead claim's items started twice and finished once, on the other host),
that every case of known material was decided once by the rule, and that every enforcement was
delivered once.

Where the machine cannot do this (not Linux, not root, no network namespaces, no PostgreSQL server
or redis-server) it prints "skipped: <reason>" and exits 0. It never touches the machine's own
PostgreSQL or Redis: its servers listen only inside their namespaces.
"""
