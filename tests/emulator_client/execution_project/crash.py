"""Fails on purpose: the run must end Failed with this traceback in its error."""


def divide(a, b):
    return a / b


print("about to crash")
divide(1, 0)
