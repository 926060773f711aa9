"""kade.templates"""
