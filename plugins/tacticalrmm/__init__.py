"""The Tactical RMM connector (clients, sites, agents, alerts), built on hub.sdk."""
