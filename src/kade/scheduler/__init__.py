"""kade.scheduler: the pure planner (`plan`) and, in `kade.scheduler.loop`, the loop that
applies its plans to the store."""

from kade.scheduler.plan import Launch, Plan, Retag, Snapshot, Stop, plan

__all__ = ["Launch", "Plan", "Retag", "Snapshot", "Stop", "plan"]
