"""kade.drivers"""
