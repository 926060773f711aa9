"""kade.catalog"""
