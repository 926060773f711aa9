"""kade.scheduler"""
