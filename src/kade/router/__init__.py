"""kade.router"""
