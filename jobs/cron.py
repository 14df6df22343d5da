"""RQ cron configuration: ``rq cron jobs.cron`` runs the sweeper every 30 seconds."""

from rq import cron

from jobs.sweep import sweep

cron.register(sweep, queue_name="maintenance", interval=30, job_timeout=120)
