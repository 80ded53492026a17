"""The services: every product rule and operation (models, workflows, generation, analytics,
membership, key rotation, catalogue sync). Each function takes a
:class:`~byok_nb.services.context.Context` (store, secret box, provider hub, acting user)
explicitly, so the notebook Session, the gateway and the CLI are thin callers of the same code."""
