"""OCPP 1.6J adapters: the charge point's protocol side and its transport."""
