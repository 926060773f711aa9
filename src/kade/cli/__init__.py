"""kade.cli"""
