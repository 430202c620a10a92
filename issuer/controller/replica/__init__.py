"""The replica around kopf: start-up and shut-down, the Lease election, health probes."""
