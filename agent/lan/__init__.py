"""The LAN-side speed test: the gateway serves throughput endpoints (the same server the
carrier's test server runs, linecheck/throughput/) and a small page of its own on the office
network, so a phone or laptop in a room can measure its WiFi/LAN path *to the gateway*. Each
result is recorded with the room label and the station's signal and PHY rate (looked up by the
client's MAC), published as a `wifi_throughput` check, and localised (agent/localise.py). See docs/wifi.md.
"""
