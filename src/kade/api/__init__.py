"""kade.api"""
