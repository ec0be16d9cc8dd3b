"""The Azure backend: simml's hooks served by real Azure ML (SDK v1, ``azureml-core``).

Selected by ``SIMML_BACKEND=azure`` or config.json's ``"backend": "azure"``; installed by the
``azure`` extra (``pip install 'simml[azure]'``). Every azureml import and call lives in
``simml_azure.azureml_api`` so that a plug-in for SDK v2 (``azure-ai-ml``) can replace that one
module: Azure ML SDK v1 reached end of support on 2026-06-30. Importing this package (or
``simml``) imports no azureml module; ``docs/azure.md`` says how to switch and what differs.
"""
