"""The OCPP 2.0.1 protocol layer: translates 2.0.1 wire messages to and from the services.

Imported only when ``[charge_point] ocpp_version = "2.0.1"`` (1.6 start-up never loads it).
"""
