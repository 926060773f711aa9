"""kade.client"""
