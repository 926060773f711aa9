"""kade.scheduler: the pure planner (`plan`) and, in `kade.scheduler.loop`, the loop that
applies its plans to the store. `drain_progress` tells the API how far a node's drain got."""

from kade.scheduler.drain import DrainProgress, drain_progress
from kade.scheduler.index import Changed, TaskIndex
from kade.scheduler.plan import Launch, Plan, Retag, Snapshot, Stop, plan

__all__ = ["Changed", "DrainProgress", "Launch", "Plan", "Retag", "Snapshot", "Stop",
           "TaskIndex", "drain_progress", "plan"]
