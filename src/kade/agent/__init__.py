"""kade.agent"""
