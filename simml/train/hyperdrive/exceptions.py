"""HyperDrive's exceptions (Azure's ``azureml.train.hyperdrive.exceptions``).

``HyperDriveConfigException`` is what Azure raises for an invalid sweep configuration (a sampler
given an expression it does not take, a Bandit policy with both slacks, ...); in simml it is also a
``UserErrorException`` and a ``ValueError``, so either catch works. Nothing is written when one is
raised.
"""

from __future__ import annotations

from simml.exceptions import UserErrorException


class HyperDriveConfigException(UserErrorException, ValueError):
    """An invalid HyperDrive configuration (sampling, expression, policy, ``HyperDriveConfig``)."""


class PrimaryMetricNotFoundException(UserErrorException, LookupError):
    """No child run of a sweep logged its primary metric (simml: Azure returns ``None``)."""
