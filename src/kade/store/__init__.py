"""kade.store"""
