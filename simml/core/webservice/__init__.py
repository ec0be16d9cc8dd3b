"""Azure ML's ``azureml.core.webservice`` names, served by simml: ``Webservice``,
``LocalWebservice``, ``AciWebservice`` (see ``docs/deployment.md``)."""

from __future__ import annotations

from simml.core.webservice.aci import AciServiceDeploymentConfiguration, AciWebservice
from simml.core.webservice.local import LocalWebservice, LocalWebserviceDeploymentConfiguration
from simml.core.webservice.webservice import Webservice

__all__ = ["AciServiceDeploymentConfiguration", "AciWebservice", "LocalWebservice",
           "LocalWebserviceDeploymentConfiguration", "Webservice"]
