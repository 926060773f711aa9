"""kade.testing"""
