"""The charge point's OCPP 2.0.1 side, beside the 1.6 one (`hilsim.ocpp`).

Imported only when ``[charge_point] ocpp_version = "2.0.1"`` (`hilsim.wiring` does it lazily):
a 1.6 charge point never loads it. The services are the same; this package translates 2.0.1 wire
messages to and from their calls. Its client, `hilsim.ocpp201.client.ChargePointClient201`,
shares the OCPP-J framing of `hilsim.ocpp.framing` and is composed of one handler mixin per
functional area.
"""
