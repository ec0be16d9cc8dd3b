"""Simulated compute targets: VM-size catalogue and the AmlCompute cluster model."""
