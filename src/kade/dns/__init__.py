"""kade.dns"""
