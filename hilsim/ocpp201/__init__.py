"""OCPP 2.0.1: the protocol layer beside `hilsim.ocpp` (1.6), on the same charger services."""
